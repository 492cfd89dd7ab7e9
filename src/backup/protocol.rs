//! The backup wire protocol (spec/protocol.md, PR-1 ..): length-framed, checksummed frames,
//! and the typed messages they carry.
//!
//! Owns: the bytes on the wire, both directions, and reading/writing one frame over any async
//! stream with bounded memory (a frame is never larger than [`MAX_FRAME`]).
//! Must not touch: files, the store, decisions about what to send. The service and the client
//! decide; this module only encodes and decodes.

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{put_str_u16, DecodeError, Reader};

use crate::digest::Digest;
use crate::store::format::FormatVersion;
use crate::store::log::{EntryError, TxEntry, TxState, MAX_ENTRY};
use crate::store::meta::StoreId;

/// The first bytes a client sends (PR-3).
pub const MAGIC: &[u8; 8] = b"NEOBAKUP";
/// The protocol version this build speaks (PR-3).
pub const PROTOCOL_VERSION: u32 = 1;
/// Bytes of a file carried by one chunk frame (PR-11).
pub const CHUNK_SIZE: usize = 1 << 20;
/// The largest frame body: a transaction entry plus its kind byte (PR-1).
pub const MAX_FRAME: u32 = MAX_ENTRY + 1;
/// The longest file name a file-start frame may carry.
const MAX_NAME: usize = 255;
/// The largest frame a client ever sends: a hello (13 bytes) or a request (at most 61). The
/// service reads client frames with this bound, so an unauthenticated peer cannot make it
/// allocate more (PR-22).
pub const MAX_CLIENT_FRAME: u32 = 256;
/// The largest first answer a server sends (a welcome, or a refusal with one sentence): the
/// bound a client reads the first frame with (PR-21).
pub const MAX_FIRST_ANSWER: u32 = 4096;

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed")]
    Closed,
    #[error("received a damaged frame: {0}")]
    Malformed(String),
    /// A frame's body does not decode as the message its kind names (PR-2).
    #[error("received a damaged frame: {0}")]
    Decode(#[from] DecodeError),
    /// The peer's first frame is not one of this protocol (PR-21): it speaks something else.
    #[error("the peer does not speak the backup protocol")]
    NotBackupProtocol {
        /// Its first bytes read `HTTP/`: it is an HTTP server.
        looks_like_http: bool,
    },
    /// The peer's first answer is a TLS record (SEC-7): a TLS service refusing a plaintext hello.
    #[error("the peer answered with TLS")]
    TlsAnswer,
}

/// Why a server refuses a request (PR-7): typed, so the client can decide (fall back, exit 4,
/// exit 5) without parsing prose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client speaks another protocol version; the server's is given.
    ProtocolVersion { server: u32 },
    /// The backup belongs to another store; the server's store id is given.
    StoreMismatch { server: StoreId },
    /// The backup has another format version; the server's is given.
    VersionMismatch { server: FormatVersion },
    /// The logs no longer hold tx `needed`; the oldest they hold is `oldest`.
    LogsPruned { needed: u64, oldest: u64 },
    /// The backup's digest at `tx` differs from the server's, or the server never had `tx`
    /// (`server_digest` is then `None` and `server_last_tx` is below `tx`).
    Diverged {
        tx: u64,
        server_digest: Option<Digest>,
        server_last_tx: u64,
    },
    /// Anything else the server could not do (I/O failure, shutting down): one sentence.
    Failed { message: String },
}

impl std::fmt::Display for Refusal {
    /// One sentence, for the server's log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ProtocolVersion { server } => {
                write!(
                    f,
                    "the client speaks another protocol version (this server speaks {server})"
                )
            }
            Refusal::StoreMismatch { server } => {
                write!(
                    f,
                    "the backup belongs to another store (this server's is {server})"
                )
            }
            Refusal::VersionMismatch { server } => write!(
                f,
                "the backup is in another format version (this server's is {server})"
            ),
            Refusal::LogsPruned { needed, oldest } => write!(
                f,
                "the logs no longer hold tx {needed} (the oldest they hold is tx {oldest})"
            ),
            Refusal::Diverged {
                tx,
                server_digest: Some(d),
                ..
            } => write!(
                f,
                "the backup's history diverged: this server's digest at tx {tx} is {d}"
            ),
            Refusal::Diverged {
                tx,
                server_digest: None,
                server_last_tx,
            } => write!(
                f,
                "the backup is at tx {tx}, ahead of this server's last tx {server_last_tx}"
            ),
            Refusal::Failed { message } => write!(f, "{message}"),
        }
    }
}

