//! The TLS keys of the backup port (CFG-18 .. CFG-20, spec/security.md): the three PEM file
//! paths, the allow-list of client names, and which keys need which. Pure: the files are read by
//! the server, through the `Fs` seam, when it starts (`backup::tls`).
//!
//! Owns: the TLS keys' syntax and their consistency check (CFG-20). Must not touch: the files
//! themselves, rustls, anything in `backup` (config is below it).

use std::path::{Path, PathBuf};

use super::values::ValueError;
use super::{
    Config, ONLINE_BACKUP_ALLOWED_CLIENTS, ONLINE_BACKUP_REQUIRE_TLS, ONLINE_BACKUP_TLS_CERT,
    ONLINE_BACKUP_TLS_CLIENT_CA, ONLINE_BACKUP_TLS_KEY,
};

/// What a path key accepts, as the error message says it (CFG-9).
pub(super) const EXPECT_PATH: &str = "the path of a PEM file";
/// What `online_backup_allowed_clients` accepts.
pub(super) const EXPECT_NAMES: &str =
    "names separated by commas, each a client certificate's common name or DNS name";

/// The backup port's TLS settings, all three files given (CFG-20).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupTls {
    /// The service's certificate, then the chain up to (not necessarily including) its CA.
    pub cert: PathBuf,
    /// The private key of `cert`.
    pub key: PathBuf,
    /// The CA certificates a client's certificate must chain to.
    pub client_ca: PathBuf,
    /// Names of which a client certificate must carry one (empty: any the CA signed).
    pub allowed_clients: Vec<String>,
}

/// A file path (CFG-18): any text without control characters.
pub(super) fn parse_path(value: &str) -> Result<PathBuf, ValueError> {
    if value.chars().any(char::is_control) {
        return Err(ValueError::problem("a path has no control characters"));
    }
    Ok(PathBuf::from(value))
}

/// A path as properties text that [`parse_path`] reads back: a backslash and a space at either
/// end are escaped (CFG-4, CFG-5), nothing else.
pub(super) fn write_path(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "\\\\");
    let mut out = String::with_capacity(text.len() + 2);
    if text.starts_with(' ') {
        out.push('\\');
    }
    out.push_str(&text);
    if text.len() > 1 && text.ends_with(' ') {
        out.insert(out.len() - 1, '\\');
    }
    out
}

