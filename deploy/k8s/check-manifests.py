#!/usr/bin/env python3
"""Checks the rendered Kubernetes manifests (`kubectl kustomize DIR`) for the properties the
deployment promises, and prints the object count by kind.

    kubectl kustomize deploy/k8s/overlays/production | deploy/k8s/check-manifests.py
    deploy/k8s/check-manifests.py --self-test < rendered.yaml   # the check must catch breakage

Every container of every workload: readiness (/readyz) and liveness (/healthz) probes on a
declared port, CPU and memory requests and limits, a non-root numeric user, no privilege
escalation, a read-only root filesystem, all capabilities dropped; every pod an explicit
terminationGracePeriodSeconds of at most 30 s. Every scaled Deployment (a ScaledObject's target, or more than
one replica) has a PodDisruptionBudget selecting its pods. ScaledObjects target an existing
Deployment, never scale to zero, and authenticate through an existing TriggerAuthentication.
Every Deployment is scraped: a Service selecting its pods with a port a ServiceMonitor names,
and prometheus.io annotations naming a container port. No Secret is rendered (names only), and
every ConfigMap a pod mounts is rendered.

Exit status: 0 all properties hold, 1 a property is violated (each one listed), 2 bad input.
"""

import copy
import sys
from collections import Counter

import yaml

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}

# Kubernetes' default grace period; the services' default pre-stop delay and drain fit in it,
# and a longer one slows every rollout and node drain.
MAX_GRACE_SECONDS = 30


def key(obj):
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('name')}"


def namespace(obj):
    return obj.get("metadata", {}).get("namespace", "")


def selects(selector, labels):
    """A label selector (matchLabels only, or a plain map) matches `labels`."""
    if not selector or "matchExpressions" in selector:
        return False  # expressions are not used by these manifests: refuse rather than guess
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def container_problems(where, pod, container):
    problems = []
    name = f"{where} container {container.get('name')}"
    ports = {p.get("name") for p in container.get("ports", [])} | {
        p.get("containerPort") for p in container.get("ports", [])
    }
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        spec = container.get(probe)
        if not spec:
            problems.append(f"{name}: no {probe}")
            continue
        http = spec.get("httpGet", {})
        if http.get("path") != path:
            problems.append(f"{name}: {probe} must GET {path}, not {http.get('path')}")
        if http.get("port") not in ports:
            problems.append(f"{name}: {probe} port {http.get('port')} is not a container port")
    resources = container.get("resources", {})
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not resources.get(section, {}).get(resource):
                problems.append(f"{name}: no {resource} {section[:-1]}")
    pod_security = pod.get("securityContext", {})
    security = container.get("securityContext", {})
    run_as_non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    if run_as_non_root is not True:
        problems.append(f"{name}: runAsNonRoot is not true")
    if not isinstance(user, int) or user == 0:
        problems.append(f"{name}: runAsUser must be a non-zero number, not {user!r}")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation is not false")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{name}: readOnlyRootFilesystem is not true")
    if "ALL" not in security.get("capabilities", {}).get("drop", []):
        problems.append(f"{name}: capabilities are not all dropped")
    return problems


