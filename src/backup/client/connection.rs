//! The connection to the backup service: connecting with a timeout, reading and writing frames
//! with the timeout and pace applied (BK-7, BK-41), the handshake (PR-3, PR-4) and the
//! incremental request with its first answer (PR-14).

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use super::{BackupError, BackupOptions};
use crate::backup::decision::{Existing, ServerInfo, ServerRefusal};
use crate::backup::protocol::{
    self, read_first_answer, read_frame_into, read_message_sized, write_message, Frame, Message,
    ProtocolError, Refusal, Request, MAX_FRAME, PROTOCOL_VERSION,
};
use crate::backup::tls::{failure_of, ClientTls};
use crate::io::{Env, Stream};
use crate::units;

/// Bytes the connection reads ahead of the frame being decoded.
const READ_BUFFER: usize = 16 << 10;

/// The receive buffer asked for under `--max-rate` (BK-41): an eighth of a second at the rate,
/// within 64 KiB to 4 MiB, so the server feels the pace within about a second of the start
/// instead of after the tens of MiB a self-growing buffer absorbs, and a link with up to about
/// 100 ms of round trip still carries the full rate.
pub fn paced_buffer(rate: u64) -> usize {
    usize::try_from(rate / 8)
        .unwrap_or(usize::MAX)
        .clamp(64 << 10, 4 << 20)
}

/// The connection to the backup service, with the timeout applied to every read (BK-7).
pub(super) struct Conn {
    /// Buffered, so that the many small frames of a transaction stream take one read of the
    /// socket for many frames; a file chunk, larger than the buffer, is read past it into the
    /// caller's buffer.
    rd: tokio::io::BufReader<tokio::io::ReadHalf<Box<dyn Stream>>>,
    wr: tokio::io::WriteHalf<Box<dyn Stream>>,
    addr: String,
    timeout: Duration,
    /// Bytes received so far (the summary's bytes).
    pub(super) received: u64,
    /// The size of the last frame received.
    pub(super) last_len: u64,
    /// `--max-rate`: the pace, and the clock and start it is measured from (BK-41).
    pace: Option<Pace>,
}

/// Receiving at most `rate` bytes per second on average since `since`: after each frame the
/// client sleeps until the bytes received so far are no more than the rate allows.
struct Pace {
    rate: u64,
    clock: Arc<dyn crate::io::Clock>,
    since: Duration,
}

impl Conn {
    pub(super) async fn recv(&mut self, waiting_for: &str) -> Result<Message, BackupError> {
        self.recv_frame(waiting_for, false).await
    }

    /// The server's first answer, read with the bound of a welcome (PR-21): a port that
    /// speaks another protocol is named as such (BK-48).
    async fn recv_first(&mut self, waiting_for: &str) -> Result<Message, BackupError> {
        self.recv_frame(waiting_for, true).await
    }

    async fn recv_frame(&mut self, waiting_for: &str, first: bool) -> Result<Message, BackupError> {
        let read = async {
            if first {
                read_first_answer(&mut self.rd).await
            } else {
                read_message_sized(&mut self.rd).await
            }
        };
        let read = tokio::time::timeout(self.timeout, read).await;
        self.arrived(read, waiting_for).await
    }

    /// The next frame, read into `buf` (the copy path of a full backup): a file chunk stays
    /// there, its data at `buf[1..]` ([`protocol::read_frame_into`]).
    pub(super) async fn recv_into(
        &mut self,
        waiting_for: &str,
        buf: &mut Vec<u8>,
    ) -> Result<Frame, BackupError> {
        let read = read_frame_into(&mut self.rd, MAX_FRAME, buf);
        let read = tokio::time::timeout(self.timeout, read).await;
        self.arrived(read, waiting_for).await
    }