/// The request a client makes after the handshake (PR-5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Everything: a checkpoint, the files, then the transactions after it.
    Full,
    /// The transactions after `last_tx`, of a backup of `store_id` in `format` whose digest at
    /// `last_tx` is `digest`.
    Incremental {
        store_id: StoreId,
        format: FormatVersion,
        last_tx: u64,
        digest: Digest,
    },
}

/// Every message, in both directions (PR-2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Client → server, first: magic and protocol version.
    Hello {
        version: u32,
    },
    /// Server → client, the answer to `Hello`: what the server is.
    Welcome {
        version: u32,
        store_id: StoreId,
        format: FormatVersion,
        last_committed_tx: u64,
        oldest_logged_tx: u64,
        /// Total bytes of the record files: what a full backup copies (before logs).
        store_bytes: u64,
    },
    /// Client → server.
    Request(Request),
    /// Server → client, starting a full backup: the checkpoint C and the state at it.
    FullStart {
        checkpoint_tx: u64,
        state: TxState,
        files: u32,
    },
    /// Server → client: a file of the store follows, `len` bytes in chunks.
    FileStart {
        name: String,
        len: u64,
    },
    FileChunk(Vec<u8>),
    /// Server → client: the file is complete; CRC32C of all its bytes as sent.
    FileEnd {
        crc: u32,
    },
    /// Server → client: one committed transaction.
    Tx(Box<TxEntry>),
    /// Server → client: the stream is complete at `last_tx`, whose digest is `digest`.
    End {
        last_tx: u64,
        digest: Digest,
    },
    /// Server → client: the request is refused.
    Refused(Refusal),
}

mod kind {
    pub const HELLO: u8 = 1;
    pub const WELCOME: u8 = 2;
    pub const REQUEST_FULL: u8 = 3;
    pub const REQUEST_INCREMENTAL: u8 = 4;
    pub const FULL_START: u8 = 5;
    pub const FILE_START: u8 = 6;
    pub const FILE_CHUNK: u8 = 7;
    pub const FILE_END: u8 = 8;
    pub const TX: u8 = 9;
    pub const END: u8 = 10;
    pub const REFUSED: u8 = 11;
}

mod refusal {
    pub const PROTOCOL_VERSION: u8 = 1;
    pub const STORE_MISMATCH: u8 = 2;
    pub const VERSION_MISMATCH: u8 = 3;
    pub const LOGS_PRUNED: u8 = 4;
    pub const DIVERGED: u8 = 5;
    pub const FAILED: u8 = 6;
}

