//! Why a TLS handshake failed, in one sentence a person can act on (SEC-6, SEC-11): read off
//! rustls's typed errors and alerts, never its `Debug` forms (CLI-5, SRV-7). The server's side
//! names the client's certificate; the client's side says which flag or key to look at.
//!
//! Owns: [`TlsFailure`] and its cases, the sentences of both sides. Must not touch: the network,
//! files or configurations (it reads errors and returns text).

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError};

use super::names::{shown, Name};

/// The time as a person reads it: `Tue, 01 Jan 2030 00:00:00 GMT`.
pub(super) fn date(t: UnixTime) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(t.as_secs()))
}

fn now_date(now: SystemTime) -> String {
    httpdate::fmt_http_date(now)
}

/// The rustls error inside an I/O error from a TLS stream, if there is one.
pub(super) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// An alert by its name in the TLS specifications (`unknown_ca`).
pub(super) fn alert_name(a: AlertDescription) -> String {
    use AlertDescription as A;
    let name = match a {
        A::CloseNotify => "close_notify",
        A::UnexpectedMessage => "unexpected_message",
        A::BadRecordMac => "bad_record_mac",
        A::HandshakeFailure => "handshake_failure",
        A::BadCertificate => "bad_certificate",
        A::UnsupportedCertificate => "unsupported_certificate",
        A::CertificateRevoked => "certificate_revoked",
        A::CertificateExpired => "certificate_expired",
        A::CertificateUnknown => "certificate_unknown",
        A::IllegalParameter => "illegal_parameter",
        A::UnknownCA => "unknown_ca",
        A::AccessDenied => "access_denied",
        A::DecodeError => "decode_error",
        A::DecryptError => "decrypt_error",
        A::ProtocolVersion => "protocol_version",
        A::InternalError => "internal_error",
        A::MissingExtension => "missing_extension",
        A::UnrecognisedName => "unrecognized_name",
        A::CertificateRequired => "certificate_required",
        A::NoApplicationProtocol => "no_application_protocol",
        other => return format!("number {}", u8::from(other)),
    };
    name.to_string()
}

/// A certificate problem other than the ones the sentences below name, in words.
fn certificate_problem(c: &CertificateError) -> &'static str {
    use CertificateError as C;
    match c {
        C::BadEncoding => "it is not a well-formed certificate",
        C::BadSignature => "its signature does not verify",
        C::Revoked => "it is revoked",
        C::UnhandledCriticalExtension => "it has a critical extension this product does not know",
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "its extended key usage does not allow this use"
        }
        _ => "it is not acceptable",
    }
}

/// Why the server refused a client's handshake (SEC-6): one sentence for the service's log,
/// naming the certificate the client presented (`names`, when it presented one).
pub(super) fn server_side(e: &io::Error, names: Option<&[Name]>) -> String {
    let cert = || match names {
        Some(n) => format!("the client's certificate ({})", shown(n)),
        None => "the client's certificate".to_string(),
    };
    use CertificateError as C;
    match rustls_error(e) {
        Some(rustls::Error::NoCertificatesPresented) => "the client presented no certificate \
            (a neo4j-backup run without --tls-cert and --tls-key?), and this service admits only \
            clients with a certificate signed by online_backup_tls_client_ca"
            .to_string(),
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            C::UnknownIssuer => format!("{} is not signed by online_backup_tls_client_ca", cert()),
            C::ExpiredContext { not_after, .. } => {
                format!("{} expired on {}", cert(), date(*not_after))
            }
            C::Expired => format!("{} has expired", cert()),
            C::NotValidYetContext { not_before, .. } => {
                format!("{} is not valid before {}", cert(), date(*not_before))
            }
            C::NotValidYet => format!("{} is not valid yet", cert()),
            C::ApplicationVerificationFailure => format!(
                "{} carries no name on online_backup_allowed_clients",
                cert()
            ),
            other => format!("{} was refused: {}", cert(), certificate_problem(other)),
        },
        Some(
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. },
        ) => "the client did not begin a TLS handshake (a neo4j-backup run without --tls-ca, \
              --tls-cert and --tls-key?), and this backup service requires TLS"
            .to_string(),
        Some(rustls::Error::AlertReceived(a)) => match a {
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown => format!(
                "the client ended the TLS handshake with the alert {}: it does not accept this \
                 service's certificate (online_backup_tls_cert)",
                alert_name(*a)
            ),
            other => format!(
                "the client ended the TLS handshake with the alert {}",
                alert_name(*other)
            ),
        },
        Some(other) => format!("the TLS handshake failed: {other}"),
        None if closed(e) => "the client closed the connection during the TLS handshake".into(),
        None => format!("the TLS handshake failed: {e}"),
    }
}

