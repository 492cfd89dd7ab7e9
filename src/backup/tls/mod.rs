//! TLS on the backup port, with client certificates (spec/security.md).
//!
//! Owns: reading the PEM files (through the `Fs` seam), the rustls configurations of both sides
//! (TLS 1.3 only, no session resumption, certificate validity checked against the injected
//! `Clock`, the crypto of `Env::crypto`), the client-certificate check (the WebPKI verifier of
//! `online_backup_tls_client_ca`, then the allow-list), the server's listener that wraps every
//! accepted connection, the client's handshake, and the sentence every failure is told in.
//! Must not touch: the backup protocol. The service and the client see a byte stream; a refused
//! handshake is an I/O error on it whose text is the sentence (the service logs it with the
//! peer's address) or, on the client, a [`TlsFailure`].
//!
//! Files: `names.rs` a certificate's names (common names, DNS names) and the allow-list match;
//! `why.rs` the failures and their sentences; this file the configurations and the streams.

mod names;
mod why;

use std::fmt;
use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::time_provider::TimeProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::BackupTls;
use crate::io::{read_small_file, BoxFuture, Clock, Env, Listener, Stream};
pub use names::{certificate_names, Name};
pub use why::{failure_of, TlsFailure, Why};

/// The largest PEM file read (a chain of a few certificates is a few KiB).
const PEM_LIMIT: u64 = 1 << 20;
/// How long a client may take to complete the TLS handshake (SEC-13): a peer that stalls in it
/// holds one of the service's connections (PR-23) no longer than this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused client's bytes are read and dropped after the alert, at most.
const LINGER: Duration = Duration::from_secs(2);
/// The first byte of a TLS record carrying a handshake message: how a plaintext service
/// recognizes a TLS client (SEC-8). A backup hello frame starts with its length, 13.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why the TLS files could not be used: one sentence naming the flag or key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path} holds no certificate (a PEM block BEGIN CERTIFICATE is expected)")]
    NoCertificate { what: &'static str, path: String },
    #[error("{what} {path} holds no private key (a PEM block BEGIN PRIVATE KEY, BEGIN EC PRIVATE KEY or BEGIN RSA PRIVATE KEY is expected)")]
    NoKey { what: &'static str, path: String },
    #[error("{what} {path} is not a valid PEM file: {why}")]
    NotPem {
        what: &'static str,
        path: String,
        why: &'static str,
    },
    #[error("the private key in {what} {path} cannot be used: {why}")]
    UnusableKey {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { key: String, cert: String },
    #[error("{what} {path} holds a certificate that cannot be a trust anchor: {why}")]
    BadCa {
        what: &'static str,
        path: String,
        why: String,
    },
}

/// The flag or key each file is named by, so a sentence says what to fix.
#[derive(Clone, Copy)]
struct Names {
    cert: &'static str,
    key: &'static str,
    ca: &'static str,
}

const SERVER_NAMES: Names = Names {
    cert: "online_backup_tls_cert",
    key: "online_backup_tls_key",
    ca: "online_backup_tls_client_ca",
};

const CLIENT_NAMES: Names = Names {
    cert: "--tls-cert",
    key: "--tls-key",
    ca: "--tls-ca",
};

/// Certificate validity is checked against the injected clock (SEC-5): the simulated one in
/// simulation.
#[derive(Debug)]
struct ClockTime(Arc<dyn Clock>);

impl TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        let since = self.0.now().duration_since(UNIX_EPOCH).ok()?;
        Some(UnixTime::since_unix_epoch(since))
    }
}

fn read_pem(env: &Env, what: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    read_small_file(&*env.fs, path, PEM_LIMIT).map_err(|source| TlsSetupError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block's base64 is damaged",
        _ => "it cannot be read as PEM",
    }
}

fn load_certs(
    env: &Env,
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read_pem(env, what, path)?;
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::NotPem {
            what,
            path: shown.clone(),
            why: pem_problem(&e),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate { what, path: shown });
    }
    Ok(certs)
}

fn load_key(
    env: &Env,
    what: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let bytes = read_pem(env, what, path)?;
    let shown = path.display().to_string();
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsSetupError::NoKey { what, path: shown },
        e => TlsSetupError::NotPem {
            what,
            path: shown,
            why: pem_problem(&e),
        },
    })
}

