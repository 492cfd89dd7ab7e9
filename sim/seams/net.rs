//! [`SimNet`]: turmoil's simulated TCP, every connection and message recorded in the trace
//! (SIM-6), and failing once the host has lost power (SIM-7).

use std::fmt;
use std::future::Future;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use online_backup::io::{BoxFuture, Listener, Net, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::faults::NetInjection;
use super::shown;
use super::world::{power_loss_error, HostShared};
use crate::trace::fnv64;

/// The simulated network of one host: turmoil's TCP, every connection and message traced.
#[derive(Clone)]
pub struct SimNet {
    host: Arc<HostShared>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimNet({})", self.host.name)
    }
}

impl SimNet {
    pub(super) fn new(host: Arc<HostShared>) -> SimNet {
        SimNet { host }
    }

    /// turmoil binds only the unspecified address or loopback. An address naming this host
    /// (its name or its IP) binds the unspecified address on that port instead, as binding a
    /// machine's own address makes it reachable from the others.
    fn own_address_port(&self, addr: &str) -> Option<u16> {
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let own = turmoil::lookup(self.host.name.as_str());
        let names_us = host == self.host.name
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip == own);
        names_us.then_some(port)
    }

    async fn bind_inner(&self, addr: &str) -> io::Result<turmoil::net::TcpListener> {
        self.host.begin(false)?;
        match turmoil::net::TcpListener::bind(addr).await {
            Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
                let Some(port) = self.own_address_port(addr) else {
                    return Err(e);
                };
                let any = match turmoil::lookup(self.host.name.as_str()) {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                turmoil::net::TcpListener::bind(SocketAddr::new(any, port)).await
            }
            other => other,
        }
    }
}

impl Net for SimNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let r = self.bind_inner(addr).await;
            let shown = match &r {
                Ok(l) => format!("ok {}", l.local_addr()?),
                Err(e) => format!("err {:?}", e.kind()),
            };
            self.host.record(&format!("net bind {addr} -> {shown}"));
            Ok(Box::new(SimListener {
                inner: r?,
                host: self.host.clone(),
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            let r = match self.host.begin(false) {
                Ok(()) => turmoil::net::TcpStream::connect(addr).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(stream) => {
                    let peer = stream.peer_addr()?;
                    let label = format!("{}->{}", stream.local_addr()?, peer);
                    self.host
                        .record(&format!("net connect {addr} -> ok {label}"));
                    Ok(Box::new(TracedStream::new(
                        stream,
                        self.host.clone(),
                        label,
                        peer.ip(),
                    )) as Box<dyn Stream>)
                }
                Err(e) => {
                    self.host
                        .record(&format!("net connect {addr} -> err {:?}", e.kind()));
                    Err(e)
                }
            }
        })
    }
}

/// A bound simulated listener.
pub struct SimListener {
    inner: turmoil::net::TcpListener,
    host: Arc<HostShared>,
}

