//! Private servers a test starts for itself when it must change a server's configuration (TLS
//! listeners, a resource alarm, `pg_hba.conf` rules): a RabbitMQ node ([`PrivateBroker`]) and a
//! PostgreSQL cluster ([`PrivatePostgres`]), each on free ports, with its data, logs and
//! configuration in a directory of its own, stopped and removed when dropped (also after a
//! panic). The shared servers are never touched.
//!
//! Each process runs under `timeout`, so a test process killed before its cleanup leaves no
//! server running for longer than [`LIFETIME_LIMIT_SECS`].

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use crate::certs::TestCertificates;

/// Longest a private server lives, whatever happens to the test that started it.
pub const LIFETIME_LIMIT_SECS: u64 = 600;

/// How long a private server may take to start (a RabbitMQ node needs about 10 s on a busy
/// 2-core machine).
const START_LIMIT: Duration = Duration::from_secs(90);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A fresh directory under the system's temporary directory.
pub fn scratch_dir(kind: &str) -> PathBuf {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let dir = std::env::temp_dir().join(format!("wos-test-{kind}-{id}"));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn describe(output: &Output) -> String {
    format!(
        "status {}; stdout: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

/// The last lines of a log file, for a failure message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Polls `condition` until it holds or [`START_LIMIT`] passed; `false` on timeout.
async fn poll_until<F, Fut>(mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Sends SIGTERM to `child` (through the `kill` command: the standard library only has SIGKILL),
/// waits a little for it to exit, then kills it.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ------------------------------------------------------------------------------------------------
// RabbitMQ
// ------------------------------------------------------------------------------------------------

/// A RabbitMQ node of one test's own: its own node name, Erlang cookie, ports, data directory,
/// configuration file and (empty) plugin list.
#[derive(Debug)]
pub struct PrivateBroker {
    node: String,
    dir: PathBuf,
    amqp_port: u16,
    tls_port: Option<u16>,
    child: Option<Child>,
}

impl PrivateBroker {
    /// Starts a node listening for AMQP on a free port of 127.0.0.1 and, with `tls`, for AMQP
    /// over TLS on another one (presenting `tls.cert`); returns once it accepts connections.
    pub async fn start(tls: Option<&TestCertificates>) -> Self {
        let dir = scratch_dir("rabbit");
        let id = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("wos-test-rabbit")
            .to_owned();
        let amqp_port = free_port();
        let tls_port = tls.map(|_| free_port());
        let mut config = format!(
            "listeners.tcp.default = 127.0.0.1:{amqp_port}\n\
             # Small and fast to start: no disk check surprises from a full /tmp.\n\
             disk_free_limit.absolute = 1MB\n"
        );
        if let (Some(certs), Some(port)) = (tls, tls_port) {
            config.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                certs.ca.display(),
                certs.cert.display(),
                certs.key.display()
            ));
        }
        std::fs::write(dir.join("rabbitmq.conf"), config).expect("rabbitmq.conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("enabled_plugins");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("rabbitmq-env.conf");
        let cookie = dir.join(".erlang.cookie");
        std::fs::write(&cookie, uuid::Uuid::new_v4().simple().to_string()).expect("cookie");
        set_mode(&cookie, 0o400);

        let mut broker = Self {
            node: format!("{id}@localhost"),
            dir,
            amqp_port,
            tls_port,
            child: None,
        };
        let mut command = Command::new("timeout");
        command
            .arg(LIFETIME_LIMIT_SECS.to_string())
            .arg(rabbitmq_script("rabbitmq-server"))
            .envs(broker.env())
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_CONFIG_FILE", broker.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_MNESIA_BASE", broker.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", broker.dir.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                broker.dir.join("enabled_plugins"),
            )
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                broker.dir.join("advanced.config"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        broker.child = Some(command.spawn().expect("rabbitmq-server starts"));

        let ports: Vec<u16> = std::iter::once(amqp_port).chain(tls_port).collect();
        let up = poll_until(|| {
            let ports = ports.clone();
            async move {
                for port in ports {
                    if !port_open(port).await {
                        return false;
                    }
                }
                true
            }
        })
        .await;
        if !up {
            panic!(
                "private RabbitMQ node {} did not start within {START_LIMIT:?}; its log:\n{}",
                broker.node,
                broker.log_tail()
            );
        }
        broker
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` (guest may log in from loopback).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// The TLS listener's port, when the node was started with certificates.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The node's plaintext AMQP port.
    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// Runs `rabbitmqctl` against this node (never the shared one); panics unless it succeeds.
    pub fn rabbitmqctl(&self, args: &[&str]) -> String {
        let output = Command::new(rabbitmq_script("rabbitmqctl"))
            .args(["-n", &self.node])
            .args(args)
            .envs(self.env())
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The environment the node and its `rabbitmqctl` share: the cookie (in `HOME`) and no
    /// machine-wide `rabbitmq-env.conf`.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), self.dir.display().to_string()),
            ("RABBITMQ_NODENAME".into(), self.node.clone()),
            (
                "RABBITMQ_CONF_ENV_FILE".into(),
                self.dir.join("rabbitmq-env.conf").display().to_string(),
            ),
        ]
    }

    fn log_tail(&self) -> String {
        let log_dir = self.dir.join("log");
        std::fs::read_dir(&log_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| {
                format!(
                    "== {} ==\n{}",
                    entry.path().display(),
                    tail(&entry.path(), 30)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = Command::new(rabbitmq_script("rabbitmqctl"))
            .args(["-n", &self.node, "-t", "30", "stop"])
            .envs(self.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ script run directly (Debian's `/usr/sbin` wrappers switch to the `rabbitmq` user,
/// which could not read the test's files).
fn rabbitmq_script(name: &str) -> PathBuf {
    let direct = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if direct.exists() {
        direct
    } else {
        PathBuf::from(name)
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

// ------------------------------------------------------------------------------------------------
// PostgreSQL
// ------------------------------------------------------------------------------------------------

/// A PostgreSQL cluster of one test's own (`initdb` in a scratch directory), listening on a free
/// port of 127.0.0.1, with TLS when started with certificates.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// Creates and starts a cluster. `tls`: its server certificate (with `ssl = on`); `hba`: the
    /// `pg_hba.conf` lines (first match wins), e.g. `host all all 127.0.0.1/32 trust`. The
    /// superuser is `postgres`, without a password.
    pub async fn start(tls: Option<&TestCertificates>, hba: &[&str]) -> Self {
        let dir = scratch_dir("postgres");
        let data = dir.join("data");
        let as_postgres = running_as_root();
        let mut cluster = Self {
            bin: postgres_bin_dir(),
            dir,
            data,
            port: free_port(),
            as_postgres,
            child: None,
        };
        if as_postgres {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            cluster.run_checked(Command::new("chown").args([
                "-R",
                "postgres:",
                &cluster.dir.display().to_string(),
            ]));
        }
        let initdb = cluster.bin.join("initdb");
        let data_arg = cluster.data.display().to_string();
        cluster.run_checked(&mut cluster.as_owner(
            &initdb,
            &[
                "-D",
                &data_arg,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        ));

        let mut config = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 30\nshared_buffers = 16MB\n",
            cluster.port,
            cluster.dir.display()
        );
        if let Some(certs) = tls {
            let cert = cluster.data.join("server.crt");
            let key = cluster.data.join("server.key");
            std::fs::copy(&certs.cert, &cert).expect("copy certificate");
            std::fs::copy(&certs.key, &key).expect("copy key");
            set_mode(&key, 0o600);
            if as_postgres {
                for file in [&cert, &key] {
                    cluster.run_checked(
                        Command::new("chown").args(["postgres:", &file.display().to_string()]),
                    );
                }
            }
            config
                .push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        append(&cluster.data.join("postgresql.conf"), &config);
        std::fs::write(cluster.data.join("pg_hba.conf"), hba.join("\n") + "\n")
            .expect("pg_hba.conf");

        let postgres = cluster.bin.join("postgres");
        let limit = LIFETIME_LIMIT_SECS.to_string();
        let mut command = cluster.as_owner(Path::new("timeout"), &[&limit]);
        command
            .arg(postgres)
            .args(["-D", &data_arg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(cluster.dir.join("postgres.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        cluster.child = Some(command.spawn().expect("postgres starts"));

        let isready = cluster.bin.join("pg_isready");
        let port = cluster.port;
        let up = poll_until(|| {
            let ready = Command::new(&isready)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|status| status.success());
            async move { ready }
        })
        .await;
        if !up {
            panic!(
                "private PostgreSQL did not start within {START_LIMIT:?}; its log:\n{}",
                tail(&cluster.dir.join("postgres.log"), 30)
            );
        }
        cluster
    }

    /// `postgres://postgres@127.0.0.1:<port>` (no database: append `/name`).
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The cluster's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `command` as the cluster's owner.
    fn as_owner(&self, program: &Path, args: &[&str]) -> Command {
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(program)
                .args(args);
            command
        } else {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    }

    fn run_checked(&self, command: &mut Command) {
        let output = command.output().expect("command runs");
        assert!(
            output.status.success(),
            "{command:?}: {}",
            describe(&output)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data.display().to_string();
        let _ = self
            .as_owner(&pg_ctl, &["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where PostgreSQL's server programs are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian).
fn postgres_bin_dir() -> PathBuf {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL server programs (initdb) are installed")
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}