    /// A frame read, or why not (BK-7, BK-48, SEC-7, SEC-11), with its size counted and the
    /// pace kept (BK-41).
    async fn arrived<T>(
        &mut self,
        read: Result<Result<(T, u64), ProtocolError>, tokio::time::error::Elapsed>,
        waiting_for: &str,
    ) -> Result<T, BackupError> {
        let (msg, len) = match read {
            Ok(Ok(m)) => m,
            Ok(Err(ProtocolError::NotBackupProtocol { looks_like_http })) => {
                return Err(BackupError::NotBackupService {
                    addr: self.addr.clone(),
                    looks_like_http,
                })
            }
            // SEC-7: a TLS service answered a plaintext hello.
            Ok(Err(ProtocolError::TlsAnswer)) => {
                return Err(BackupError::TlsRequired {
                    addr: self.addr.clone(),
                })
            }
            // SEC-11: the service refused this tool's certificate after the handshake.
            Ok(Err(ProtocolError::Io(e))) if failure_of(&e).is_some() => {
                return Err(BackupError::Tls(failure_of(&e).expect("checked")))
            }
            Ok(Err(source)) => {
                return Err(BackupError::Network {
                    addr: self.addr.clone(),
                    waiting_for: waiting_for.to_string(),
                    source,
                })
            }
            Err(_) => {
                return Err(BackupError::Timeout {
                    addr: self.addr.clone(),
                    timeout: self.timeout,
                    waiting_for: waiting_for.to_string(),
                })
            }
        };
        self.received += len;
        self.last_len = len;
        if let Some(pace) = &self.pace {
            let due = Duration::from_secs_f64(self.received as f64 / pace.rate as f64);
            let elapsed = pace.clock.since(pace.since);
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
        Ok(msg)
    }

    pub(super) async fn send(&mut self, msg: &Message) -> Result<(), BackupError> {
        let sent = async {
            write_message(&mut self.wr, msg).await?;
            protocol::flush(&mut self.wr).await
        };
        sent.await.map_err(|source| BackupError::Network {
            addr: self.addr.clone(),
            waiting_for: format!("the server to take the {}", msg.name()),
            source,
        })
    }

    pub(super) fn unexpected(&self, got: &Message, expected: &str) -> BackupError {
        match got {
            Message::Refused(Refusal::Failed { message }) => BackupError::ServerFailed {
                message: units::printable(message),
            },
            _ => BackupError::UnexpectedMessage {
                addr: self.addr.clone(),
                got: got.name(),
                expected: expected.to_string(),
            },
        }
    }
}

/// The server's answer to an incremental request.
pub(super) enum Answer {
    /// It streams: this is the first frame (a transaction or the end).
    Accepted(Message),
    /// It refused, with the typed reason (PR-7).
    Refused(ServerRefusal),
}

/// Asks for the transactions after the backup's last tx (PR-14) and reads the first answer.
pub(super) async fn ask_incremental(
    conn: &mut Conn,
    backup: &Existing,
) -> Result<Answer, BackupError> {
    conn.send(&Message::Request(Request::Incremental {
        store_id: backup.store_id,
        format: backup.format,
        last_tx: backup.last_tx,
        digest: backup.digest,
    }))
    .await?;
    let answer = match conn.recv("the first transaction").await? {
        first @ (Message::Tx(_) | Message::End { .. }) => return Ok(Answer::Accepted(first)),
        Message::Refused(Refusal::LogsPruned { needed, oldest }) => {
            ServerRefusal::LogsPruned { needed, oldest }
        }
        Message::Refused(Refusal::Diverged {
            tx,
            server_digest: Some(server),
            ..
        }) => ServerRefusal::Diverged { tx, server },
        Message::Refused(Refusal::Diverged {
            tx,
            server_digest: None,
            server_last_tx,
        }) => ServerRefusal::NeverHad { tx, server_last_tx },
        Message::Refused(Refusal::StoreMismatch { server }) => ServerRefusal::OtherStore { server },
        Message::Refused(Refusal::VersionMismatch { server }) => {
            ServerRefusal::OtherFormat { server }
        }
        other => return Err(conn.unexpected(&other, "a transaction or the end")),
    };
    Ok(Answer::Refused(answer))
}

/// Connects to the service at `addr` (`opts.host`'s), with TLS when `tls` is given (SEC-9).
pub(super) async fn connect(
    env: &Env,
    opts: &BackupOptions,
    addr: &str,
    max_rate: Option<NonZeroU64>,
    tls: Option<&ClientTls>,
) -> Result<Conn, BackupError> {
    let timeout = opts.timeout;
    let pace = max_rate.map(NonZeroU64::get);
    let connecting = match pace {
        None => env.net.connect(addr),
        Some(rate) => env.net.connect_paced(addr, paced_buffer(rate)),
    };
    let stream = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => format!(
                    "nothing listens there ({e}); check that the server is running with \
                     online_backup_enabled=true and that online_backup_server is bound to this \
                     address"
                ),
                _ => e.to_string(),
            };
            return Err(BackupError::Unreachable {
                addr: addr.to_string(),
                why,
            });
        }
        Err(_) => {
            return Err(BackupError::Unreachable {
                addr: addr.to_string(),
                why: format!(
                    "no connection within {}; check the host, the port and any firewall",
                    units::duration(timeout)
                ),
            })
        }
    };
    let stream = match tls {
        None => stream,
        Some(tls) => {
            match tokio::time::timeout(timeout, tls.connect(stream, &opts.host, addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(failure)) => return Err(BackupError::Tls(failure)),
                Err(_) => {
                    return Err(BackupError::Timeout {
                        addr: addr.to_string(),
                        timeout,
                        waiting_for: "the TLS handshake".to_string(),
                    })
                }
            }
        }
    };
    let (rd, wr) = tokio::io::split(stream);
    Ok(Conn {
        rd: tokio::io::BufReader::with_capacity(READ_BUFFER, rd),
        wr,
        addr: addr.to_string(),
        timeout,
        received: 0,
        last_len: 0,
        pace: pace.map(|rate| Pace {
            rate,
            clock: env.clock.clone(),
            since: env.clock.monotonic(),
        }),
    })
}

