//! TLS on the backup port as operators use it (spec/security.md, SEC-): the real `neo4j` and
//! `neo4j-backup`, real TCP, certificates made with rcgen (`tests/kit/certs.rs`). Every refusal
//! is checked for its one sentence, its exit code, the directory left as it was and, on the
//! server's side, the log line naming the peer and why.

#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use support::backup::*;
use support::kit::certs::{Ca, Pem, Role, Validity};
use support::scratch;
use support::server::ServerProcess;

/// The certificates of one test, written under `dir`.
struct Pki {
    dir: PathBuf,
    ca: Ca,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = Ca::new(
            "test backup CA",
            Validity::days_around(SystemTime::now(), 30),
            None,
        );
        std::fs::write(dir.join("ca.pem"), &ca.cert).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Writes `<name>.pem` and `<name>.key`.
    fn write(&self, name: &str, pem: &Pem) {
        std::fs::write(self.dir.join(format!("{name}.pem")), &pem.cert).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), &pem.key).unwrap();
    }

    /// A certificate of this CA for `role` and `names`, valid from a day ago for 30 days.
    fn issue(&self, name: &str, role: Role, names: &[&str]) {
        let valid = Validity::days_around(SystemTime::now(), 30);
        self.write(name, &self.ca.issue(role, names, valid, None));
    }

    /// The server's configuration: TLS with this CA, `allowed` clients, ephemeral ports.
    fn server_config(&self, allowed: &str) -> String {
        self.issue("server", Role::Server, &["localhost", "127.0.0.1"]);
        let mut config = format!(
            "{EPHEMERAL}online_backup_tls_cert={}\nonline_backup_tls_key={}\n\
             online_backup_tls_client_ca={}\n",
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem")
        );
        if !allowed.is_empty() {
            config.push_str(&format!("online_backup_allowed_clients={allowed}\n"));
        }
        config
    }

    /// `--tls-ca`, `--tls-cert`, `--tls-key` for the client certificate `name`.
    fn client_args(&self, name: &str) -> Vec<String> {
        vec![
            "--tls-ca".into(),
            self.path("ca.pem"),
            "--tls-cert".into(),
            self.path(&format!("{name}.pem")),
            "--tls-key".into(),
            self.path(&format!("{name}.key")),
        ]
    }
}

/// A server with TLS admitting client certificates named `backup`, with a few transactions, and
/// the client certificate `client` (CN backup).
fn tls_server(dir: &Path) -> (Pki, ServerProcess) {
    let pki = Pki::new(dir);
    let server = ServerProcess::start(&dir.join("db"), Some(&pki.server_config("backup")));
    pki.issue("client", Role::Client, &["backup"]);
    write_nodes(&server, 3);
    (pki, server)
}

fn run(addr: &str, target: &Path, args: &[String]) -> Out {
    let more: Vec<&str> = args.iter().map(String::as_str).collect();
    backup_from(addr, target, &more)
}

/// Runs a backup that must fail with exit 1 and one sentence, leaving `target` as it was;
/// returns the sentence.
fn refused(addr: &str, target: &Path, args: &[String]) -> String {
    let before = snapshot(target);
    let out = run(addr, target, args).expect(1);
    let line = out.one_error_line().to_string();
    assert_eq!(snapshot(target), before, "{args:?} changed the target");
    line
}

/// A server whose certificate is issued for `role` with `names`, and the one line a backup that
/// trusts its CA is refused with: the service's address and that line.
fn refused_by_its_certificate(dir: &Path, role: Role, names: &[&str]) -> (String, String) {
    let pki = Pki::new(dir);
    let config = pki.server_config("");
    pki.issue("server", role, names);
    let server = ServerProcess::start(&dir.join("db"), Some(&config));
    pki.issue("client", Role::Client, &["backup"]);
    let addr = server.backup.clone().unwrap();
    let line = refused(&addr, &dir.join("backup"), &pki.client_args("client"));
    (addr, line)
}

