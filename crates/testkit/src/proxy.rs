//! A TCP proxy a test puts between a service and a server (RabbitMQ) to simulate an outage
//! of that server for this test alone.
//!
//! [`Proxy::cut`] closes every connection through the proxy and refuses new ones (accepted and
//! closed at once, as a stopped broker's port would look to a client that still resolves it);
//! [`Proxy::restore`] lets connections through again. The shared broker and every other test's
//! connections are untouched, which is why tests use this instead of stopping the broker.
//! The proxy listens on 127.0.0.1 only.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A running proxy; stops (closing its connections) when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
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
        state
            .connections
            .push(tokio::spawn(forward(client, upstream.clone())));
    }
}

async fn forward(mut client: TcpStream, upstream: String) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
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