impl fmt::Debug for SimListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SimListener({}:{:?})",
            self.host.name,
            self.inner.local_addr()
        )
    }
}

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>> {
        Box::pin(async move {
            self.host.begin(false)?;
            let r = self.inner.accept().await;
            match r {
                Ok((stream, peer)) => {
                    let label = format!("{}->{}", stream.local_addr()?, peer);
                    self.host.record(&format!("net accept -> ok {label}"));
                    let stream = TracedStream::new(stream, self.host.clone(), label, peer.ip());
                    Ok((Box::new(stream) as Box<dyn Stream>, peer))
                }
                Err(e) => {
                    self.host
                        .record(&format!("net accept -> err {:?}", e.kind()));
                    Err(e)
                }
            }
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A simulated TCP stream that records every read and write (SIM-6), fails once its host is
/// down (SIM-7), and takes the network faults of its host's plan (SIM-35).
pub struct TracedStream {
    /// `None` once dropped during a crash (see [`Drop`]) or reset by a fault.
    inner: Option<turmoil::net::TcpStream>,
    host: Arc<HostShared>,
    /// `local->peer`.
    label: String,
    /// The peer's address, to tell the backup connection from others (SIM-35).
    peer: IpAddr,
    /// The host's count of streams when this one was made: decided by the seed.
    seq: u64,
    /// A write held back by `Latency`, until this sleep ends.
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
    /// What a fault did to the stream for good.
    broken: Option<Broken>,
}

/// A stream a fault broke (SIM-35).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Broken {
    /// Reset: every operation fails with `ConnectionReset`.
    Reset,
    /// The peer stalled: it reads nothing more and sends nothing more. Writes still go into
    /// the socket's buffer, `room` more bytes of them (lost: the peer never reads them), then
    /// wait forever; reads wait forever.
    Stalled { room: usize },
}

/// The most one write hands the network (one segment): a socket's send buffer.
const SEND_BUFFER: usize = 4 << 10;

/// How much a stalled peer's socket still takes from the host's writes (SIM-35).
const STALL_BUFFER: usize = 64 << 10;

impl TracedStream {
    fn new(
        inner: turmoil::net::TcpStream,
        host: Arc<HostShared>,
        label: String,
        peer: IpAddr,
    ) -> TracedStream {
        let seq = host.next_stream();
        TracedStream {
            inner: Some(inner),
            host,
            label,
            peer,
            seq,
            delay: None,
            broken: None,
        }
    }

    fn inner(&mut self) -> &mut turmoil::net::TcpStream {
        self.inner.as_mut().expect("a live stream")
    }

    /// What a broken stream answers, or `None` when it is not broken.
    fn broken<T>(&self) -> Option<Poll<io::Result<T>>> {
        match self.broken? {
            Broken::Reset => Some(Poll::Ready(Err(io::Error::new(
                ErrorKind::ConnectionReset,
                "connection reset by a simulated fault",
            )))),
            Broken::Stalled { .. } => Some(Poll::Pending),
        }
    }

    /// A write to a stalled peer: into what is left of the socket's buffer, or never.
    fn stalled_write(&mut self, len: usize) -> Option<Poll<io::Result<usize>>> {
        let Some(Broken::Stalled { room }) = &mut self.broken else {
            return None;
        };
        if *room == 0 || len == 0 {
            return Some(if len == 0 {
                Poll::Ready(Ok(0))
            } else {
                Poll::Pending
            });
        }
        let n = len.min(*room);
        *room -= n;
        let line = format!("net buffered {} len={n} (the peer stalled)", self.label);
        self.host.record(&line);
        Some(Poll::Ready(Ok(n)))
    }

    /// Breaks the stream for good (SIM-35): a reset drops the connection, and its peer sees it
    /// end (turmoil sends a FIN, or a RST when data was left unread).
    fn break_with(&mut self, how: Broken) {
        self.host
            .record(&format!("net {how:?} {} by a fault", self.label));
        self.broken = Some(how);
        if how == Broken::Reset {
            if let Some(inner) = self.inner.take() {
                self.host.bury(self.seq, inner);
            }
        }
    }
}

impl fmt::Debug for TracedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TracedStream({}:{})", self.host.name, self.label)
    }
}

impl AsyncRead for TracedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.host.is_down() {
            return Poll::Ready(Err(power_loss_error(&self.host.name)));
        }
        if let Some(answer) = self.broken() {
            return answer;
        }
        let before = buf.filled().len();
        let r = Pin::new(self.inner()).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            if buf.filled().len() > before {
                // Reads count as operations (SIM-34); a clock may jump here.
                self.host.net_fault(self.peer, None);
            }
        }
        match &r {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                let line = format!(
                    "net read {} len={} h={:016x}",
                    self.label,
                    got.len(),
                    fnv64(got)
                );
                self.host.record(&line);
            }
            Poll::Ready(Err(e)) => {
                let line = format!("net read {} -> err {:?}", self.label, e.kind());
                self.host.record(&line);
            }
            Poll::Pending => {}
        }
        r
    }
}