#[test]
fn sec_1_full_and_incremental_backups_over_tls() {
    let dir = scratch();
    let (pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    let target = dir.path().join("backup");
    let tls = pki.client_args("client");
    let full = run(&addr, &target, &tls).expect(0);
    assert!(
        full.summary().contains("full backup"),
        "SEC-1: a full backup over TLS: {full:#?}"
    );
    assert_same_as_server(&target, &server);
    write_nodes(&server, 5);
    let inc = run(&addr, &target, &tls).expect(0);
    assert!(
        inc.summary().contains("incremental backup") && inc.summary().contains("5 transactions"),
        "SEC-1: an incremental backup over TLS: {inc:#?}"
    );
    assert_same_as_server(&target, &server);
    let log = server.wait_for_stderr("presented a certificate accepted for CN backup");
    assert!(
        log.contains(
            "requires TLS and a client certificate signed by online_backup_tls_client_ca \
             naming one of: backup"
        ),
        "SEC-1: the server says at start what protects the port, its allow-list too: {log}"
    );
}

#[test]
fn sec_3_a_client_without_a_certificate_is_refused() {
    let dir = scratch();
    let (pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    let line = refused(
        &addr,
        &dir.path().join("backup"),
        &["--tls-ca".into(), pki.path("ca.pem")],
    );
    assert_eq!(
        line,
        format!("neo4j-backup: the backup service at {addr} requires a client certificate: run with --tls-cert and --tls-key"),
        "SEC-3"
    );
    let log = server.wait_for_stderr("presented no certificate");
    assert!(
        log.contains("refused the backup connection from 127.0.0.1:")
            && log.contains(": the client presented no certificate"),
        "SEC-6: {log}"
    );
}

/// A client certificate resolver that presents nothing and records the CA names the server's
/// certificate request hinted at.
#[derive(Debug, Default)]
struct HintRecorder(std::sync::Mutex<Vec<Vec<u8>>>);

impl rustls::client::ResolvesClientCert for HintRecorder {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        *self.0.lock().unwrap() = root_hint_subjects.iter().map(|h| h.to_vec()).collect();
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[test]
fn sec_3_the_certificate_request_names_the_client_ca() {
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;

    let dir = scratch();
    let (pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let hints = Arc::new(HintRecorder::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(hints.clone());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The handshake runs until the server refuses the missing certificate (SEC-3); the hints
    // came with its certificate request before that.
    while tls.is_handshaking() {
        if tls.complete_io(&mut tcp).is_err() {
            break;
        }
    }
    let hinted = hints.0.lock().unwrap().clone();
    assert!(
        hinted.len() == 1
            && hinted[0]
                .windows(b"test backup CA".len())
                .any(|w| w == b"test backup CA"),
        "SEC-3: the certificate request should name the client CA, it named {hinted:?}"
    );
}

#[test]
fn sec_3_a_client_certificate_from_another_ca_is_refused() {
    let dir = scratch();
    let (pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    let other = Ca::new(
        "someone else's CA",
        Validity::days_around(SystemTime::now(), 30),
        None,
    );
    let valid = Validity::days_around(SystemTime::now(), 30);
    pki.write(
        "stranger",
        &other.issue(Role::Client, &["backup"], valid, None),
    );
    let line = refused(
        &addr,
        &dir.path().join("backup"),
        &pki.client_args("stranger"),
    );
    assert_eq!(
        line,
        format!(
            "neo4j-backup: the backup service at {addr} refused this tool's certificate ({}: CN backup, DNS backup): it is not signed by the server's online_backup_tls_client_ca",
            pki.path("stranger.pem")
        ),
        "SEC-3"
    );
    let log = server.wait_for_stderr("is not signed by online_backup_tls_client_ca");
    assert!(
        log.contains("the client's certificate (CN backup, DNS backup) is not signed by"),
        "SEC-6: the server names the certificate: {log}"
    );
}

#[test]
fn sec_4_a_client_not_on_the_allow_list_is_refused() {
    let dir = scratch();
    let (pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    pki.issue("intruder", Role::Client, &["intruder.example.com"]);
    let target = dir.path().join("backup");
    let line = refused(&addr, &target, &pki.client_args("intruder"));
    assert_eq!(
        line,
        format!(
            "neo4j-backup: the backup service at {addr} refused this tool's certificate ({}: CN intruder.example.com, DNS intruder.example.com): none of its names is on the server's online_backup_allowed_clients",
            pki.path("intruder.pem")
        ),
        "SEC-4"
    );
    let log = server.wait_for_stderr("carries no name on online_backup_allowed_clients");
    assert!(
        log.contains("the client's certificate (CN intruder.example.com, DNS intruder.example.com) carries no name"),
        "SEC-6: {log}"
    );
    // The allow-list compares names ignoring ASCII case.
    pki.issue("shouting", Role::Client, &["BACKUP"]);
    run(&addr, &target, &pki.client_args("shouting")).expect(0);
    // The refusal and the admission are logged once each, as sentences (SRV-7).
    let log = server.stderr_when_stopped();
    let lines: Vec<String> = log.lines().map(str::to_string).collect();
    support::server::assert_log_lines_are_sentences(&lines);
    assert_eq!(
        log.matches("intruder.example.com) carries no name").count(),
        1,
        "SEC-6: one line per refusal: {log}"
    );
}

#[test]
fn sec_4_an_empty_allow_list_admits_any_certificate_the_ca_signed() {
    let dir = scratch();
    let pki = Pki::new(dir.path());
    let server = ServerProcess::start(&dir.path().join("db"), Some(&pki.server_config("")));
    pki.issue("anyone", Role::Client, &["anyone"]);
    let addr = server.backup.clone().unwrap();
    let out = run(
        &addr,
        &dir.path().join("backup"),
        &pki.client_args("anyone"),
    );
    assert_eq!(out.code, Some(0), "SEC-4: {out:#?}");
    let log = server.wait_for_stderr("presented a certificate accepted for CN anyone");
    assert!(
        log.contains("a client certificate signed by online_backup_tls_client_ca\n")
            && !log.contains("naming one of"),
        "SEC-1, SEC-4: without an allow-list the start line names none: {log}"
    );
}

#[test]
fn sec_5_an_expired_or_not_yet_valid_client_certificate_is_refused() {
    let dir = scratch();
    let (pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let past = Validity {
        not_before: now - 30 * day,
        not_after: now - day,
    };
    pki.write(
        "expired",
        &pki.ca.issue(Role::Client, &["backup"], past, None),
    );
    let line = refused(
        &addr,
        &dir.path().join("backup"),
        &pki.client_args("expired"),
    );
    assert!(
        line.ends_with("it has expired or is not valid yet by the server's clock"),
        "SEC-5: {line}"
    );
    let log = server.wait_for_stderr("expired on");
    assert!(
        log.contains("the client's certificate (CN backup, DNS backup) expired on"),
        "SEC-5, SEC-6: the server names the date: {log}"
    );
    let future = Validity {
        not_before: now + day,
        not_after: now + 30 * day,
    };
    pki.write(
        "early",
        &pki.ca.issue(Role::Client, &["backup"], future, None),
    );
    let line = refused(&addr, &dir.path().join("backup"), &pki.client_args("early"));
    assert!(line.contains("not valid yet"), "SEC-5: {line}");
    server.wait_for_stderr("is not valid before");
}

#[test]
fn sec_5_an_expired_server_certificate_is_refused_by_the_tool() {
    let dir = scratch();
    let pki = Pki::new(dir.path());
    let config = pki.server_config("");
    let now = SystemTime::now();
    let past = Validity {
        not_before: now - Duration::from_secs(30 * 86_400),
        not_after: now - Duration::from_secs(86_400),
    };
    pki.write(
        "server",
        &pki.ca
            .issue(Role::Server, &["localhost", "127.0.0.1"], past, None),
    );
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    pki.issue("client", Role::Client, &["backup"]);
    let addr = server.backup.clone().unwrap();
    let line = refused(
        &addr,
        &dir.path().join("backup"),
        &pki.client_args("client"),
    );
    assert!(
        line.starts_with(&format!(
            "neo4j-backup: the certificate of the backup service at {addr} expired on "
        )),
        "SEC-5: {line}"
    );
    // The tool's own clock, as a person reads it (the day, not the second it read it).
    let today = |t: SystemTime| httpdate::fmt_http_date(t)[..16].to_string();
    assert!(
        line.contains(&format!("(it is {}", today(now)))
            || line.contains(&format!("(it is {}", today(SystemTime::now()))),
        "SEC-5, SEC-11: the tool says what time it is there: {line}"
    );
}

// SEC-10, SEC-11: a service certificate that is not for serving (issued for a client only) is
// refused by the tool, which says why in the certificate's terms.
#[test]
fn sec_11_a_service_certificate_not_for_serving_is_refused() {
    let dir = scratch();
    let (addr, line) =
        refused_by_its_certificate(dir.path(), Role::Client, &["localhost", "127.0.0.1"]);
    assert!(
        line.contains(&format!("the certificate of the backup service at {addr}"))
            && line.contains("its extended key usage does not allow this use"),
        "SEC-11: {line}"
    );
}

#[test]
fn sec_7_a_plaintext_client_is_told_the_service_requires_tls() {
    let dir = scratch();
    let (_pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    let line = refused(&addr, &dir.path().join("backup"), &[]);
    assert_eq!(
        line,
        format!("neo4j-backup: the backup service at {addr} requires TLS: run again with --tls-ca, --tls-cert and --tls-key (the CA that signed its certificate, and a client certificate it accepts)"),
        "SEC-7"
    );
    let log = server.wait_for_stderr("did not begin a TLS handshake");
    assert!(
        log.contains("refused the backup connection from 127.0.0.1:"),
        "SEC-6: the server names the peer: {log}"
    );
}

#[test]
fn sec_8_a_tls_client_is_told_the_service_does_not_speak_tls() {
    let dir = scratch();
    let pki = Pki::new(dir.path());
    pki.issue("client", Role::Client, &["backup"]);
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let line = refused(
        &addr,
        &dir.path().join("backup"),
        &pki.client_args("client"),
    );
    assert!(
        line.starts_with(&format!("neo4j-backup: the backup service at {addr} "))
            && line.contains(
                "run without --tls-ca, --tls-cert and --tls-key, or configure TLS on the server"
            ),
        "SEC-8: {line}"
    );
    let log = server.wait_for_stderr("began a TLS handshake");
    assert!(
        log.contains("but this backup service does not use TLS"),
        "SEC-8: {log}"
    );
}

#[test]
fn sec_10_the_server_certificate_must_name_the_host() {
    let dir = scratch();
    let (addr, line) =
        refused_by_its_certificate(dir.path(), Role::Server, &["backup.example.com"]);
    assert_eq!(
        line,
        format!("neo4j-backup: the certificate of the backup service at {addr} is not for 127.0.0.1: it names DNS backup.example.com (a host name must be one of its DNS names, an IP address one of its IP addresses)"),
        "SEC-10"
    );
}

#[test]
fn sec_11_unusable_tls_files_fail_the_tool_before_it_connects() {
    let dir = scratch();
    let (pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    let target = dir.path().join("backup");
    let mut args = pki.client_args("client");
    args[5] = pki.path("missing.key");
    let line = refused(&addr, &target, &args);
    assert_eq!(
        line,
        format!(
            "neo4j-backup: cannot read --tls-key {}: No such file or directory (os error 2)",
            pki.path("missing.key")
        ),
        "SEC-11"
    );
    std::fs::write(dir.path().join("garbage.key"), "not a key\n").unwrap();
    args[5] = pki.path("garbage.key");
    let line = refused(&addr, &target, &args);
    assert!(
        line.contains("holds no private key (a PEM block BEGIN PRIVATE KEY"),
        "SEC-11: {line}"
    );
    args[5] = pki.path("server.key");
    let line = refused(&addr, &target, &args);
    assert!(
        line.contains("does not belong to the certificate in"),
        "SEC-11: {line}"
    );
    args[1] = pki.path("client.key");
    args[5] = pki.path("client.key");
    let line = refused(&addr, &target, &args);
    assert!(
        line.contains(&format!(
            "--tls-ca {} holds no certificate",
            pki.path("client.key")
        )),
        "SEC-11: {line}"
    );
    // A PEM file cut short, with damaged base64 or a malformed BEGIN line, is named for what
    // is wrong with it.
    for (name, text, why) in [
        (
            "cut.crt",
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n",
            "a PEM block has no END line",
        ),
        (
            "bad64.crt",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "a PEM block's base64 is damaged",
        ),
        (
            "begin.crt",
            "-----BEGIN CERTIFICATE----\nMIIB\n-----END CERTIFICATE-----\n",
            "a BEGIN line is malformed",
        ),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
        args[1] = pki.path(name);
        let line = refused(&addr, &target, &args);
        assert!(line.contains(why), "SEC-11: {name}: {line}");
    }
    // None of these reached the server.
    assert!(
        !server.stderr().contains("refused the backup connection"),
        "SEC-11: {}",
        server.stderr()
    );
}

#[test]
fn sec_9_tls_flags_come_together() {
    let dir = scratch();
    let target = dir.path().join("backup");
    for (args, said) in [
        (
            vec!["--tls-cert", "c.pem", "--tls-key", "k.pem"],
            "--tls-cert and --tls-key need --tls-ca",
        ),
        (
            vec!["--tls-ca", "ca.pem", "--tls-cert", "c.pem"],
            "--tls-cert needs --tls-key",
        ),
        (
            vec!["--tls-ca", "ca.pem", "--tls-key", "k.pem"],
            "--tls-key needs --tls-cert",
        ),
    ] {
        let out = backup_from("127.0.0.1:1", &target, &args).expect(2);
        let line = out.one_error_line();
        assert!(line.contains(said), "SEC-9: {args:?}: {line}");
    }
}

#[test]
fn sec_2_the_server_refuses_to_start_with_unusable_tls_files() {
    let dir = scratch();
    let pki = Pki::new(dir.path());
    let config = pki.server_config("backup");
    std::fs::remove_file(dir.path().join("server.key")).unwrap();
    let store = dir.path().join("db");
    let path = dir.path().join("neo4j.properties");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neo4j"))
        .args(["console", "--store"])
        .arg(&store)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "SEC-2: {stderr}");
    assert!(
        stderr.trim_end().ends_with(&format!(
            "neo4j: cannot read online_backup_tls_key {}: No such file or directory (os error 2)",
            pki.path("server.key")
        )),
        "SEC-2: one sentence naming the key and the file: {stderr}"
    );
    assert!(!store.exists(), "SEC-2: nothing was created: {stderr}");
}

#[test]
fn sec_12_no_tls_beyond_loopback_warns_and_require_tls_refuses_to_start() {
    let dir = scratch();
    let server = ServerProcess::start(
        &dir.path().join("db"),
        Some("http_server=127.0.0.1:0\nonline_backup_server=0.0.0.0:0\n"),
    );
    let log = server.wait_for_stderr("has no TLS");
    assert!(
        log.contains("WARN")
            && log.contains("anyone who can reach the port can copy the whole database"),
        "SEC-12: {log}"
    );
    drop(server);
    let quiet = ServerProcess::start(&dir.path().join("db2"), Some(EPHEMERAL));
    let log = quiet.stderr_when_stopped();
    assert!(
        !log.contains("has no TLS"),
        "SEC-12: loopback needs no warning: {log}"
    );

    let path = dir.path().join("require.properties");
    std::fs::write(
        &path,
        "http_server=127.0.0.1:0\nonline_backup_server=0.0.0.0:0\nonline_backup_require_tls=true\n",
    )
    .unwrap();
    let store = dir.path().join("db3");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neo4j"))
        .args(["console", "--store"])
        .arg(&store)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "SEC-12: {stderr}");
    assert!(
        stderr.contains("online_backup_require_tls is true but the backup port has no TLS"),
        "SEC-12: {stderr}"
    );
    assert!(!store.exists(), "SEC-12: nothing was created: {stderr}");
}

// SEC-4: the names the allow-list is compared with are read whole from a subject whose DER
// lengths take two bytes (a common name of 250 bytes), as from a short one.
#[test]
fn sec_4_names_are_read_from_a_subject_with_long_der_lengths() {
    use online_backup::backup::tls::{certificate_names, Name};
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let valid = Validity::days_around(SystemTime::now(), 30);
    let ca = Ca::new("ca", valid, Some([3; 32]));
    let long = ["a", "b", "c"]
        .iter()
        .map(|c| c.repeat(63))
        .chain(["d".repeat(58)])
        .collect::<Vec<_>>()
        .join(".");
    assert_eq!(long.len(), 250);
    for name in [long.as_str(), "backup"] {
        let pem = ca.issue(Role::Client, &[name], valid, Some([4; 32]));
        let der = CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap();
        assert_eq!(
            certificate_names(&der),
            [Name::Common(name.into()), Name::Dns(name.into())],
            "SEC-4: the common name and the DNS name of {} bytes",
            name.len()
        );
    }
}

/// A connection whose every other write is refused for now (the waker called at once) and whose
/// others take at most a few bytes: a socket whose buffer is full, as a slow link leaves it.
#[derive(Debug)]
struct Trickle {
    inner: Box<dyn online_backup::io::Stream>,
    refuse: bool,
}

impl tokio::io::AsyncRead for Trickle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Trickle {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.refuse = !self.refuse;
        if self.refuse {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let some = buf.len().min(5);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..some])
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Real TCP whose client connections trickle (above).
const OS: &online_backup::io::os::OsNet = &online_backup::io::os::OsNet;

#[derive(Debug)]
struct TrickleNet;

impl online_backup::io::Net for TrickleNet {
    fn bind<'a>(
        &'a self,
        addr: &'a str,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Box<dyn online_backup::io::Listener>>> {
        OS.bind(addr)
    }

    fn connect<'a>(
        &'a self,
        addr: &'a str,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Box<dyn online_backup::io::Stream>>> {
        Box::pin(async move {
            let inner = OS.connect(addr).await?;
            Ok(Box::new(Trickle {
                inner,
                refuse: false,
            }) as Box<dyn online_backup::io::Stream>)
        })
    }
}

// SEC-1: the tool's TLS stream sends all it was given when flushed, over a connection that takes
// a few bytes at a time and refuses some writes for now: a request is never left half in the
// TLS session's buffer while the tool waits for the answer.
#[test]
fn sec_1_a_backup_over_tls_completes_over_a_connection_that_takes_a_few_bytes_at_a_time() {
    use online_backup::backup::client;
    let dir = scratch();
    let (pki, server) = tls_server(dir.path());
    let addr = server.backup.clone().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let target = dir.path().join("backup");
    let env = online_backup::io::Env {
        net: std::sync::Arc::new(TrickleNet),
        ..online_backup::io::Env::os()
    };
    let options = client::BackupOptions {
        host: host.to_string(),
        port: port.parse().unwrap(),
        target: target.clone(),
        mode: client::Mode::Auto,
        verify: client::Verify::Default,
        timeout: Duration::from_secs(10),
        max_rate: None,
        tls: Some(online_backup::backup::tls::ClientTlsFiles {
            ca: pki.dir.join("ca.pem"),
            cert: Some(pki.dir.join("client.pem")),
            key: Some(pki.dir.join("client.key")),
        }),
        apply_run_txs: client::APPLY_RUN_TXS,
        scrub_percent: client::SCRUB_PERCENT,
        keep_transactions: online_backup::retention::RetentionPolicy::KeepRecoveryOnly,
        keep_generations: 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for kind in ["full", "incremental"] {
        let mut lines = client::Lines::default();
        let run = client::run(&env, &options, &mut lines);
        let summary = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), run).await })
            .unwrap_or_else(|_| panic!("SEC-1: the {kind} backup hung"))
            .unwrap_or_else(|e| panic!("SEC-1: the {kind} backup failed: {e}"));
        assert!(summary.to_tx > 0, "SEC-1: {kind}");
        write_nodes(&server, 2);
    }
}