/// `online_backup_allowed_clients` (CFG-19): names separated by commas, whitespace around each
/// dropped; a name is not empty and has no backslash or control character. Kept as written
/// (matching ignores ASCII case, SEC-4).
pub(super) fn parse_names(value: &str) -> Result<Vec<String>, ValueError> {
    let mut names = Vec::new();
    for (i, name) in value.split(',').map(str::trim).enumerate() {
        if name.is_empty() {
            return Err(ValueError::problem(format!(
                "name {} is empty (two commas in a row, or a comma at an end)",
                i + 1
            )));
        }
        if name.chars().any(|c| c.is_control() || c == '\\') {
            return Err(ValueError::problem(format!(
                "name {} has a backslash or a control character",
                i + 1
            )));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Which keys need which (CFG-20): the three files all or none; an allow-list only with TLS;
/// `online_backup_require_tls=true` only with TLS, when the service is on. Returns the one
/// sentence that says what to set or remove.
pub(super) fn check_together(config: &Config) -> Result<(), String> {
    let files = [
        (
            ONLINE_BACKUP_TLS_CERT,
            config.online_backup_tls_cert.is_some(),
        ),
        (
            ONLINE_BACKUP_TLS_KEY,
            config.online_backup_tls_key.is_some(),
        ),
        (
            ONLINE_BACKUP_TLS_CLIENT_CA,
            config.online_backup_tls_client_ca.is_some(),
        ),
    ];
    let set: Vec<&str> = files.iter().filter(|f| f.1).map(|f| f.0).collect();
    let missing: Vec<&str> = files.iter().filter(|f| !f.1).map(|f| f.0).collect();
    if !set.is_empty() && !missing.is_empty() {
        return Err(format!(
            "{} {} set but {} {}: TLS on the backup port needs all three of \
             {ONLINE_BACKUP_TLS_CERT}, {ONLINE_BACKUP_TLS_KEY} and {ONLINE_BACKUP_TLS_CLIENT_CA}",
            and_list(&set),
            if set.len() == 1 { "is" } else { "are" },
            and_list(&missing),
            if missing.len() == 1 {
                "is not"
            } else {
                "are not"
            },
        ));
    }
    let tls = set.len() == files.len();
    if !tls && !config.online_backup_allowed_clients.is_empty() {
        return Err(format!(
            "{ONLINE_BACKUP_ALLOWED_CLIENTS} is set but the backup port has no TLS: the names \
             are checked against client certificates, so set {ONLINE_BACKUP_TLS_CERT}, \
             {ONLINE_BACKUP_TLS_KEY} and {ONLINE_BACKUP_TLS_CLIENT_CA} as well"
        ));
    }
    if !tls && config.online_backup_require_tls && config.online_backup_enabled {
        return Err(format!(
            "{ONLINE_BACKUP_REQUIRE_TLS} is true but the backup port has no TLS: set \
             {ONLINE_BACKUP_TLS_CERT}, {ONLINE_BACKUP_TLS_KEY} and {ONLINE_BACKUP_TLS_CLIENT_CA}"
        ));
    }
    Ok(())
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, parse};
    use super::*;

    const FILES: &str = "online_backup_tls_cert=/etc/neo4j/server.pem\n\
                         online_backup_tls_key=/etc/neo4j/server.key\n\
                         online_backup_tls_client_ca=/etc/neo4j/ca.pem\n";

    #[test]
    fn cfg_18_tls_files_are_paths() {
        let config = parse(FILES);
        assert_eq!(
            config.backup_tls(),
            Some(BackupTls {
                cert: "/etc/neo4j/server.pem".into(),
                key: "/etc/neo4j/server.key".into(),
                client_ca: "/etc/neo4j/ca.pem".into(),
                allowed_clients: vec![],
            })
        );
        assert_eq!(Config::default().backup_tls(), None);
        // A path keeps its spaces inside; escapes are the properties syntax's (CFG-4).
        let config = parse(&format!(
            "{FILES}online_backup_tls_key=my keys/a\\\\b.pem\n"
        ));
        assert_eq!(
            config.online_backup_tls_key.as_deref(),
            Some(Path::new("my keys/a\\b.pem"))
        );
        assert_eq!(
            error(&format!("{FILES}online_backup_tls_cert=a\\u0007b\n")),
            format!("invalid value 'a\\u0007b' for online_backup_tls_cert: a path has no control characters; expected {EXPECT_PATH}")
        );
    }

    #[test]
    fn cfg_19_allowed_clients_are_names_separated_by_commas() {
        let names = |v: &str| {
            parse(&format!("{FILES}online_backup_allowed_clients={v}\n"))
                .online_backup_allowed_clients
        };
        assert_eq!(names("backup"), vec!["backup"]);
        assert_eq!(
            names("backup.example.com , Backup Operator,ops-1"),
            vec!["backup.example.com", "Backup Operator", "ops-1"]
        );
        assert_eq!(
            error(&format!("{FILES}online_backup_allowed_clients=a,,b\n")),
            format!("invalid value 'a,,b' for online_backup_allowed_clients: name 2 is empty (two commas in a row, or a comma at an end); expected {EXPECT_NAMES}")
        );
        assert!(error(&format!("{FILES}online_backup_allowed_clients=a,\n"))
            .contains("name 2 is empty"));
        assert!(
            error(&format!("{FILES}online_backup_allowed_clients=a\\\\b\n"))
                .contains("name 1 has a backslash")
        );
    }

    #[test]
    fn cfg_20_tls_keys_come_together() {
        assert_eq!(
            error("online_backup_tls_cert=/c.pem\n"),
            "online_backup_tls_cert is set but online_backup_tls_key and online_backup_tls_client_ca are not: TLS on the backup port needs all three of online_backup_tls_cert, online_backup_tls_key and online_backup_tls_client_ca"
        );
        assert_eq!(
            error("online_backup_tls_cert=/c.pem\nonline_backup_tls_key=/k.pem\n"),
            "online_backup_tls_cert and online_backup_tls_key are set but online_backup_tls_client_ca is not: TLS on the backup port needs all three of online_backup_tls_cert, online_backup_tls_key and online_backup_tls_client_ca"
        );
        assert_eq!(
            error("online_backup_allowed_clients=backup\n"),
            "online_backup_allowed_clients is set but the backup port has no TLS: the names are checked against client certificates, so set online_backup_tls_cert, online_backup_tls_key and online_backup_tls_client_ca as well"
        );
        assert_eq!(
            error("online_backup_require_tls=true\n"),
            "online_backup_require_tls is true but the backup port has no TLS: set online_backup_tls_cert, online_backup_tls_key and online_backup_tls_client_ca"
        );
        // With the service off there is nothing to require TLS of.
        let config = parse("online_backup_enabled=false\nonline_backup_require_tls=true\n");
        assert!(config.online_backup_require_tls);
        let config = parse(&format!("{FILES}online_backup_require_tls=TRUE\n"));
        assert!(config.online_backup_require_tls);
        assert_eq!(
            error("online_backup_require_tls=yes\n"),
            "invalid value 'yes' for online_backup_require_tls: expected true or false"
        );
    }

    #[test]
    fn write_path_round_trips_escapes() {
        for path in ["/a/b.pem", "a\\b", " lead", "trail ", " both ", "x"] {
            let text = format!(
                "{FILES}online_backup_tls_key={}\n",
                write_path(Path::new(path))
            );
            assert_eq!(
                parse(&text).online_backup_tls_key.as_deref(),
                Some(Path::new(path)),
                "{text}"
            );
        }
    }
}