impl Message {
    /// The frame body: kind byte, then the payload (PR-2).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Hello { version } => {
                out.put_u8(kind::HELLO);
                out.put_slice(MAGIC);
                out.put_u32_le(*version);
            }
            Message::Welcome {
                version,
                store_id,
                format,
                last_committed_tx,
                oldest_logged_tx,
                store_bytes,
            } => {
                out.put_u8(kind::WELCOME);
                out.put_u32_le(*version);
                store_id.put(&mut out);
                out.put_u32_le(format.0);
                out.put_u64_le(*last_committed_tx);
                out.put_u64_le(*oldest_logged_tx);
                out.put_u64_le(*store_bytes);
            }
            Message::Request(Request::Full) => out.put_u8(kind::REQUEST_FULL),
            Message::Request(Request::Incremental {
                store_id,
                format,
                last_tx,
                digest,
            }) => {
                out.put_u8(kind::REQUEST_INCREMENTAL);
                store_id.put(&mut out);
                out.put_u32_le(format.0);
                out.put_u64_le(*last_tx);
                out.put_slice(&digest.0);
            }
            Message::FullStart {
                checkpoint_tx,
                state,
                files,
            } => {
                out.put_u8(kind::FULL_START);
                out.put_u64_le(*checkpoint_tx);
                state.put(&mut out);
                out.put_u32_le(*files);
            }
            Message::FileStart { name, len } => {
                out.put_u8(kind::FILE_START);
                put_str_u16(&mut out, name);
                out.put_u64_le(*len);
            }
            // One allocation of the body's exact size: the kind byte, then the bytes.
            Message::FileChunk(bytes) => return [&[kind::FILE_CHUNK][..], bytes].concat(),
            Message::FileEnd { crc } => {
                out.put_u8(kind::FILE_END);
                out.put_u32_le(*crc);
            }
            Message::Tx(entry) => {
                // The log's own entry body (LOG-5), which is format independent (LOG-6), after
                // its 8-byte frame header.
                return [&[kind::TX][..], &entry.encode_framed()[8..]].concat();
            }
            Message::End { last_tx, digest } => {
                out.put_u8(kind::END);
                out.put_u64_le(*last_tx);
                out.put_slice(&digest.0);
            }
            Message::Refused(r) => {
                out.put_u8(kind::REFUSED);
                match r {
                    Refusal::ProtocolVersion { server } => {
                        out.put_u8(refusal::PROTOCOL_VERSION);
                        out.put_u32_le(*server);
                    }
                    Refusal::StoreMismatch { server } => {
                        out.put_u8(refusal::STORE_MISMATCH);
                        server.put(&mut out);
                    }
                    Refusal::VersionMismatch { server } => {
                        out.put_u8(refusal::VERSION_MISMATCH);
                        out.put_u32_le(server.0);
                    }
                    Refusal::LogsPruned { needed, oldest } => {
                        out.put_u8(refusal::LOGS_PRUNED);
                        out.put_u64_le(*needed);
                        out.put_u64_le(*oldest);
                    }
                    Refusal::Diverged {
                        tx,
                        server_digest,
                        server_last_tx,
                    } => {
                        out.put_u8(refusal::DIVERGED);
                        out.put_u64_le(*tx);
                        out.put_u64_le(*server_last_tx);
                        match server_digest {
                            Some(d) => {
                                out.put_u8(1);
                                out.put_slice(&d.0);
                            }
                            None => out.put_u8(0),
                        }
                    }
                    Refusal::Failed { message } => {
                        out.put_u8(refusal::FAILED);
                        put_str_u16(&mut out, message);
                    }
                }
            }
        }
        out
    }

    /// Decodes a frame body whose checksum was verified (PR-2). Trailing bytes are an error.
    pub fn decode_body(b: &[u8]) -> Result<Message, ProtocolError> {
        let mut r = Reader::new(b);
        let msg = match r.u8()? {
            kind::HELLO => {
                if r.bytes(8)? != MAGIC {
                    return Err(malformed("not a backup client (bad magic)"));
                }
                Message::Hello { version: r.u32()? }
            }
            kind::WELCOME => Message::Welcome {
                version: r.u32()?,
                store_id: StoreId::read(&mut r)?,
                format: FormatVersion(r.u32()?),
                last_committed_tx: r.u64()?,
                oldest_logged_tx: r.u64()?,
                store_bytes: r.u64()?,
            },
            kind::REQUEST_FULL => Message::Request(Request::Full),
            kind::REQUEST_INCREMENTAL => Message::Request(Request::Incremental {
                store_id: StoreId::read(&mut r)?,
                format: FormatVersion(r.u32()?),
                last_tx: r.u64()?,
                digest: Digest(r.array()?),
            }),
            kind::FULL_START => Message::FullStart {
                checkpoint_tx: r.u64()?,
                state: TxState::read(&mut r)?,
                files: r.u32()?,
            },
            kind::FILE_START => {
                let name = r.str_u16()?;
                if name.is_empty() || name.len() > MAX_NAME || name.contains(['/', '\\', '\0']) {
                    return Err(malformed("a file name that is not a plain name"));
                }
                Message::FileStart {
                    name,
                    len: r.u64()?,
                }
            }
            kind::FILE_CHUNK => {
                let rest = r.rest();
                if rest.len() > CHUNK_SIZE {
                    return Err(malformed("a file chunk larger than the chunk size"));
                }
                if rest.is_empty() {
                    return Err(malformed(EMPTY_CHUNK));
                }
                Message::FileChunk(rest.to_vec())
            }
            kind::FILE_END => Message::FileEnd { crc: r.u32()? },
            kind::TX => {
                let body = r.rest();
                let entry = TxEntry::decode_body(body)
                    .map_err(|EntryError(why)| malformed(&format!("transaction: {why}")))?;
                Message::Tx(Box::new(entry))
            }
            kind::END => Message::End {
                last_tx: r.u64()?,
                digest: Digest(r.array()?),
            },
            kind::REFUSED => Message::Refused(match r.u8()? {
                refusal::PROTOCOL_VERSION => Refusal::ProtocolVersion { server: r.u32()? },
                refusal::STORE_MISMATCH => Refusal::StoreMismatch {
                    server: StoreId::read(&mut r)?,
                },
                refusal::VERSION_MISMATCH => Refusal::VersionMismatch {
                    server: FormatVersion(r.u32()?),
                },
                refusal::LOGS_PRUNED => Refusal::LogsPruned {
                    needed: r.u64()?,
                    oldest: r.u64()?,
                },
                refusal::DIVERGED => {
                    let tx = r.u64()?;
                    let server_last_tx = r.u64()?;
                    let server_digest = match r.u8()? {
                        0 => None,
                        1 => Some(Digest(r.array()?)),
                        _ => return Err(malformed("a bad optional digest")),
                    };
                    Refusal::Diverged {
                        tx,
                        server_digest,
                        server_last_tx,
                    }
                }
                refusal::FAILED => Refusal::Failed {
                    message: r.str_u16()?,
                },
                other => return Err(malformed(&format!("unknown refusal {other}"))),
            }),
            other => return Err(malformed(&format!("unknown message kind {other}"))),
        };
        r.finish()?;
        Ok(msg)
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Welcome { .. } => "welcome",
            Message::Request(Request::Full) => "full backup request",
            Message::Request(Request::Incremental { .. }) => "incremental backup request",
            Message::FullStart { .. } => "full backup start",
            Message::FileStart { .. } => "file start",
            Message::FileChunk(_) => "file chunk",
            Message::FileEnd { .. } => "file end",
            Message::Tx(_) => "transaction",
            Message::End { .. } => "end",
            Message::Refused(_) => "refusal",
        }
    }
}