/// Whether an I/O error is the peer going away.
pub(super) fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Why TLS with the backup service failed, as the tool reports it (SEC-11): typed, so the
/// tool's callers tell the cases apart; its `Display` is the one sentence, naming the service
/// and the flag or key to look at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{sentence}")]
pub struct TlsFailure {
    pub why: Why,
    sentence: String,
}

/// The cases of [`TlsFailure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The service does not speak TLS (SEC-8).
    NotTls,
    /// The service's certificate is not signed by `--tls-ca`.
    ServerUntrusted,
    /// The service's certificate expired, or is not valid yet.
    ServerExpired,
    /// The service's certificate is not for the host the tool was given (SEC-10).
    WrongName,
    /// Anything else about the service's certificate.
    ServerCertificate,
    /// The service asked for a client certificate and the tool has none.
    NoClientCertificate,
    /// The service does not trust the tool's certificate's issuer.
    ClientUntrusted,
    /// The service found the tool's certificate expired or not yet valid.
    ClientExpired,
    /// The tool's certificate carries no name on the service's allow-list.
    NotAllowed,
    /// Anything else the service refused.
    Refused,
}

/// What the client knows to name in its sentences.
#[derive(Clone, Debug)]
pub(super) struct ClientView {
    pub addr: String,
    pub host: String,
    pub ca: String,
    /// `--tls-cert`'s path and the names of its certificate, when the tool has one.
    pub cert: Option<(String, Vec<Name>)>,
}

impl ClientView {
    fn failure(&self, why: Why, sentence: String) -> TlsFailure {
        TlsFailure { why, sentence }
    }

    /// A host that is neither a DNS name nor an IP address.
    pub fn bad_host(&self) -> TlsFailure {
        self.failure(
            Why::WrongName,
            format!(
                "{} is neither a DNS name nor an IP address, so no certificate can be verified \
                 for it",
                self.host
            ),
        )
    }

    /// A failure TLS has nothing particular to say about.
    pub fn failed(&self, e: &io::Error) -> TlsFailure {
        self.failure(
            Why::Refused,
            format!("TLS with the backup service at {} failed: {e}", self.addr),
        )
    }

    fn mine(&self) -> String {
        match &self.cert {
            Some((path, names)) => format!("this tool's certificate ({path}: {})", shown(names)),
            None => "this tool's certificate".to_string(),
        }
    }