/// PR-3, PR-4: hello, then the server's welcome. The first answer is read with the bound of a
/// welcome (PR-21), so a port that speaks something else is named as such (BK-48) instead of
/// being read as a huge frame.
pub(super) async fn handshake(conn: &mut Conn) -> Result<ServerInfo, BackupError> {
    // A server that refuses at once (too many connections, PR-23) may close before it reads
    // the hello: its answer, if it sent one, says more than the failed write.
    let sent = conn
        .send(&Message::Hello {
            version: PROTOCOL_VERSION,
        })
        .await;
    let first = match (sent, conn.recv_first("the server's welcome").await) {
        (_, Ok(first)) => first,
        // A refusal told by TLS (an alert read after the failed write) says why (SEC-11).
        (_, Err(e @ (BackupError::Tls(_) | BackupError::TlsRequired { .. }))) => return Err(e),
        // PR-21: closed with nothing said, the likeliest cause is a service at its connection
        // limit, past the refusals it answers (PR-23), or one shutting down.
        (_, Err(BackupError::Network { source, .. })) if closed_unanswered(&source) => {
            return Err(BackupError::ClosedUnanswered {
                addr: conn.addr.clone(),
            })
        }
        (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
    };
    match first {
        Message::Welcome {
            version,
            store_id,
            format,
            last_committed_tx,
            oldest_logged_tx,
            store_bytes,
        } => {
            if version != PROTOCOL_VERSION {
                return Err(BackupError::ProtocolVersion {
                    server: version,
                    client: PROTOCOL_VERSION,
                });
            }
            Ok(ServerInfo {
                store_id,
                format,
                last_committed_tx,
                oldest_logged_tx,
                store_bytes,
            })
        }
        Message::Refused(Refusal::ProtocolVersion { server }) => {
            Err(BackupError::ProtocolVersion {
                server,
                client: PROTOCOL_VERSION,
            })
        }
        other => Err(conn.unexpected(&other, "the welcome")),
    }
}

/// Whether reading the first answer failed because the peer closed the connection without a
/// byte of answer (PR-21).
fn closed_unanswered(e: &ProtocolError) -> bool {
    match e {
        ProtocolError::Closed => true,
        ProtocolError::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Clock;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// The monotonic reading of tokio's test time, which a paused runtime advances only by
    /// the sleeps it skips: a paced run's time, exactly.
    #[derive(Debug)]
    struct TestTime(tokio::time::Instant);

    /// The runtime's reading of now, as a timer of no duration takes it: in a paused test
    /// runtime, the virtual time its sleeps advance, never the system's.
    fn runtime_now() -> tokio::time::Instant {
        tokio::time::sleep(Duration::ZERO).deadline()
    }

    impl Clock for TestTime {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + self.monotonic()
        }
        fn monotonic(&self) -> Duration {
            self.0.elapsed()
        }
    }

    /// A connection to "test" over `stream`, with a minute's timeout.
    fn conn_over(stream: Box<dyn Stream>, pace: Option<Pace>) -> Conn {
        let (rd, wr) = tokio::io::split(stream);
        Conn {
            rd: tokio::io::BufReader::with_capacity(READ_BUFFER, rd),
            wr,
            addr: "test".to_string(),
            timeout: Duration::from_secs(60),
            received: 0,
            last_len: 0,
            pace,
        }
    }

    /// A peer that takes every write and fails every read with its error kind.
    #[derive(Debug)]
    struct FailingReads(std::io::ErrorKind);

    impl tokio::io::AsyncRead for FailingReads {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::new(self.0, "injected")))
        }
    }

    impl tokio::io::AsyncWrite for FailingReads {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    // PR-21: a first read that fails because the peer closed, reset or aborted the connection
    // reads as a connection closed unanswered (a service at its limit, or shutting down); any
    // other failure is the network failure it is, naming what the tool waited for.
    #[tokio::test]
    async fn pr_21_only_a_close_reads_as_a_connection_closed_unanswered() {
        use std::io::ErrorKind::*;
        let kinds = [
            (ConnectionReset, true),
            (BrokenPipe, true),
            (UnexpectedEof, true),
            (ConnectionAborted, true),
            (PermissionDenied, false),
            (Other, false),
        ];
        for (kind, closed) in kinds {
            let mut conn = conn_over(Box::new(FailingReads(kind)), None);
            let err = handshake(&mut conn).await.unwrap_err();
            let named = match err {
                BackupError::ClosedUnanswered { .. } => true,
                BackupError::Network {
                    ref waiting_for, ..
                } => {
                    assert_eq!(waiting_for, "the server's welcome", "PR-21: {err}");
                    false
                }
                ref other => panic!("PR-21: a first read failing with {kind:?}: {other}"),
            };
            assert_eq!(
                named, closed,
                "PR-21: a first read failing with {kind:?} reads as: {err}"
            );
        }
    }

    // BK-41: a paced connection receives at the rate, on average since it opened: never
    // faster, and no slower than the pace makes it (the time the last frame is due, less than
    // a frame's worth late).
    #[tokio::test(start_paused = true)]
    async fn bk_41_a_paced_connection_receives_at_the_rate_and_no_slower() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let time = Arc::new(TestTime(runtime_now()));
        let rate = 100_000u64;
        let pace = Pace {
            rate,
            clock: time.clone(),
            since: time.monotonic(),
        };
        let mut conn = conn_over(Box::new(ours), Some(pace));
        let frames = 20;
        for _ in 0..frames {
            write_message(&mut theirs, &Message::FileChunk(vec![7; 10_000]))
                .await
                .unwrap();
        }
        for _ in 0..frames {
            conn.recv("a chunk").await.unwrap();
        }
        let took = time.monotonic();
        let due = Duration::from_secs_f64(conn.received as f64 / rate as f64);
        assert!(
            took >= due && took < due + Duration::from_millis(10),
            "BK-41: {} bytes at {rate} B/s are due at {due:?}, received at {took:?}",
            conn.received
        );
    }
}