impl AsyncWrite for TracedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.host.is_down() {
            return Poll::Ready(Err(power_loss_error(&self.host.name)));
        }
        // A socket takes at most a send buffer's worth at a time: a larger write goes in parts,
        // each a segment, so a long stream waits on its reader as a real one does (SIM-38).
        let buf = &buf[..buf.len().min(SEND_BUFFER)];
        if let Some(answer) = self.stalled_write(buf.len()) {
            return answer;
        }
        if let Some(answer) = self.broken() {
            return answer;
        }
        match self.delay.as_mut() {
            // A write held back by `Latency` (SIM-35): counted already; goes once the delay ends.
            Some(sleep) => {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.delay = None;
            }
            None => match self.host.net_fault(self.peer, Some(buf.len())) {
                NetInjection::None => {}
                NetInjection::Delay(d) => {
                    self.host
                        .record(&format!("net delay {} {}ms", self.label, d.as_millis()));
                    let mut sleep = Box::pin(tokio::time::sleep(d));
                    if sleep.as_mut().poll(cx).is_pending() {
                        self.delay = Some(sleep);
                        return Poll::Pending;
                    }
                }
                NetInjection::Stall => {
                    self.break_with(Broken::Stalled { room: STALL_BUFFER });
                    return self.stalled_write(buf.len()).expect("stalled");
                }
                NetInjection::Reset(upto) => {
                    // The first `upto` bytes go out, then the connection is reset.
                    let sent = match Pin::new(self.inner()).poll_write(cx, &buf[..upto]) {
                        Poll::Ready(Ok(n)) => n,
                        _ => 0,
                    };
                    if sent > 0 {
                        let line = format!(
                            "net write {} len={sent} h={:016x}",
                            self.label,
                            fnv64(&buf[..sent])
                        );
                        self.host.record(&line);
                    }
                    self.break_with(Broken::Reset);
                    return match sent {
                        0 => self.broken().expect("reset"),
                        n => Poll::Ready(Ok(n)),
                    };
                }
            },
        }
        let r = Pin::new(self.inner()).poll_write(cx, buf);
        match &r {
            Poll::Ready(Ok(n)) => {
                let line = format!(
                    "net write {} len={n} h={:016x}",
                    self.label,
                    fnv64(&buf[..*n])
                );
                self.host.record(&line);
            }
            Poll::Ready(Err(e)) => {
                let line = format!("net write {} -> err {:?}", self.label, e.kind());
                self.host.record(&line);
            }
            Poll::Pending => {}
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What a stalled peer's socket took is flushed as far as the host can tell.
        if matches!(self.broken, Some(Broken::Stalled { .. })) {
            return Poll::Ready(Ok(()));
        }
        if let Some(answer) = self.broken() {
            return answer;
        }
        Pin::new(self.inner()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(answer) = self.broken() {
            return answer;
        }
        let r = Pin::new(self.inner()).poll_shutdown(cx);
        if let Poll::Ready(res) = &r {
            let line = format!("net shutdown {} -> {}", self.label, shown(res));
            self.host.record(&line);
        }
        r
    }
}

/// Dropping a turmoil stream sends its peer a FIN or a RST, each with a latency drawn from the
/// simulation's random generator. A crash drops the host's tasks, and with them their streams,
/// in the order of tokio's task lists, which follows task ids a process numbers across all its
/// simulations: not decided by the seed. So a stream dropped during a crash is kept instead, and
/// the host's streams kept so are dropped when it starts again, in the order they were made
/// (`HostShared::bury`, `HostShared::drop_buried`): as a machine that lost power tells its peers
/// nothing, and after a restart answers their old connections with resets.
impl Drop for TracedStream {
    fn drop(&mut self) {
        self.host.record(&format!("net close {}", self.label));
        if let Some(inner) = self.inner.take() {
            self.host.bury(self.seq, inner);
        }
    }
}