fn load_roots(env: &Env, what: &'static str, path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(env, what, path)? {
        roots.add(cert).map_err(|e| TlsSetupError::BadCa {
            what,
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The certificate and key, checked to belong together.
fn load_identity(
    env: &Env,
    names: Names,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsSetupError> {
    let chain = load_certs(env, names.cert, cert)?;
    let der = load_key(env, names.key, key)?;
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    CertifiedKey::from_der(chain, der, &env.crypto).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsSetupError::KeyMismatch { key, cert },
        e => TlsSetupError::UnusableKey {
            what: names.key,
            path: key,
            why: match e {
                rustls::Error::General(g) => g,
                other => other.to_string(),
            },
        },
    })
}

// ---------------------------------------------------------------------------------------------
// The server

/// The backup service's TLS (SEC-1 .. SEC-6): its certificate, the verifier of client
/// certificates and the allow-list, loaded once at start.
#[derive(Debug)]
pub struct ServerTls {
    crypto: Arc<CryptoProvider>,
    time: Arc<ClockTime>,
    identity: Arc<SingleCertAndKey>,
    verifier: Arc<dyn ClientCertVerifier>,
    allowed: Arc<Vec<String>>,
    handshake_timeout: Duration,
}

impl ServerTls {
    /// Reads the three files through the `Fs` seam and builds the configuration; any problem
    /// is one sentence naming the key and the file (SEC-2).
    pub fn load(env: &Env, settings: &BackupTls) -> Result<ServerTls, TlsSetupError> {
        let identity = load_identity(env, SERVER_NAMES, &settings.cert, &settings.key)?;
        let roots = load_roots(env, SERVER_NAMES.ca, &settings.client_ca)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), env.crypto.clone())
                .build()
                .map_err(|e| TlsSetupError::BadCa {
                    what: SERVER_NAMES.ca,
                    path: settings.client_ca.display().to_string(),
                    why: e.to_string(),
                })?;
        let server = ServerTls {
            crypto: env.crypto.clone(),
            time: Arc::new(ClockTime(env.clock.clone())),
            identity: Arc::new(SingleCertAndKey::from(identity)),
            verifier,
            allowed: Arc::new(settings.allowed_clients.clone()),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        };
        // Building one configuration checks that the key suits TLS 1.3 with this provider.
        server.connection_config(Arc::default())?;
        Ok(server)
    }

    /// The same, with another handshake timeout than [`HANDSHAKE_TIMEOUT`] (for tests).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> ServerTls {
        self.handshake_timeout = timeout;
        self
    }

    /// The configuration of one connection: its verifier records the names of the certificate
    /// the client presents in `seen`, so a refusal can name them.
    fn connection_config(
        &self,
        seen: Arc<Mutex<Option<Vec<Name>>>>,
    ) -> Result<Arc<ServerConfig>, TlsSetupError> {
        let verifier = Arc::new(AllowList {
            inner: self.verifier.clone(),
            allowed: self.allowed.clone(),
            seen,
        });
        let mut config = ServerConfig::builder_with_details(self.crypto.clone(), self.time.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsSetupError::UnusableKey {
                what: SERVER_NAMES.key,
                path: String::new(),
                why: e.to_string(),
            })?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.identity.clone());
        // No resumption: every connection verifies the client's certificate afresh (SEC-1).
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(Arc::new(config))
    }

    /// Wraps an accepted connection: the handshake runs when the service first reads from it.
    fn stream(&self, inner: Box<dyn Stream>, peer: SocketAddr) -> Box<dyn Stream> {
        let seen = Arc::new(Mutex::new(None));
        match self.connection_config(seen.clone()) {
            Ok(config) => Box::new(ServerStream {
                state: State::Handshake(Box::new(
                    tokio_rustls::TlsAcceptor::from(config)
                        .accept(inner)
                        .into_fallible(),
                )),
                peer,
                seen,
                deadline: Box::pin(tokio::time::sleep(self.handshake_timeout)),
                timeout: self.handshake_timeout,
            }),
            Err(e) => Box::new(ServerStream {
                state: State::Failed(format!("the TLS configuration failed: {e}")),
                peer,
                seen,
                deadline: Box::pin(tokio::time::sleep(self.handshake_timeout)),
                timeout: self.handshake_timeout,
            }),
        }
    }
}

/// The client-certificate check (SEC-3, SEC-4): the WebPKI verifier of the configured CA, then
/// the allow-list.
#[derive(Debug)]
struct AllowList {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Arc<Vec<String>>,
    seen: Arc<Mutex<Option<Vec<Name>>>>,
}

