//! A TCP proxy a test puts between a service and a server (RabbitMQ) to simulate an outage
//! of that server for this test alone.
//!
//! [`Proxy::cut`] closes every connection through the proxy and refuses new ones (accepted and
//! closed at once, as a stopped broker's port would look to a client that still resolves it);
//! [`Proxy::restore`] lets connections through again. [`Proxy::stall_named`] holds what the
//! server sends on the connections whose client announced a name containing a string (AMQP
//! sends the connection name in plain text in its handshake), while they stay open: a broker
//! that takes publishes and never confirms them; [`Proxy::resume`] lets it through. The shared
//! broker and every other test's connections are untouched, which is why tests use this instead
//! of stopping the broker. The proxy listens on 127.0.0.1 only.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// How much of what a client sends first is kept to match [`Proxy::stall_named`] against (the
/// AMQP handshake, connection name included, is well within it).
const GREETING_BYTES: usize = 8192;

/// A running proxy; stops (closing its connections) when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    /// While set, server-to-client traffic is held on connections whose client sent it.
    stalled: watch::Sender<Option<Vec<u8>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            accepted: AtomicUsize::default(),
            refused: AtomicUsize::default(),
            stalled: watch::Sender::new(None),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    cut: bool,
    connections: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_loop = tokio::spawn(accept_loop(
            listener,
            upstream.to_owned(),
            Arc::clone(&shared),
        ));
        Ok(Self {
            addr,
            shared,
            accept_loop,
        })
    }

    /// Starts a proxy to the broker of `amqp_url` and returns it with the URL that goes through
    /// it (same credentials and virtual host).
    pub async fn for_amqp_url(amqp_url: &str) -> std::io::Result<(Self, String)> {
        let invalid = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "expected amqp://[user[:password]@]host[:port][/vhost]",
            )
        };
        let (scheme, rest) = amqp_url.split_once("://").ok_or_else(invalid)?;
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, format!("/{path}")),
            None => (rest, String::new()),
        };
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (format!("{userinfo}@"), host_port),
            None => (String::new(), authority),
        };
        if host_port.is_empty() {
            return Err(invalid());
        }
        let upstream = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:5672")
        };
        let proxy = Self::start(&upstream).await?;
        let url = format!("{scheme}://{userinfo}{}{path}", proxy.addr);
        Ok((proxy, url))
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        let doomed = match self.shared.state.lock() {
            Ok(mut state) => {
                state.cut = true;
                std::mem::take(&mut state.connections)
            }
            Err(_) => Vec::new(),
        };
        // Aborting a forwarding task drops both of its sockets: the client sees the
        // connection closed, as when a broker goes away.
        for connection in doomed {
            connection.abort();
        }
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.cut = false;
        }
    }

    /// From now on holds everything the server sends on each connection (open or new) whose
    /// client sent `fragment` (for AMQP: a connection name containing it), until
    /// [`Proxy::resume`]. What the client sends still goes through: to that client the server
    /// takes its requests and never answers.
    pub fn stall_named(&self, fragment: &str) {
        self.shared
            .stalled
            .send_replace(Some(fragment.as_bytes().to_vec()));
    }

    /// Lets the traffic held by [`Proxy::stall_named`] through.
    pub fn resume(&self) {
        self.shared.stalled.send_replace(None);
    }

    /// Connections forwarded so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused (closed at once) while cut.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.shared.state.lock().map_or(0, |state| {
            state
                .connections
                .iter()
                .filter(|task| !task.is_finished())
                .count()
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or the like: try again shortly instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        if state.cut {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        state.connections.retain(|task| !task.is_finished());
        // Spawned under the lock, so a concurrent `cut` either sees this task or refuses it.
        state.connections.push(tokio::spawn(forward(
            client,
            upstream.clone(),
            shared.stalled.subscribe(),
        )));
    }
}

async fn forward(client: TcpStream, upstream: String, stalled: watch::Receiver<Option<Vec<u8>>>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let greeting = Mutex::new(Vec::new());
    let upstream = copy(client_read, server_write, |chunk| {
        if let Ok(mut greeting) = greeting.lock() {
            let room = GREETING_BYTES.saturating_sub(greeting.len());
            greeting.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    });
    let downstream = async {
        let mut stalled = stalled;
        copy_gated(server_read, client_write, &mut stalled, &greeting).await;
    };
    tokio::join!(upstream, downstream);
}

/// Copies `from` to `to` until end of stream, showing each chunk to `seen` first; then shuts
/// `to` down.
async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut seen: impl FnMut(&[u8]),
) {
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        seen(&buffer[..n]);
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// [`copy`], holding each chunk while the stall's fragment is in what the client sent.
async fn copy_gated(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    stalled: &mut watch::Receiver<Option<Vec<u8>>>,
    greeting: &Mutex<Vec<u8>>,
) {
    let held = |fragment: &Option<Vec<u8>>| {
        let Some(fragment) = fragment else {
            return false;
        };
        greeting.lock().is_ok_and(|greeting| {
            !fragment.is_empty() && greeting.windows(fragment.len()).any(|w| w == fragment)
        })
    };
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        if stalled.wait_for(|fragment| !held(fragment)).await.is_err() {
            break;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server for the proxy to forward to.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await?;
        Ok(reply.to_vec())
    }

    #[tokio::test]
    async fn forwards_cuts_and_restores() {
        let proxy = Proxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut first).await.unwrap(), b"ping");
        assert_eq!(proxy.accepted(), 1);

        proxy.cut();
        // The open connection is closed: the next read sees end of stream or an error.
        let mut buffer = [0u8; 4];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), first.read(&mut buffer))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // New connections are accepted by the kernel and closed at once.
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut refused).await.is_err());
        assert_eq!(proxy.refused(), 1);
        assert_eq!(proxy.open_connections(), 0);

        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again).await.unwrap(), b"ping");
        assert_eq!(proxy.accepted(), 2);
        assert_eq!(proxy.open_connections(), 1);
    }

    #[tokio::test]
    async fn stalls_only_the_connections_that_sent_the_fragment() {
        let proxy = Proxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        let mut named = TcpStream::connect(proxy.addr()).await.unwrap();
        named.write_all(b"name=svc/forward;").await.unwrap();
        let mut echo = [0u8; 17];
        named.read_exact(&mut echo).await.unwrap();
        let mut other = TcpStream::connect(proxy.addr()).await.unwrap();

        proxy.stall_named("/forward");
        assert_eq!(round_trip(&mut other).await.unwrap(), b"ping");
        named.write_all(b"ping").await.unwrap();
        let mut reply = [0u8; 4];
        let held = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            named.read_exact(&mut reply),
        )
        .await;
        assert!(held.is_err(), "the named connection's answer is held");

        proxy.resume();
        named.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"ping");
    }

    #[tokio::test]
    async fn rewrites_amqp_urls_to_go_through_the_proxy() {
        let (proxy, url) = Proxy::for_amqp_url("amqp://guest:secret@127.0.0.1:5672/%2f")
            .await
            .unwrap();
        assert_eq!(url, format!("amqp://guest:secret@{}/%2f", proxy.addr()));
        let (proxy, url) = Proxy::for_amqp_url("amqp://localhost").await.unwrap();
        assert_eq!(url, format!("amqp://{}", proxy.addr()));
        assert!(Proxy::for_amqp_url("not a url").await.is_err());
    }
}