    /// The failure of `e`, an error of the TLS stream during the handshake (`handshake`) or
    /// after it; `None` for an error TLS has nothing to say about (a timeout, a reset after
    /// the handshake), which the caller reports as a network failure.
    pub fn classify(&self, e: &io::Error, handshake: bool, now: SystemTime) -> Option<TlsFailure> {
        let addr = &self.addr;
        use CertificateError as C;
        let server_cert = format!("the certificate of the backup service at {addr}");
        let Some(error) = rustls_error(e) else {
            return (handshake && closed(e)).then(|| {
                self.failure(
                    Why::NotTls,
                    format!(
                        "the backup service at {addr} ended the connection during the TLS \
                         handshake: it probably does not use TLS (online_backup_tls_cert is not \
                         set on the server); run without --tls-ca, --tls-cert and --tls-key, or \
                         configure TLS on the server"
                    ),
                )
            });
        };
        let (why, sentence) = match error {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer => (
                    Why::ServerUntrusted,
                    format!(
                        "{server_cert} is not signed by the CA of --tls-ca ({}): check that \
                         --tls-ca names the CA that signed the server's online_backup_tls_cert",
                        self.ca
                    ),
                ),
                C::ExpiredContext { not_after, .. } => (
                    Why::ServerExpired,
                    format!(
                        "{server_cert} expired on {} (it is {} here)",
                        date(*not_after),
                        now_date(now)
                    ),
                ),
                C::Expired => (Why::ServerExpired, format!("{server_cert} has expired")),
                C::NotValidYetContext { not_before, .. } => (
                    Why::ServerExpired,
                    format!(
                        "{server_cert} is not valid before {} (it is {} here); check both \
                         machines' clocks",
                        date(*not_before),
                        now_date(now)
                    ),
                ),
                C::NotValidYet => (
                    Why::ServerExpired,
                    format!("{server_cert} is not valid yet"),
                ),
                C::NotValidForNameContext { presented, .. } => (
                    Why::WrongName,
                    format!(
                        "{server_cert} is not for {}: it names {} (a host name must be one of \
                         its DNS names, an IP address one of its IP addresses)",
                        self.host,
                        if presented.is_empty() {
                            "nothing".to_string()
                        } else {
                            presented
                                .iter()
                                .map(|n| presented_name(n))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ),
                C::NotValidForName => (
                    Why::WrongName,
                    format!("{server_cert} is not for {}", self.host),
                ),
                other => (
                    Why::ServerCertificate,
                    format!("{server_cert} is refused: {}", certificate_problem(other)),
                ),
            },
            rustls::Error::AlertReceived(a) => {
                let mine = self.mine();
                match a {
                    AlertDescription::CertificateRequired => (
                        Why::NoClientCertificate,
                        format!(
                            "the backup service at {addr} requires a client certificate: run \
                             with --tls-cert and --tls-key"
                        ),
                    ),
                    AlertDescription::UnknownCA => (
                        Why::ClientUntrusted,
                        format!(
                            "the backup service at {addr} refused {mine}: it is not signed by \
                             the server's online_backup_tls_client_ca"
                        ),
                    ),
                    AlertDescription::CertificateExpired => (
                        Why::ClientExpired,
                        format!(
                            "the backup service at {addr} refused {mine}: it has expired or is \
                             not valid yet by the server's clock"
                        ),
                    ),
                    AlertDescription::AccessDenied => (
                        Why::NotAllowed,
                        format!(
                            "the backup service at {addr} refused {mine}: none of its names is \
                             on the server's online_backup_allowed_clients"
                        ),
                    ),
                    other => (
                        Why::Refused,
                        format!(
                            "the backup service at {addr} ended the TLS connection with the \
                             alert {}; its log says why",
                            alert_name(*other)
                        ),
                    ),
                }
            }
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
                if handshake =>
            {
                (
                    Why::NotTls,
                    format!(
                        "the backup service at {addr} does not speak TLS: run without --tls-ca, \
                         --tls-cert and --tls-key, or configure TLS on the server \
                         (online_backup_tls_cert, online_backup_tls_key and \
                         online_backup_tls_client_ca)"
                    ),
                )
            }
            other => (
                Why::Refused,
                format!("TLS with the backup service at {addr} failed: {other}"),
            ),
        };
        Some(self.failure(why, sentence))
    }
}

/// A name of a certificate as rustls-webpki reports one that did not match
/// (`DnsName("a.example")`, `IpAddress(10.0.0.1)`), as a person reads it: `DNS a.example`,
/// `IP 10.0.0.1`; any other form as it is.
fn presented_name(n: &str) -> String {
    if let Some(dns) = n
        .strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
    {
        format!("DNS {dns}")
    } else if let Some(ip) = n
        .strip_prefix("IpAddress(")
        .and_then(|r| r.strip_suffix(')'))
    {
        format!("IP {ip}")
    } else {
        n.to_string()
    }
}

/// The [`TlsFailure`] an I/O error of a client's TLS stream carries, if it carries one.
pub fn failure_of(e: &io::Error) -> Option<TlsFailure> {
    e.get_ref()?.downcast_ref::<TlsFailure>().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_read_as_a_person_writes_them() {
        assert_eq!(presented_name("DnsName(\"a.example\")"), "DNS a.example");
        assert_eq!(presented_name("IpAddress(10.0.0.1)"), "IP 10.0.0.1");
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn sec_6_a_handshake_the_client_left_is_told_from_one_that_failed() {
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            server_side(&reset, None),
            "the client closed the connection during the TLS handshake",
            "SEC-6"
        );
        let slow = io::Error::new(io::ErrorKind::TimedOut, "no answer in 10 s");
        assert_eq!(
            server_side(&slow, None),
            "the TLS handshake failed: no answer in 10 s",
            "SEC-6"
        );
    }

    #[test]
    fn sec_8_only_the_handshake_reads_a_close_or_a_malformed_record_as_no_tls() {
        let view = ClientView {
            addr: "db:6362".into(),
            host: "db".into(),
            ca: "ca.pem".into(),
            cert: None,
        };
        let now = SystemTime::UNIX_EPOCH;
        let why = |e: &io::Error, handshake| view.classify(e, handshake, now).map(|f| f.why);
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "closed");
        assert_eq!(why(&eof, true), Some(Why::NotTls), "SEC-8");
        assert_eq!(
            why(&eof, false),
            None,
            "SEC-8: a close after the handshake is a network failure, not TLS's"
        );
        let malformed = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(why(&malformed, true), Some(Why::NotTls), "SEC-8");
        assert_eq!(
            why(&malformed, false),
            Some(Why::Refused),
            "SEC-8: a malformed record after the handshake is a failed TLS connection"
        );
    }