impl ClientCertVerifier for AllowList {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let presented = certificate_names(end_entity);
        *self.seen.lock().unwrap() = Some(presented.clone());
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed.is_empty() || names::allowed(&presented, &self.allowed) {
            Ok(verified)
        } else {
            // Sent as the alert access_denied (SEC-4).
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

enum State {
    Handshake(Box<tokio_rustls::FallibleAccept<Box<dyn Stream>>>),
    Ready(Box<tokio_rustls::server::TlsStream<Box<dyn Stream>>>),
    /// The handshake was refused and the alert sent: what the client sends is read and dropped
    /// until it closes, or for [`LINGER`] at most, so that its hello (sent before it learns of
    /// the refusal, in TLS 1.3) does not make this side's close a reset that destroys the alert
    /// before the client reads it (SEC-11).
    Lingering {
        io: Box<dyn Stream>,
        why: String,
        until: Pin<Box<tokio::time::Sleep>>,
    },
    /// The handshake was refused; every later read or write fails with this sentence.
    Failed(String),
}

/// A connection of a TLS backup service: the handshake, then the TLS stream.
struct ServerStream {
    state: State,
    peer: SocketAddr,
    seen: Arc<Mutex<Option<Vec<Name>>>>,
    /// When the handshake must be done by (SEC-13).
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl fmt::Debug for ServerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Handshake(_) => "handshake",
            State::Ready(_) => "ready",
            State::Lingering { .. } => "refused",
            State::Failed(_) => "failed",
        };
        write!(f, "ServerStream({}, {state})", self.peer)
    }
}

/// Why TLS refused a connection, carried inside the `io::Error` of the service's reads: the TLS
/// layer logs the refusal itself (SEC-6), so the service need not log it again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, Refused(why.to_string()))
}

/// Whether `e` is a connection refused by TLS, already logged with the peer and why (SEC-6).
pub fn is_refusal(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Refused>())
}

impl ServerStream {
    /// Drives the handshake to its end; `Ok` once the TLS stream is ready.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Ready(_) => return Poll::Ready(Ok(())),
                State::Failed(why) => return Poll::Ready(Err(refused(why))),
                State::Lingering { io, why, until } => {
                    let mut scratch = [0u8; 1024];
                    loop {
                        let mut buf = ReadBuf::new(&mut scratch);
                        match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                            Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                            Poll::Ready(_) => break,
                            Poll::Pending => {
                                ready!(until.as_mut().poll(cx));
                                break;
                            }
                        }
                    }
                    let why = std::mem::take(why);
                    self.state = State::Failed(why);
                }
                State::Handshake(accept) => {
                    let done = match Pin::new(&mut **accept).poll(cx) {
                        Poll::Ready(done) => done,
                        Poll::Pending => {
                            ready!(self.deadline.as_mut().poll(cx));
                            let why = format!(
                                "it did not complete the TLS handshake within {}",
                                crate::units::duration(self.timeout)
                            );
                            tracing::warn!(
                                "refused the backup connection from {}: {why}",
                                self.peer
                            );
                            self.state = State::Failed(why.clone());
                            return Poll::Ready(Err(refused(&why)));
                        }
                    };
                    match done {
                        Ok(tls) => {
                            let names = self.seen.lock().unwrap().take().unwrap_or_default();
                            tracing::info!(
                                "the backup client at {} presented a certificate accepted for {}",
                                self.peer,
                                names::shown(&names)
                            );
                            self.state = State::Ready(Box::new(tls));
                        }
                        Err((e, io)) => {
                            let names = self.seen.lock().unwrap().take();
                            let why = why::server_side(&e, names.as_deref());
                            tracing::warn!(
                                "refused the backup connection from {}: {why}",
                                self.peer
                            );
                            self.state = State::Lingering {
                                io,
                                why,
                                until: Box::pin(tokio::time::sleep(LINGER)),
                            };
                        }
                    }
                }
            }
        }
    }

    fn ready(&mut self) -> &mut tokio_rustls::server::TlsStream<Box<dyn Stream>> {
        match &mut self.state {
            State::Ready(tls) => tls,
            _ => unreachable!("poll_handshake returned Ok before the stream was ready"),
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_handshake(cx))?;
        let r = Pin::new(self.ready()).poll_read(cx, buf);
        Poll::Ready(plain_eof(ready!(r)))
    }
}

