//! Connections the server can cut: the listener behind the sandbox's HTTP server.
//!
//! Each accepted TCP stream is wrapped so a handler can *kill* its connection: from then on
//! every read and write fails, hyper gives up on the connection and drops the socket, and the
//! socket is closed with `SO_LINGER 0`, i.e. a TCP reset. The client sees its request fail
//! with a reset/EOF and no response — the "applied, then the connection dropped" fault that
//! only an idempotency key can make safe. Handlers reach their connection's [`ConnControl`]
//! through axum's `ConnectInfo`.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{extract::connect_info::Connected, serve::IncomingStream};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

/// The kill switch of one connection.
#[derive(Debug, Clone, Default)]
pub struct ConnControl {
    killed: Arc<AtomicBool>,
}

impl ConnControl {
    /// Cuts the connection: nothing more is read or written on it.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnControl {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.io().control.clone()
    }
}

/// A TCP stream whose connection a handler can kill.
#[derive(Debug)]
pub struct KillableStream {
    inner: TcpStream,
    control: ConnControl,
    reset_armed: bool,
}

impl KillableStream {
    /// On the first I/O after a kill: make the close a reset, and fail.
    fn killed_error(&mut self) -> io::Error {
        if !self.reset_armed {
            self.reset_armed = true;
            // A zero linger turns the close into an RST: the client sees "connection reset",
            // not a clean end of a response. Failure to set it leaves an ordinary close (EOF
            // before the response), which the client reports the same way.
            let _ = self.inner.set_zero_linger();
        }
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection killed by a fault",
        )
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_killed() {
            return Poll::Ready(Err(this.killed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.control.is_killed() {
            return Poll::Ready(Err(this.killed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_killed() {
            return Poll::Ready(Err(this.killed_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_killed() {
            return Poll::Ready(Err(this.killed_error()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A TCP listener yielding [`KillableStream`]s.
#[derive(Debug)]
pub struct KillableListener {
    inner: TcpListener,
}

impl KillableListener {
    /// Wraps a bound listener.
    pub fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Small JSON responses: do not let Nagle hold them back.
                    let _ = stream.set_nodelay(true);
                    return (
                        KillableStream {
                            inner: stream,
                            control: ConnControl::default(),
                            reset_armed: false,
                        },
                        addr,
                    );
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
