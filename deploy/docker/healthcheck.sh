#!/bin/bash
# The image's HEALTHCHECK (docker, docker-compose; Kubernetes uses its own probes): exits 0 only
# when GET $HEALTHCHECK_PATH (default /readyz) on this container answers HTTP 200.
#
# Port: HEALTHCHECK_PORT, else the port of OPS_LISTEN_ADDR (the relay's ops listener; set it
# explicitly, the relay's webhook port serves nothing else), else the port of LISTEN_ADDR.
# Plain bash (/dev/tcp): the runtime image has no curl or wget.
set -euo pipefail

address=${OPS_LISTEN_ADDR:-${LISTEN_ADDR:-}}
port=${HEALTHCHECK_PORT:-${address##*:}}
if [ -z "$port" ]; then
  echo "healthcheck: set LISTEN_ADDR (or OPS_LISTEN_ADDR, HEALTHCHECK_PORT) to the service's ops address" >&2
  exit 1
fi
path=${HEALTHCHECK_PATH:-/readyz}

exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
read -r -t 4 _protocol status _reason <&3
if [ "$status" != 200 ]; then
  echo "healthcheck: GET ${path} on port ${port} answered ${status:-nothing}" >&2
  exit 1
fi