fn malformed(why: &str) -> ProtocolError {
    ProtocolError::Malformed(why.to_string())
}

/// Writes one frame: body length (u32 LE), CRC32C of the body (u32 LE), body (PR-1).
pub async fn write_message<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    msg: &Message,
) -> Result<(), ProtocolError> {
    let body = msg.encode_body();
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    head[4..].copy_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    w.write_all(&head).await?;
    w.write_all(&body).await?;
    Ok(())
}

/// Writes a file chunk frame straight from `bytes`, without building a [`Message`]. The frame is
/// exactly what `write_message(&Message::FileChunk(bytes.to_vec()))` writes.
pub async fn write_chunk<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    bytes: &[u8],
) -> Result<(), ProtocolError> {
    let mut frame = vec![0u8; CHUNK_HEAD];
    frame.extend_from_slice(bytes);
    frame_chunk(&mut frame, crc32c::crc32c(bytes));
    w.write_all(&frame).await?;
    Ok(())
}

/// The bytes in front of a chunk's data in its frame: length, CRC and kind (PR-1, PR-2).
pub const CHUNK_HEAD: usize = 9;

/// Makes `frame` a file chunk frame (the copy path of a full backup, with no copy of the data):
/// `frame[CHUNK_HEAD..]` holds the chunk, whose CRC32C is `chunk_crc`; the head is filled in
/// front of it. The data is read once for its CRC, which serves both the frame (PR-1) and the
/// file end (PR-11, see [`crc32c_combine`]).
pub fn frame_chunk(frame: &mut [u8], chunk_crc: u32) {
    let len = frame.len() - CHUNK_HEAD;
    frame[..4].copy_from_slice(&((len + 1) as u32).to_le_bytes());
    frame[4..8].copy_from_slice(&chunk_frame_crc(chunk_crc, len).to_le_bytes());
    frame[8] = kind::FILE_CHUNK;
}

/// The CRC32C of a chunk frame's body (its kind byte, then `len` bytes of data whose CRC32C is
/// `chunk_crc`), without reading the data again.
fn chunk_frame_crc(chunk_crc: u32, len: usize) -> u32 {
    crc32c_combine(crc32c::crc32c(&[kind::FILE_CHUNK]), chunk_crc, len)
}

/// The CRC32C of `a` followed by `b`, from the CRC32C of `a`, that of `b` and the length of `b`,
/// in about a microsecond (zlib's `crc32_combine` by powers of x; the `crc32c` crate's own
/// squares matrices and costs a hundred times more, as much as the CRC of 100 KiB).
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    mul_mod_p(x_8n_mod_p(len_b as u64), crc_a) ^ crc_b
}

/// CRC32C's polynomial, reflected.
const POLY: u32 = 0x82f6_3b78;

/// `a * b` modulo the polynomial, both reflected (x^0 is the top bit).
const fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0u32;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
}

/// x^(2^k) modulo the polynomial, for every k a u64 count of bytes needs (8n < 2^67).
const X_2K: [u32; 67] = {
    let mut table = [0u32; 67];
    let mut p = 1u32 << 30; // x^1
    let mut k = 0;
    while k < 67 {
        table[k] = p;
        p = mul_mod_p(p, p);
        k += 1;
    }
    table
};