def check(objects):
    problems = []
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj.get("kind"), []).append(obj)

    names = {(namespace(o), key(o)) for o in objects}
    config_maps = {(namespace(o), o["metadata"]["name"]) for o in by_kind.get("ConfigMap", [])}

    for secret in by_kind.get("Secret", []):
        problems.append(f"{key(secret)}: a Secret is rendered; the manifests only name Secrets")

    scaled_targets = set()
    for scaled in by_kind.get("ScaledObject", []):
        spec = scaled.get("spec", {})
        target = spec.get("scaleTargetRef", {}).get("name")
        scaled_targets.add((namespace(scaled), target))
        if (namespace(scaled), f"Deployment/{target}") not in names:
            problems.append(f"{key(scaled)}: targets Deployment/{target}, which is not rendered")
        minimum, maximum = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if minimum < 1:
            problems.append(f"{key(scaled)}: minReplicaCount {minimum} would scale to zero")
        if maximum < minimum:
            problems.append(f"{key(scaled)}: maxReplicaCount {maximum} below minReplicaCount {minimum}")
        triggers = spec.get("triggers", [])
        if not triggers:
            problems.append(f"{key(scaled)}: no trigger")
        for trigger in triggers:
            if trigger.get("type") != "rabbitmq" or not trigger.get("metadata", {}).get("queueName"):
                problems.append(f"{key(scaled)}: trigger is not a rabbitmq queue-depth trigger")
            auth = trigger.get("authenticationRef", {}).get("name")
            if (namespace(scaled), f"TriggerAuthentication/{auth}") not in names:
                problems.append(f"{key(scaled)}: authenticationRef {auth} is not rendered")

    services = by_kind.get("Service", [])
    monitors = by_kind.get("ServiceMonitor", [])

    for workload in (o for o in objects if o.get("kind") in WORKLOAD_KINDS):
        where = key(workload)
        spec = workload.get("spec", {})
        template = spec.get("template", {})
        pod = template.get("spec", {})
        labels = template.get("metadata", {}).get("labels", {})
        annotations = template.get("metadata", {}).get("annotations", {})
        containers = pod.get("containers", [])
        if not containers:
            problems.append(f"{where}: no containers")
        for container in containers:
            problems.extend(container_problems(where, pod, container))
        grace = pod.get("terminationGracePeriodSeconds")
        if grace is None:
            problems.append(f"{where}: no explicit terminationGracePeriodSeconds")
        elif not isinstance(grace, int) or grace > MAX_GRACE_SECONDS:
            problems.append(
                f"{where}: terminationGracePeriodSeconds {grace!r} is over {MAX_GRACE_SECONDS}: "
                "the services' defaults stop within it (deploy/README.md, Shutdown)"
            )
        for volume in pod.get("volumes", []):
            config_map = volume.get("configMap", {}).get("name")
            if config_map and (namespace(workload), config_map) not in config_maps:
                problems.append(f"{where}: mounts ConfigMap {config_map}, which is not rendered")

        scaled = (namespace(workload), workload["metadata"]["name"]) in scaled_targets
        if scaled or spec.get("replicas", 1) > 1:
            budgets = [
                b
                for b in by_kind.get("PodDisruptionBudget", [])
                if namespace(b) == namespace(workload) and selects(b["spec"].get("selector"), labels)
            ]
            if not budgets:
                problems.append(f"{where}: scaled, but no PodDisruptionBudget selects its pods")

        container_ports = {p.get("name"): p.get("containerPort") for c in containers for p in c.get("ports", [])}
        if annotations.get("prometheus.io/scrape") != "true":
            problems.append(f"{where}: no prometheus.io/scrape annotation")
        elif str(annotations.get("prometheus.io/port")) not in {str(p) for p in container_ports.values()}:
            problems.append(f"{where}: prometheus.io/port is not a container port")
        scraped = False
        for service in services:
            if namespace(service) != namespace(workload) or not selects(service["spec"].get("selector"), labels):
                continue
            ports = {p.get("name") for p in service["spec"].get("ports", [])}
            for monitor in monitors:
                if not selects(monitor["spec"].get("selector"), service["metadata"].get("labels", {})):
                    continue
                monitor_ns = monitor["spec"].get("namespaceSelector", {}).get("matchNames", [namespace(monitor)])
                if namespace(service) not in monitor_ns:
                    continue
                if any(e.get("port") in ports for e in monitor["spec"].get("endpoints", [])):
                    scraped = True
        if not scraped:
            problems.append(f"{where}: no ServiceMonitor scrapes a Service of its pods")
    return problems


def load(stream):
    try:
        return [o for o in yaml.safe_load_all(stream) if o]
    except yaml.YAMLError as error:
        print(f"check-manifests: not YAML: {error}", file=sys.stderr)
        sys.exit(2)


def self_test(objects):
    """Breaks the manifests one property at a time; each break must be reported."""

    def first(kind):
        return next(i for i, o in enumerate(objects) if o.get("kind") == kind)

    def container(objs):
        return objs[first("Deployment")]["spec"]["template"]["spec"]["containers"][0]

    def drop_pdbs(objs):
        objs[:] = [o for o in objs if o.get("kind") != "PodDisruptionBudget"]

    breaks = {
        "no readiness probe": lambda objs: container(objs).pop("readinessProbe"),
        "no liveness probe": lambda objs: container(objs).pop("livenessProbe"),
        "no memory limit": lambda objs: container(objs)["resources"]["limits"].pop("memory"),
        "root user": lambda objs: container(objs)["securityContext"].update(runAsUser=0),
        "writable root filesystem": lambda objs: container(objs)["securityContext"].update(readOnlyRootFilesystem=False),
        "privilege escalation": lambda objs: container(objs)["securityContext"].pop("allowPrivilegeEscalation"),
        "no PodDisruptionBudget": drop_pdbs,
        "scale to zero": lambda objs: objs[first("ScaledObject")]["spec"].update(minReplicaCount=0),
        "a rendered Secret": lambda objs: objs.append({"kind": "Secret", "metadata": {"name": "s"}, "data": {}}),
        "no termination grace": lambda objs: objs[first("Deployment")]["spec"]["template"]["spec"].pop(
            "terminationGracePeriodSeconds"
        ),
        "a termination grace over 30 s": lambda objs: objs[first("Deployment")]["spec"]["template"][
            "spec"
        ].update(terminationGracePeriodSeconds=40),
    }
    if check(objects):
        print("check-manifests self-test: the manifests must pass before they are broken", file=sys.stderr)
        return 1
    missed = []
    for name, breaking in breaks.items():
        broken = copy.deepcopy(objects)
        breaking(broken)
        if not check(broken):
            missed.append(name)
    if missed:
        print(f"check-manifests self-test: not caught: {', '.join(missed)}", file=sys.stderr)
        return 1
    print(f"check-manifests self-test: all {len(breaks)} breakages caught")
    return 0


def main():
    objects = load(sys.stdin)
    if not objects:
        print("check-manifests: no objects on stdin", file=sys.stderr)
        return 2
    if sys.argv[1:] == ["--self-test"]:
        return self_test(objects)
    counts = Counter(o.get("kind") for o in objects)
    print(f"{len(objects)} objects: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    problems = check(objects)
    for problem in problems:
        print(f"  FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