/// A peer that closes without TLS's `close_notify` is taken as closing: the backup protocol
/// delimits its own messages, so a close mid-message is still told apart by the frame reader,
/// and nothing is lost by not requiring the alert (a client that simply exits sends none).
fn plain_eof(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
        other => other,
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_handshake(cx))?;
        Pin::new(self.ready()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_handshake(cx))?;
        Pin::new(self.ready()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.state {
            State::Ready(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// A connection of a backup service without TLS: passed through, except that a first byte
/// opening a TLS handshake fails the first read with a sentence saying so (SEC-8), where the
/// service would otherwise wait for a frame of some 64 KiB that never comes.
#[derive(Debug)]
struct PlainStream {
    inner: Box<dyn Stream>,
    peer: SocketAddr,
    sniffed: bool,
}

impl AsyncRead for PlainStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.sniffed {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if let Some(&first) = buf.filled().get(before) {
            self.sniffed = true;
            if first == TLS_HANDSHAKE_RECORD {
                let why = "it began a TLS handshake, but this backup service does not use TLS \
                           (online_backup_tls_cert is not set): run neo4j-backup without \
                           --tls-ca, --tls-cert and --tls-key, or configure TLS";
                tracing::warn!("refused the backup connection from {}: {why}", self.peer);
                return Poll::Ready(Err(refused(why)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PlainStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The backup service's listener: every accepted connection wrapped for TLS, or for the
/// plaintext service's recognition of TLS clients (SEC-8).
#[derive(Debug)]
struct SecureListener {
    inner: Box<dyn Listener>,
    tls: Option<Arc<ServerTls>>,
}

impl Listener for SecureListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.inner.accept().await?;
            let stream = match &self.tls {
                Some(tls) => tls.stream(stream, peer),
                None => Box::new(PlainStream {
                    inner: stream,
                    peer,
                    sniffed: false,
                }),
            };
            Ok((stream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The backup service's listener bound at `bound`, with TLS when `tls` is given. Says at start
/// what protects the port; a service without TLS on an address other than a loopback one logs
/// a warning naming the risk (SEC-12).
pub fn listener(
    inner: Box<dyn Listener>,
    tls: Option<Arc<ServerTls>>,
    bound: SocketAddr,
) -> Box<dyn Listener> {
    match &tls {
        Some(t) if t.allowed.is_empty() => tracing::info!(
            "the backup service on {bound} requires TLS and a client certificate signed by \
             online_backup_tls_client_ca"
        ),
        Some(t) => tracing::info!(
            "the backup service on {bound} requires TLS and a client certificate signed by \
             online_backup_tls_client_ca naming one of: {}",
            t.allowed.join(", ")
        ),
        None if !bound.ip().is_loopback() => tracing::warn!(
            "the backup service on {bound} has no TLS and listens beyond this machine: anyone \
             who can reach the port can copy the whole database; set online_backup_tls_cert, \
             online_backup_tls_key and online_backup_tls_client_ca, and \
             online_backup_require_tls to true so that the server never starts without them"
        ),
        None => {}
    }
    Box::new(SecureListener { inner, tls })
}

// ---------------------------------------------------------------------------------------------
// The client

/// `--tls-ca`, `--tls-cert`, `--tls-key` (SEC-9): the CA that signed the service's certificate,
/// and the tool's own certificate and key (both or neither).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The tool's TLS, loaded before it connects (SEC-11): an unreadable file fails the run before
/// anything is written.
#[derive(Debug)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    ca: String,
    /// `--tls-cert`'s path and its certificate's names, for the sentences.
    cert: Option<(String, Vec<Name>)>,
    clock: Arc<dyn Clock>,
}

impl ClientTls {
    pub fn load(env: &Env, files: &ClientTlsFiles) -> Result<ClientTls, TlsSetupError> {
        let roots = load_roots(env, CLIENT_NAMES.ca, &files.ca)?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), env.crypto.clone())
                .build()
                .map_err(|e| TlsSetupError::BadCa {
                    what: CLIENT_NAMES.ca,
                    path: files.ca.display().to_string(),
                    why: e.to_string(),
                })?;
        let builder = ClientConfig::builder_with_details(
            env.crypto.clone(),
            Arc::new(ClockTime(env.clock.clone())),
        )
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::BadCa {
            what: CLIENT_NAMES.ca,
            path: files.ca.display().to_string(),
            why: e.to_string(),
        })?
        .with_webpki_verifier(verifier);
        let (mut config, cert) = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => {
                let identity = load_identity(env, CLIENT_NAMES, cert, key)?;
                let names = certificate_names(&identity.cert[0]);
                let config =
                    builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity)));
                (config, Some((cert.display().to_string(), names)))
            }
            (None, None) => (builder.with_no_client_auth(), None),
            (Some(cert), None) => {
                return Err(TlsSetupError::NoKey {
                    what: CLIENT_NAMES.key,
                    path: format!("(not given, for --tls-cert {})", cert.display()),
                })
            }
            (None, Some(key)) => {
                return Err(TlsSetupError::NoCertificate {
                    what: CLIENT_NAMES.cert,
                    path: format!("(not given, for --tls-key {})", key.display()),
                })
            }
        };
        // No resumption: every run verifies the service's certificate afresh (SEC-1).
        config.resumption = Resumption::disabled();
        Ok(ClientTls {
            config: Arc::new(config),
            ca: files.ca.display().to_string(),
            cert,
            clock: env.clock.clone(),
        })
    }

    /// The TLS handshake with the service at `addr` over `stream`, verifying its certificate for
    /// `host`: a DNS name against the certificate's DNS names, an IP address against its IP
    /// addresses (SEC-10).
    pub async fn connect(
        &self,
        stream: Box<dyn Stream>,
        host: &str,
        addr: &str,
    ) -> Result<Box<dyn Stream>, TlsFailure> {
        let view = Arc::new(why::ClientView {
            addr: addr.to_string(),
            host: host.to_string(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
        });
        let name = ServerName::try_from(host.to_string()).map_err(|_| view.bad_host())?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        match connector.connect(name, stream).await {
            Ok(tls) => Ok(Box::new(ClientStream {
                inner: tls,
                view,
                clock: self.clock.clone(),
            })),
            Err(e) => Err(view
                .classify(&e, true, self.clock.now())
                .unwrap_or_else(|| view.failed(&e))),
        }
    }
}

/// The tool's TLS stream: an error the service's alert explains becomes a [`TlsFailure`]
/// (in TLS 1.3 a refused client certificate is told after the client's side of the handshake,
/// so the tool learns it on its first read).
struct ClientStream {
    inner: tokio_rustls::client::TlsStream<Box<dyn Stream>>,
    view: Arc<why::ClientView>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientStream({})", self.view.addr)
    }
}

impl ClientStream {
    fn explain<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        r.map_err(|e| match self.view.classify(&e, false, self.clock.now()) {
            Some(failure) => io::Error::new(e.kind(), failure),
            None => e,
        })
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf).map(plain_eof);
        self.explain(r)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.explain(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.explain(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// The service's side of a connection whose handshake was just refused, lingering over
    /// `io`.
    fn lingering(io: tokio::io::DuplexStream) -> ServerStream {
        ServerStream {
            state: State::Lingering {
                io: Box::new(io),
                why: "the client presented no certificate".into(),
                until: Box::pin(tokio::time::sleep(LINGER)),
            },
            peer: "127.0.0.1:1".parse().unwrap(),
            seen: Arc::default(),
            deadline: Box::pin(tokio::time::sleep(HANDSHAKE_TIMEOUT)),
            timeout: HANDSHAKE_TIMEOUT,
        }
    }

    fn poll_once(stream: &mut ServerStream) -> Poll<io::Result<()>> {
        let waker = std::task::Waker::noop();
        stream.poll_handshake(&mut Context::from_waker(waker))
    }

    #[tokio::test(start_paused = true)]
    async fn sec_11_a_refused_client_is_read_until_it_closes_then_refused() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let mut stream = lingering(ours);
        // Its hello, sent before it read the alert: read and dropped, the connection kept.
        theirs.write_all(b"a client hello").await.unwrap();
        assert!(
            poll_once(&mut stream).is_pending(),
            "SEC-11: the service closed while the refused client was still sending"
        );
        // It closes: the service is done with it, with the refusal's sentence.
        drop(theirs);
        let Poll::Ready(Err(e)) = poll_once(&mut stream) else {
            panic!("SEC-11: the refused connection did not end when the client closed");
        };
        assert!(is_refusal(&e), "SEC-6: {e}");
        assert_eq!(
            e.to_string(),
            "the client presented no certificate",
            "SEC-6"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sec_11_a_refused_client_that_stays_is_dropped_after_the_linger() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let mut stream = lingering(ours);
        theirs.write_all(b"a client hello").await.unwrap();
        assert!(poll_once(&mut stream).is_pending(), "SEC-11");
        tokio::time::advance(LINGER - Duration::from_millis(1)).await;
        assert!(
            poll_once(&mut stream).is_pending(),
            "SEC-11: the service dropped a refused client before the linger was over"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let Poll::Ready(Err(e)) = poll_once(&mut stream) else {
            panic!("SEC-11: a refused client that stays was not dropped after the linger");
        };
        assert!(is_refusal(&e), "SEC-6: {e}");
        drop(theirs);
    }

    /// A TLS connection over a pipe that holds `pipe` bytes: the service's stream and the
    /// tool's, handshaken, with a certificate made for the test (no client certificate: this
    /// is about the streams, not about who may connect).
    async fn connected(pipe: usize) -> (ServerStream, ClientStream) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        // As the service's: tickets would wait in the pipe for a read nobody makes yet.
        server.send_tls13_tickets = 0;
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (ours, theirs) = tokio::io::duplex(pipe);
        let (accepted, connected) = tokio::join!(
            tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(Box::new(ours) as _),
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(
                ServerName::try_from("localhost").unwrap(),
                Box::new(theirs) as Box<dyn Stream>
            )
        );
        let mut server = lingering(tokio::io::duplex(1).0);
        server.state = State::Ready(Box::new(accepted.unwrap()));
        let client = ClientStream {
            inner: connected.unwrap(),
            view: Arc::new(why::ClientView {
                addr: "127.0.0.1:1".into(),
                host: "localhost".into(),
                ca: "ca.pem".into(),
                cert: None,
            }),
            clock: Arc::new(crate::io::os::OsClock),
        };
        (server, client)
    }

    /// Sends `n` bytes from `from` to `to` through a pipe too small to hold them (a TLS
    /// stream's `write_all` returns once TLS has taken them, so only its flush delivers the
    /// rest), then closes `from`, which `to` must read as the end; within five (paused) seconds.
    async fn delivers_then_closes(
        from: &mut (impl AsyncWrite + Unpin),
        to: &mut (impl AsyncRead + Unpin),
        n: usize,
    ) -> Result<(), &'static str> {
        tokio::time::timeout(Duration::from_secs(5), transfer(from, to, n))
            .await
            .unwrap_or(Err("the bytes sent were not all read"))
    }

    async fn transfer(
        from: &mut (impl AsyncWrite + Unpin),
        to: &mut (impl AsyncRead + Unpin),
        n: usize,
    ) -> Result<(), &'static str> {
        use tokio::io::AsyncReadExt;
        let sent: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut got = vec![0u8; n];
        let (written, read) = tokio::join!(
            async {
                from.write_all(&sent).await?;
                from.flush().await
            },
            to.read_exact(&mut got)
        );
        written.map_err(|_| "the write or the flush failed")?;
        read.map_err(|_| "the read failed")?;
        if got != sent {
            return Err("the bytes read are not the bytes sent");
        }
        let (closed, end) = tokio::join!(
            from.shutdown(),
            tokio::time::timeout(Duration::from_secs(5), to.read(&mut got))
        );
        closed.map_err(|_| "the shutdown failed")?;
        match end {
            Ok(Ok(0)) => Ok(()),
            Ok(_) => Err("the peer read something after the close"),
            Err(_) => Err("the peer did not see the close"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sec_1_what_a_stream_writes_is_delivered_by_its_flush_and_its_shutdown_is_seen() {
        let (mut server, mut client) = connected(64).await;
        assert_eq!(
            delivers_then_closes(&mut server, &mut client, 20_000).await,
            Ok(()),
            "SEC-1: the service's TLS stream, to the tool"
        );
        let (mut server, mut client) = connected(64).await;
        assert_eq!(
            delivers_then_closes(&mut client, &mut server, 20_000).await,
            Ok(()),
            "SEC-1: the tool's TLS stream, to the service"
        );
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut plain = PlainStream {
            inner: Box::new(ours),
            peer: "127.0.0.1:1".parse().unwrap(),
            sniffed: false,
        };
        assert_eq!(
            delivers_then_closes(&mut plain, &mut theirs, 20_000).await,
            Ok(()),
            "SEC-8: the plaintext service's stream, to the tool"
        );
    }

    #[test]
    fn sec_1_a_peer_that_closes_without_close_notify_reads_as_closed() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "no close_notify");
        assert!(plain_eof(Err(eof)).is_ok(), "SEC-1");
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            plain_eof(Err(reset)).map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset),
            "SEC-1"
        );
        assert!(plain_eof(Ok(())).is_ok(), "SEC-1");
    }
}