/// x^(8n) modulo the polynomial: what appending n zero bytes multiplies a CRC by.
fn x_8n_mod_p(mut n: u64) -> u32 {
    let mut p = 1u32 << 31; // x^0
    let mut k = 3;
    while n != 0 {
        if n & 1 != 0 {
            p = mul_mod_p(X_2K[k], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// A frame read by [`read_frame_into`].
#[derive(Debug)]
pub enum Frame {
    /// A file chunk, left in the caller's buffer: the data is `buf[1..]` and its CRC32C is `crc`.
    Chunk { crc: u32 },
    /// Any other message.
    Message(Message),
}

/// Why an empty file chunk is refused (PR-11): it carries nothing, and a peer that sent them
/// without end would hold the receiver forever without moving the file on.
const EMPTY_CHUNK: &str = "an empty file chunk (a chunk carries 1 byte to 1 MiB)";

/// [`read_message_within`] for the copy path of a full backup: the body is read into `buf`
/// (its allocation reused, nothing zeroed) and read once for its CRC; a file chunk stays there
/// rather than being copied into a [`Message`]. Returns the frame and its size on the wire.
pub async fn read_frame_into<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: u32,
    buf: &mut Vec<u8>,
) -> Result<(Frame, u64), ProtocolError> {
    let Some(head) = read_head(r).await? else {
        return Err(ProtocolError::Closed);
    };
    let len = frame_len(&head, max).ok_or_else(|| {
        malformed(&format!(
            "a frame length of {} bytes, above the {max} this side accepts",
            head_len(&head)
        ))
    })? as usize;
    buf.clear();
    buf.reserve(len);
    while buf.len() < len {
        let want = len - buf.len();
        let n = r.read_buf(&mut (&mut *buf).limit(want)).await?;
        if n == 0 {
            return Err(malformed("the connection closed inside a frame"));
        }
    }
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4"));
    let size = 8 + len as u64;
    if buf[0] == kind::FILE_CHUNK {
        let chunk_crc = crc32c::crc32c(&buf[1..]);
        if chunk_frame_crc(chunk_crc, len - 1) != crc {
            return Err(malformed("frame checksum mismatch"));
        }
        if len - 1 > CHUNK_SIZE {
            return Err(malformed("a file chunk larger than the chunk size"));
        }
        if len == 1 {
            return Err(malformed(EMPTY_CHUNK));
        }
        return Ok((Frame::Chunk { crc: chunk_crc }, size));
    }
    if crc32c::crc32c(buf) != crc {
        return Err(malformed("frame checksum mismatch"));
    }
    Ok((Frame::Message(Message::decode_body(buf)?), size))
}

/// Flushes what `write_message` buffered.
pub async fn flush<W: AsyncWrite + Unpin + ?Sized>(w: &mut W) -> Result<(), ProtocolError> {
    w.flush().await?;
    Ok(())
}

/// Reads one frame and decodes it. A clean end of stream before a frame starts is
/// [`ProtocolError::Closed`]; a length over [`MAX_FRAME`] or a checksum mismatch is malformed
/// (PR-1), so a peer can never make the reader allocate more than one frame's bound.
pub async fn read_message<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<Message, ProtocolError> {
    Ok(read_message_sized(r).await?.0)
}

/// [`read_message`], also returning the frame's size on the wire (header included).
pub async fn read_message_sized<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<(Message, u64), ProtocolError> {
    read_message_within(r, MAX_FRAME).await
}

/// Reads one frame whose body is at most `max` bytes, refusing a longer one before allocating
/// anything (PR-1, PR-22); returns the message and its size on the wire.
pub async fn read_message_within<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: u32,
) -> Result<(Message, u64), ProtocolError> {
    let Some(head) = read_head(r).await? else {
        return Err(ProtocolError::Closed);
    };
    let len = frame_len(&head, max).ok_or_else(|| {
        malformed(&format!(
            "a frame length of {} bytes, above the {max} this side accepts",
            head_len(&head)
        ))
    })?;
    read_body(r, &head, len).await
}

/// Reads a server's first answer (a welcome or a refusal), bounded by [`MAX_FIRST_ANSWER`]
/// (PR-21). A first frame that is out of bounds, damaged or of no known kind is
/// [`ProtocolError::NotBackupProtocol`]: the peer speaks something else (an HTTP server answers
/// the hello with `HTTP/1.1 400`, which reads as a length of about 1.3 GB).
pub async fn read_first_answer<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<(Message, u64), ProtocolError> {
    let mut head = [0u8; 8];
    let head = match read_head_into(r, &mut head).await {
        Ok(Some(())) => head,
        Ok(None) => return Err(ProtocolError::Closed),
        // A TLS record (an alert, 7 bytes, then the close) is no frame: SEC-7.
        Err(_) if is_tls_record(&head) => return Err(ProtocolError::TlsAnswer),
        Err(ProtocolError::Malformed(_)) => {
            return Err(ProtocolError::NotBackupProtocol {
                looks_like_http: false,
            })
        }
        Err(e) => return Err(e),
    };
    if is_tls_record(&head) {
        return Err(ProtocolError::TlsAnswer);
    }
    let foreign = ProtocolError::NotBackupProtocol {
        looks_like_http: head.starts_with(b"HTTP/"),
    };
    let Some(len) = frame_len(&head, MAX_FIRST_ANSWER) else {
        return Err(foreign);
    };
    match read_body(r, &head, len).await {
        Err(ProtocolError::Malformed(_) | ProtocolError::Decode(_)) => Err(foreign),
        other => other,
    }
}

/// Whether `head` starts like a TLS record: an alert (21) or a handshake (22), then a version
/// 3.1 to 3.4. Read as a frame header that is a length of at least 66,325 bytes, beyond any
/// first answer's bound (PR-21), so no answer of this protocol is taken for one.
fn is_tls_record(head: &[u8; 8]) -> bool {
    matches!(head[0], 0x15 | 0x16) && head[1] == 0x03 && (1..=4).contains(&head[2])
}

/// The 8-byte frame header, or `None` on a clean end of stream before it.
async fn read_head<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<Option<[u8; 8]>, ProtocolError> {
    let mut head = [0u8; 8];
    Ok(read_head_into(r, &mut head).await?.map(|()| head))
}

/// [`read_head`] into `head`, which keeps the bytes read before a failure.
async fn read_head_into<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    head: &mut [u8; 8],
) -> Result<Option<()>, ProtocolError> {
    let mut got = 0;
    while got < head.len() {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(malformed("the connection closed inside a frame"));
        }
        got += n;
    }
    Ok(Some(()))
}