    #[test]
    fn sec_6_dates_are_written_as_a_person_reads_them() {
        let t = UnixTime::since_unix_epoch(Duration::from_secs(1_900_000_000));
        assert_eq!(date(t), "Sun, 17 Mar 2030 17:46:40 GMT", "SEC-6");
    }

    #[test]
    fn sec_6_alerts_are_named_as_the_tls_specifications_name_them() {
        // RFC 8446 section 6, with RFC 6066's unrecognized_name and RFC 7301's last one.
        let named = [
            (0, "close_notify"),
            (10, "unexpected_message"),
            (20, "bad_record_mac"),
            (40, "handshake_failure"),
            (42, "bad_certificate"),
            (43, "unsupported_certificate"),
            (44, "certificate_revoked"),
            (45, "certificate_expired"),
            (46, "certificate_unknown"),
            (47, "illegal_parameter"),
            (48, "unknown_ca"),
            (49, "access_denied"),
            (50, "decode_error"),
            (51, "decrypt_error"),
            (70, "protocol_version"),
            (80, "internal_error"),
            (109, "missing_extension"),
            (112, "unrecognized_name"),
            (116, "certificate_required"),
            (120, "no_application_protocol"),
        ];
        for (number, name) in named {
            assert_eq!(
                alert_name(AlertDescription::from(number)),
                name,
                "SEC-6: alert {number}"
            );
        }
        for number in [90u8, 200] {
            assert_eq!(
                alert_name(AlertDescription::from(number)),
                format!("number {number}"),
                "SEC-6: an alert without a sentence of its own is named by its number"
            );
        }
    }

    #[test]
    fn sec_6_certificate_problems_are_said_in_words() {
        use CertificateError as C;
        let said = [
            (C::BadEncoding, "it is not a well-formed certificate"),
            (C::BadSignature, "its signature does not verify"),
            (C::Revoked, "it is revoked"),
            (
                C::UnhandledCriticalExtension,
                "it has a critical extension this product does not know",
            ),
            (
                C::InvalidPurpose,
                "its extended key usage does not allow this use",
            ),
            (C::UnknownRevocationStatus, "it is not acceptable"),
        ];
        for (problem, words) in said {
            assert_eq!(certificate_problem(&problem), words, "SEC-6: {problem:?}");
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(problem),
            );
            assert_eq!(
                server_side(&e, None),
                format!("the client's certificate was refused: {words}"),
                "SEC-6"
            );
        }
    }
}