fn head_len(head: &[u8; 8]) -> u32 {
    u32::from_le_bytes(head[..4].try_into().expect("4"))
}

/// The body length the header announces, if it is within 1 ..= `max` (PR-1): checked before
/// anything is allocated.
fn frame_len(head: &[u8; 8], max: u32) -> Option<u32> {
    Some(head_len(head)).filter(|&len| len != 0 && len <= max)
}

/// Reads a body of `len` bytes, checks it against the header's CRC and decodes it.
async fn read_body<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    head: &[u8; 8],
    len: u32,
) -> Result<(Message, u64), ProtocolError> {
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4"));
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            malformed("the connection closed inside a frame")
        } else {
            ProtocolError::Io(e)
        }
    })?;
    if crc32c::crc32c(&body) != crc {
        return Err(malformed("frame checksum mismatch"));
    }
    Ok((Message::decode_body(&body)?, 8 + len as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::NodeRecord;
    use crate::store::log::RecordImage;

    fn samples() -> Vec<Message> {
        let id = StoreId {
            created_millis: 1,
            random: 2,
        };
        let state = TxState {
            digest: Digest([9; 32]),
            nodes: 1,
            relationships: 2,
            next_node: 3,
            next_rel: 4,
            next_block: 5,
        };
        vec![
            Message::Hello { version: 1 },
            Message::Welcome {
                version: 1,
                store_id: id,
                format: FormatVersion::V2,
                last_committed_tx: 10,
                oldest_logged_tx: 3,
                store_bytes: 4096,
            },
            Message::Request(Request::Full),
            Message::Request(Request::Incremental {
                store_id: id,
                format: FormatVersion::V1,
                last_tx: 7,
                digest: Digest([1; 32]),
            }),
            Message::FullStart {
                checkpoint_tx: 5,
                state,
                files: 3,
            },
            Message::FileStart {
                name: "neostore.nodestore.db".into(),
                len: 99,
            },
            Message::FileChunk(vec![1, 2, 3]),
            Message::FileEnd { crc: 77 },
            Message::Tx(Box::new(TxEntry {
                tx_id: 6,
                timestamp_millis: 8,
                after: state,
                records: vec![RecordImage::Node(0, NodeRecord::unused())],
            })),
            Message::End {
                last_tx: 6,
                digest: Digest([2; 32]),
            },
            Message::Refused(Refusal::ProtocolVersion { server: 1 }),
            Message::Refused(Refusal::StoreMismatch { server: id }),
            Message::Refused(Refusal::VersionMismatch {
                server: FormatVersion::V2,
            }),
            Message::Refused(Refusal::LogsPruned {
                needed: 4,
                oldest: 9,
            }),
            Message::Refused(Refusal::Diverged {
                tx: 4,
                server_digest: Some(Digest([3; 32])),
                server_last_tx: 9,
            }),
            Message::Refused(Refusal::Diverged {
                tx: 40,
                server_digest: None,
                server_last_tx: 9,
            }),
            Message::Refused(Refusal::Failed {
                message: "disk on fire".into(),
            }),
        ]
    }

    // PR-1, PR-2: every message round-trips through a frame.
    #[tokio::test]
    async fn pr_2_every_message_round_trips() {
        for msg in samples() {
            let mut wire = Vec::new();
            write_message(&mut wire, &msg).await.unwrap();
            let back = read_message(&mut wire.as_slice()).await.unwrap();
            assert_eq!(back, msg);
        }
    }

    // PR-1: a flipped bit anywhere in a frame is detected; a huge length is refused before
    // allocating; a truncated frame is not a clean close.
    #[tokio::test]
    async fn pr_1_damaged_frames_are_refused() {
        let mut wire = Vec::new();
        write_message(&mut wire, &Message::FileChunk(vec![5; 100]))
            .await
            .unwrap();
        for i in 8..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x10;
            assert!(read_message(&mut bad.as_slice()).await.is_err(), "byte {i}");
        }
        let mut huge = wire.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_message(&mut huge.as_slice()).await,
            Err(ProtocolError::Malformed(_))
        ));
        let cut = &wire[..wire.len() - 1];
        assert!(matches!(
            read_message(&mut &cut[..]).await,
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            read_message(&mut &[][..]).await,
            Err(ProtocolError::Closed)
        ));
    }

    // PR-11: a chunk written without a message is the same frame as the message's.
    #[tokio::test]
    async fn pr_11_direct_chunk_frames_match() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut a = Vec::new();
        write_message(&mut a, &Message::FileChunk(data.clone()))
            .await
            .unwrap();
        let mut b = Vec::new();
        write_chunk(&mut b, &data).await.unwrap();
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn pr_11_an_empty_file_chunk_is_refused_on_both_read_paths() {
        let mut wire = Vec::new();
        write_chunk(&mut wire, &[]).await.unwrap();
        let refused = |r: Result<(), ProtocolError>| {
            let why = r.expect_err("PR-11: an empty chunk is refused").to_string();
            assert!(why.contains("an empty file chunk"), "PR-11: {why}");
        };
        refused(read_message(&mut wire.as_slice()).await.map(|_| ()));
        let mut buf = Vec::new();
        refused(
            read_frame_into(&mut wire.as_slice(), MAX_FRAME, &mut buf)
                .await
                .map(|_| ()),
        );
        // One byte is a chunk.
        let mut wire = Vec::new();
        write_chunk(&mut wire, &[9]).await.unwrap();
        let (frame, _) = read_frame_into(&mut wire.as_slice(), MAX_FRAME, &mut buf)
            .await
            .expect("PR-11: a chunk of one byte");
        assert!(matches!(frame, Frame::Chunk { .. }), "PR-11: {frame:?}");
    }

    // PR-1, PR-11: combining CRCs gives the CRC of the bytes together, as the crate's does.
    #[test]
    fn pr_1_crc_combine_matches_one_pass() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        for split in [0, 1, 2, 7, 100, 4095, 65_536, 69_999, 70_000] {
            let (a, b) = data.split_at(split);
            let got = crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len());
            assert_eq!(got, crc32c::crc32c(&data), "split at {split}");
            let theirs = crc32c::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len());
            assert_eq!(got, theirs, "split at {split}");
        }
        for len in [1usize << 20, (1 << 32) + 5, usize::MAX >> 3] {
            assert_eq!(
                crc32c_combine(7, 9, len),
                crc32c::crc32c_combine(7, 9, len),
                "length {len}"
            );
        }
    }

    // PR-1, PR-2, PR-11: the copy path reads every frame as `read_message` does; a chunk stays in
    // the buffer with its data's CRC; a flipped bit anywhere is refused.
    #[tokio::test]
    async fn pr_1_frames_read_into_a_buffer_match_messages() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        let mut buf = Vec::new();
        for msg in samples()
            .into_iter()
            .chain([Message::FileChunk(data.clone())])
        {
            let mut wire = Vec::new();
            write_message(&mut wire, &msg).await.unwrap();
            let (frame, size) = read_frame_into(&mut wire.as_slice(), MAX_FRAME, &mut buf)
                .await
                .unwrap();
            assert_eq!(size, wire.len() as u64);
            match (frame, &msg) {
                (Frame::Chunk { crc }, Message::FileChunk(bytes)) => {
                    assert_eq!(&buf[1..], &bytes[..]);
                    assert_eq!(crc, crc32c::crc32c(bytes));
                }
                (Frame::Message(m), _) => assert_eq!(m, msg),
                (other, _) => panic!("{other:?} read for {msg:?}"),
            }
        }
        let mut wire = Vec::new();
        write_chunk(&mut wire, &data).await.unwrap();
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x10;
            assert!(
                read_frame_into(&mut bad.as_slice(), MAX_FRAME, &mut buf)
                    .await
                    .is_err(),
                "byte {i}"
            );
        }
        let cut = &wire[..wire.len() - 1];
        assert!(matches!(
            read_frame_into(&mut &cut[..], MAX_FRAME, &mut buf).await,
            Err(ProtocolError::Malformed(_))
        ));
    }

    // PR-1: the largest frame is exactly what the largest transaction entry needs with its
    // kind byte: a body of MAX_ENTRY + 1 bytes gets past the length check (to be decoded), one
    // byte more is refused by it, unread.
    #[tokio::test]
    async fn pr_1_a_frame_as_large_as_the_largest_entry_passes_the_bound_and_no_larger() {
        let mut buf = Vec::new();
        for (len, fits) in [
            (MAX_ENTRY as usize + 1, true),
            (MAX_ENTRY as usize + 2, false),
        ] {
            let mut body = vec![0u8; len];
            body[0] = kind::TX;
            let mut wire = (len as u32).to_le_bytes().to_vec();
            wire.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            wire.extend_from_slice(&body);
            let read = read_frame_into(&mut wire.as_slice(), MAX_FRAME, &mut buf).await;
            let bounded =
                matches!(&read, Err(ProtocolError::Malformed(why)) if why.contains("frame length"));
            assert_eq!(
                !bounded,
                fits,
                "PR-1: a frame body of {len} bytes: {:?}",
                read.err()
            );
        }
    }

    // PR-7, BK-40: an unexpected message is named in the error sentence: every kind by a name
    // of its own.
    #[test]
    fn pr_7_every_message_kind_has_a_name_of_its_own() {
        let mut by_kind = std::collections::BTreeMap::new();
        for msg in samples() {
            let body = msg.encode_body();
            let name = msg.name();
            assert!(!name.is_empty(), "PR-7: {msg:?}");
            if let Some(other) = by_kind.insert(name, body[0]) {
                assert_eq!(other, body[0], "PR-7: two kinds named {name:?}");
            }
        }
        assert!(by_kind.len() >= 10, "PR-7: {by_kind:?}");
    }

    // PR-3: a peer that is not a backup client is refused at the first frame.
    #[test]
    fn sec_7_only_an_alert_or_handshake_of_tls_3_1_to_3_4_reads_as_a_tls_answer() {
        let head = |a: u8, b: u8, c: u8| [a, b, c, 0, 2, 2, 40, 0];
        for (h, tls) in [
            (head(0x15, 3, 1), true),
            (head(0x16, 3, 4), true),
            (head(0x16, 3, 0), false),
            (head(0x16, 3, 5), false),
            (head(0x16, 2, 3), false),
            (head(0x16, 4, 1), false),
            (head(0x17, 3, 3), false),
            (head(0x14, 3, 3), false),
        ] {
            assert_eq!(is_tls_record(&h), tls, "SEC-7: {h:?}");
        }
    }

    #[test]
    fn pr_3_bad_magic_is_refused() {
        let mut body = Message::Hello { version: 1 }.encode_body();
        body[1] ^= 1;
        assert!(Message::decode_body(&body).is_err());
    }

    // PR-11: a file name with a path separator is refused (a server cannot write outside the
    // generation).
    #[test]
    fn pr_11_file_names_are_plain() {
        for name in ["../x", "a/b", ""] {
            let body = Message::FileStart {
                name: name.into(),
                len: 1,
            }
            .encode_body();
            assert!(Message::decode_body(&body).is_err(), "{name}");
        }
        for (len, ok) in [(MAX_NAME, true), (MAX_NAME + 1, false)] {
            let body = Message::FileStart {
                name: "n".repeat(len),
                len: 1,
            }
            .encode_body();
            assert_eq!(
                Message::decode_body(&body).is_ok(),
                ok,
                "PR-11: a name of {len} bytes (at most {MAX_NAME})"
            );
        }
    }
}
