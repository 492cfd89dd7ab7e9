//! The server configuration, `neo4j.properties` (CFG-1 .. CFG-17).
//!
//! Owns: the Java properties syntax as far as this product reads it (comments, separators,
//! continuation lines, escapes), the five configuration keys with their defaults, the validation
//! of each value into a typed [`Config`], the one-line error an invalid value gives, the warnings
//! for unknown keys. Sizes (`<n>[k|M|G]`, CFG-14) are read by [`crate::units::parse_size`], as
//! flags such as `--max-rate` are.
//! Must not touch: files or the network. The server reads the file through the `Fs` seam and
//! hands the text to [`Config::parse`]; binding the addresses is the server's job, pruning by the
//! policy is retention's.
//!
//! Files: `properties.rs` the properties syntax (lines, separators, continuations, escapes);
//! `values.rs` `online_backup_enabled`, `keep_logical_logs` ([`RetentionPolicy`] with `FromStr`
//! and `Display`) and [`ValueError`]; `address.rs` [`BackupServerAddress`], the
//! `host:port[-port]` syntax of `online_backup_server` and `http_server`; `tls.rs` the TLS keys
//! of the backup port (file paths, the allow-list, [`BackupTls`], and which keys need which).
//! This file: the table of keys (name, accepted forms, field), [`Config`], its errors and the
//! unknown-key warnings.

mod address;
mod properties;
mod tls;
mod values;

use crate::retention::RetentionPolicy;
use crate::store::DEFAULT_ROTATION_THRESHOLD;
use crate::units::{format_size, parse_size, SizeError};
use address::parse_http_server;
use values::parse_bool;

pub use address::{join_host_port, BackupServerAddress};
pub use properties::{parse_properties, Property};
pub use tls::BackupTls;
pub use values::ValueError;

/// `online_backup_enabled`: run the backup service.
pub const ONLINE_BACKUP_ENABLED: &str = "online_backup_enabled";
/// `online_backup_server`: where the backup service listens.
pub const ONLINE_BACKUP_SERVER: &str = "online_backup_server";
/// `keep_logical_logs`: the retention policy.
pub const KEEP_LOGICAL_LOGS: &str = "keep_logical_logs";
/// `logical_log_rotation_threshold`: rotate the active log past this size.
pub const LOGICAL_LOG_ROTATION_THRESHOLD: &str = "logical_log_rotation_threshold";
/// `http_server`: where the HTTP API listens.
pub const HTTP_SERVER: &str = "http_server";
/// `online_backup_tls_cert`: the backup service's certificate chain (PEM).
pub const ONLINE_BACKUP_TLS_CERT: &str = "online_backup_tls_cert";
/// `online_backup_tls_key`: the private key of that certificate (PEM).
pub const ONLINE_BACKUP_TLS_KEY: &str = "online_backup_tls_key";
/// `online_backup_tls_client_ca`: the CA certificates a backup client's certificate must chain to.
pub const ONLINE_BACKUP_TLS_CLIENT_CA: &str = "online_backup_tls_client_ca";
/// `online_backup_allowed_clients`: the names a client certificate must carry (empty: any).
pub const ONLINE_BACKUP_ALLOWED_CLIENTS: &str = "online_backup_allowed_clients";
/// `online_backup_require_tls`: refuse to start a backup service without TLS.
pub const ONLINE_BACKUP_REQUIRE_TLS: &str = "online_backup_require_tls";

/// Every key this product reads, in the order [`Config::to_properties`] writes them.
pub const KEYS: [&str; TABLE.len()] = {
    let mut keys = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        keys[i] = TABLE[i].name;
        i += 1;
    }
    keys
};

/// What each key accepts, as the error message says it (CFG-9).
const EXPECT_BOOL: &str = "true or false";
const EXPECT_BACKUP_SERVER: &str =
    "<host>:<port> or <host>:<port>-<port> (ports 1-65535, an IPv6 host in brackets)";
const EXPECT_KEEP_LOGS: &str = "true, false, or <n>[k|M|G] <files|size|txs|hours|days>";
const EXPECT_THRESHOLD: &str =
    "a size <n>[k|M|G] in bytes (k = 1024), or 0 to never rotate on size";
const EXPECT_HTTP_SERVER: &str = "<host>:<port> (port 1-65535, an IPv6 host in brackets)";
const EXPECT_PATH: &str = tls::EXPECT_PATH;
const EXPECT_NAMES: &str = tls::EXPECT_NAMES;

/// One key of `neo4j.properties`: its name, what it accepts as the error message says it (CFG-9),
/// how a valid value is stored in a [`Config`], and how [`Config::to_properties`] writes it back.
struct Key {
    name: &'static str,
    expected: &'static str,
    /// Stores a non-empty value, or says why it is not accepted.
    set: fn(&mut Config, &str) -> Result<(), ValueError>,
    /// The field's value in the form `set` reads back (CFG-16); `None` for a key that is not
    /// set (an optional key has no value to write).
    get: fn(&Config) -> Option<String>,
}

/// The keys in the order of spec/config.md's table (CFG-8), which is the order
/// [`Config::to_properties`] writes them.
const TABLE: [Key; 10] = [
    Key {
        name: ONLINE_BACKUP_ENABLED,
        expected: EXPECT_BOOL,
        set: |config, value| {
            config.online_backup_enabled = parse_bool(value).ok_or_else(ValueError::plain)?;
            Ok(())
        },
        get: |config| Some(config.online_backup_enabled.to_string()),
    },
    Key {
        name: ONLINE_BACKUP_SERVER,
        expected: EXPECT_BACKUP_SERVER,
        set: |config, value| {
            config.online_backup_server = value.parse()?;
            Ok(())
        },
        get: |config| Some(config.online_backup_server.to_string()),
    },
    Key {
        name: KEEP_LOGICAL_LOGS,
        expected: EXPECT_KEEP_LOGS,
        set: |config, value| {
            config.keep_logical_logs = value.parse()?;
            Ok(())
        },
        get: |config| Some(config.keep_logical_logs.to_string()),
    },
    Key {
        name: LOGICAL_LOG_ROTATION_THRESHOLD,
        expected: EXPECT_THRESHOLD,
        set: |config, value| {
            config.logical_log_rotation_threshold = parse_size(value).map_err(|e| match e {
                SizeError::Malformed => ValueError::plain(),
                SizeError::TooLarge(_) => ValueError::problem(e.to_string()),
            })?;
            Ok(())
        },
        get: |config| Some(format_size(config.logical_log_rotation_threshold)),
    },
    Key {
        name: HTTP_SERVER,
        expected: EXPECT_HTTP_SERVER,
        set: |config, value| {
            config.http_server = parse_http_server(value)?;
            Ok(())
        },
        get: |config| Some(config.http_server.clone()),
    },
    Key {
        name: ONLINE_BACKUP_TLS_CERT,
        expected: EXPECT_PATH,
        set: |config, value| {
            config.online_backup_tls_cert = Some(tls::parse_path(value)?);
            Ok(())
        },
        get: |config| {
            config
                .online_backup_tls_cert
                .as_deref()
                .map(tls::write_path)
        },
    },
    Key {
        name: ONLINE_BACKUP_TLS_KEY,
        expected: EXPECT_PATH,
        set: |config, value| {
            config.online_backup_tls_key = Some(tls::parse_path(value)?);
            Ok(())
        },
        get: |config| config.online_backup_tls_key.as_deref().map(tls::write_path),
    },
    Key {
        name: ONLINE_BACKUP_TLS_CLIENT_CA,
        expected: EXPECT_PATH,
        set: |config, value| {
            config.online_backup_tls_client_ca = Some(tls::parse_path(value)?);
            Ok(())
        },
        get: |config| {
            config
                .online_backup_tls_client_ca
                .as_deref()
                .map(tls::write_path)
        },
    },
    Key {
        name: ONLINE_BACKUP_ALLOWED_CLIENTS,
        expected: EXPECT_NAMES,
        set: |config, value| {
            config.online_backup_allowed_clients = tls::parse_names(value)?;
            Ok(())
        },
        get: |config| {
            (!config.online_backup_allowed_clients.is_empty())
                .then(|| config.online_backup_allowed_clients.join(","))
        },
    },
    Key {
        name: ONLINE_BACKUP_REQUIRE_TLS,
        expected: EXPECT_BOOL,
        set: |config, value| {
            config.online_backup_require_tls = parse_bool(value).ok_or_else(ValueError::plain)?;
            Ok(())
        },
        get: |config| Some(config.online_backup_require_tls.to_string()),
    },
];

/// The default backup service port (the seed document's 6362): where the server's backup service
/// listens and where `neo4j-backup` connects when no port is given. The one definition.
pub const DEFAULT_BACKUP_PORT: u16 = 6362;

/// The server configuration: the keys of `neo4j.properties`, validated (spec/config.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub online_backup_enabled: bool,
    pub online_backup_server: BackupServerAddress,
    pub keep_logical_logs: RetentionPolicy,
    /// Bytes; 0 never rotates on size.
    pub logical_log_rotation_threshold: u64,
    /// `host:port`, normalized as [`Config::parse`] writes it (CFG-15).
    pub http_server: String,
    /// The TLS keys of the backup port (CFG-18 .. CFG-20); [`Config::backup_tls`] reads them
    /// together. `parse` only returns a configuration where the three files are all set or
    /// none is.
    pub online_backup_tls_cert: Option<std::path::PathBuf>,
    pub online_backup_tls_key: Option<std::path::PathBuf>,
    pub online_backup_tls_client_ca: Option<std::path::PathBuf>,
    /// Names a client certificate must carry one of, as written (empty: any certificate the CA
    /// signed).
    pub online_backup_allowed_clients: Vec<String>,
    pub online_backup_require_tls: bool,
}

impl Default for Config {
    /// The brief's defaults (CFG-8).
    fn default() -> Self {
        Config {
            online_backup_enabled: true,
            online_backup_server: BackupServerAddress::default(),
            keep_logical_logs: RetentionPolicy::default(),
            logical_log_rotation_threshold: DEFAULT_ROTATION_THRESHOLD,
            http_server: "127.0.0.1:7474".to_string(),
            online_backup_tls_cert: None,
            online_backup_tls_key: None,
            online_backup_tls_client_ca: None,
            online_backup_allowed_clients: Vec::new(),
            online_backup_require_tls: false,
        }
    }
}

/// Why a configuration was refused. Display is one line (CFG-9).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not properties syntax (a malformed escape, CFG-4). `line` is 1-based: the
    /// line the offending key/value pair starts on.
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// A known key has a value it does not accept.
    #[error(
        "invalid value '{}' for {key}: {}expected {expected}",
        one_line(.value),
        problem_prefix(.problem)
    )]
    InvalidValue {
        key: &'static str,
        value: String,
        /// What is wrong, when more can be said than "not one of the accepted forms".
        problem: Option<String>,
        /// The accepted forms.
        expected: &'static str,
    },
    /// Keys that are valid one by one but not together (CFG-20): the sentence says which and
    /// what to add or remove.
    #[error("{0}")]
    Inconsistent(String),
}

impl Config {
    /// Parses `neo4j.properties` text. Returns the configuration and one warning per unknown
    /// key (CFG-7), or the first invalid value in file order (CFG-9).
    pub fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let properties = parse_properties(text)?;
        let mut last: [Option<&Property>; TABLE.len()] = [None; TABLE.len()];
        let mut warnings = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        for property in &properties {
            match TABLE.iter().position(|k| k.name == property.key) {
                Some(i) => last[i] = Some(property),
                None if !unknown.contains(&property.key.as_str()) => {
                    unknown.push(&property.key);
                    warnings.push(unknown_key_warning(property));
                }
                None => {}
            }
        }
        // Only the last value of each key counts (CFG-6); errors come in file order (CFG-9).
        let mut effective: Vec<(&Key, &Property)> = TABLE
            .iter()
            .zip(last)
            .filter_map(|(key, property)| Some((key, property?)))
            .collect();
        effective.sort_by_key(|(_, p)| p.line);
        let mut config = Config::default();
        for (key, property) in effective {
            config.apply(key, &property.value)?;
        }
        tls::check_together(&config).map_err(ConfigError::Inconsistent)?;
        Ok((config, warnings))
    }

    /// The backup port's TLS settings, when TLS is configured (CFG-18 .. CFG-20).
    pub fn backup_tls(&self) -> Option<BackupTls> {
        Some(BackupTls {
            cert: self.online_backup_tls_cert.clone()?,
            key: self.online_backup_tls_key.clone()?,
            client_ca: self.online_backup_tls_client_ca.clone()?,
            allowed_clients: self.online_backup_allowed_clients.clone(),
        })
    }

    /// Validates `value` for `key` and stores it; an empty value is invalid for every key.
    fn apply(&mut self, key: &Key, value: &str) -> Result<(), ConfigError> {
        let stored = if value.is_empty() {
            Err(ValueError::problem("the value is empty"))
        } else {
            (key.set)(self, value)
        };
        stored.map_err(|e| ConfigError::InvalidValue {
            key: key.name,
            value: value.to_string(),
            problem: e.problem,
            expected: key.expected,
        })
    }

    /// The configuration as properties text, one `key=value` line per key in [`KEYS`] order
    /// (an optional key that is not set has no line). [`Config::parse`] reads it back to an
    /// equal `Config` (CFG-16) for every value `parse` can produce; an `Age` that is not a whole
    /// number of hours is rounded up to whole hours. Only a file path is ever escaped (a
    /// backslash, a space at either end); every other canonical form is plain text.
    pub fn to_properties(&self) -> String {
        TABLE
            .iter()
            .filter_map(|key| Some(format!("{}={}\n", key.name, (key.get)(self)?)))
            .collect()
    }
}

/// `value` on one line: control characters (and the Unicode line and paragraph separators) are
/// shown as escapes, so that an error or warning never spans lines.
fn one_line(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

fn problem_prefix(problem: &Option<String>) -> String {
    problem
        .as_ref()
        .map_or_else(String::new, |p| format!("{p}; "))
}

// ---------------------------------------------------------------------------------------------
// Unknown keys (CFG-7)

fn unknown_key_warning(property: &Property) -> String {
    let mut warning = format!(
        "unknown key '{}' on line {} is ignored",
        one_line(&property.key),
        property.line
    );
    if let Some(known) = suggestion(&property.key) {
        warning.push_str(&format!("; did you mean '{known}'?"));
    }
    warning
}

/// The known key closest to `key`, ignoring ASCII case, if it is at most 3 single-character
/// edits away (Levenshtein distance, in characters).
fn suggestion(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    KEYS.iter()
        .map(|known| (strsim::levenshtein(&key, known), *known))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests {
    use super::address::join_host_port;
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;
    use std::time::Duration;

    pub(super) const DAY: u64 = 86_400;

    pub(super) fn parse(text: &str) -> Config {
        let (config, warnings) = Config::parse(text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        config
    }

    pub(super) fn error(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    pub(super) fn keep(value: &str) -> RetentionPolicy {
        parse(&format!("keep_logical_logs={value}")).keep_logical_logs
    }

    pub(super) fn threshold(value: &str) -> u64 {
        parse(&format!("logical_log_rotation_threshold={value}")).logical_log_rotation_threshold
    }

    pub(super) fn backup_server(value: &str) -> BackupServerAddress {
        parse(&format!("online_backup_server={value}")).online_backup_server
    }

    #[test]
    fn cfg_6_later_keys_override_earlier_ones() {
        let config = parse("online_backup_enabled=false\nonline_backup_enabled=true\nhttp_server=h:1\nhttp_server=h:2");
        assert!(config.online_backup_enabled);
        assert_eq!(config.http_server, "h:2");
        // Only the value that counts is validated.
        assert_eq!(
            parse("keep_logical_logs=7 parsecs\nkeep_logical_logs=2 days").keep_logical_logs,
            RetentionPolicy::Age(Duration::from_secs(2 * DAY))
        );
        assert!(Config::parse("keep_logical_logs=2 days\nkeep_logical_logs=7 parsecs").is_err());
    }

    #[test]
    fn cfg_6_keys_are_case_sensitive() {
        let (config, warnings) = Config::parse("ONLINE_BACKUP_ENABLED=false").unwrap();
        assert!(config.online_backup_enabled);
        assert_eq!(
            warnings,
            vec!["unknown key 'ONLINE_BACKUP_ENABLED' on line 1 is ignored; did you mean 'online_backup_enabled'?"]
        );
    }

    #[test]
    fn cfg_7_unknown_keys_are_warnings_once_each() {
        let text = "online_backup_enable=false\nfoo.bar=1\nkeep_logical_logs=true\nfoo.bar=2\nkeep_logical_log=3 files\n=x";
        let (config, warnings) = Config::parse(text).unwrap();
        assert_eq!(config.keep_logical_logs, RetentionPolicy::KeepAll);
        assert!(config.online_backup_enabled);
        assert_eq!(
            warnings,
            vec![
                "unknown key 'online_backup_enable' on line 1 is ignored; did you mean 'online_backup_enabled'?",
                "unknown key 'foo.bar' on line 2 is ignored",
                "unknown key 'keep_logical_log' on line 5 is ignored; did you mean 'keep_logical_logs'?",
                "unknown key '' on line 6 is ignored",
            ]
        );
        // An unknown key's value is never validated, and its warning stays on one line.
        let (_, warnings) = Config::parse("a\\nb=\\u0000").unwrap();
        assert_eq!(warnings, vec![r"unknown key 'a\nb' on line 1 is ignored"]);
    }

    #[test]
    fn cfg_8_defaults() {
        let expected = Config {
            online_backup_enabled: true,
            online_backup_server: BackupServerAddress {
                host: "127.0.0.1".into(),
                ports: 6362..=6362,
            },
            keep_logical_logs: RetentionPolicy::Age(Duration::from_secs(7 * DAY)),
            logical_log_rotation_threshold: 25 * 1024 * 1024,
            http_server: "127.0.0.1:7474".into(),
            online_backup_tls_cert: None,
            online_backup_tls_key: None,
            online_backup_tls_client_ca: None,
            online_backup_allowed_clients: vec![],
            online_backup_require_tls: false,
        };
        assert_eq!(Config::default(), expected);
        for text in ["", "\n\n", "# only a comment\n!and another", "\u{feff}"] {
            assert_eq!(Config::parse(text).unwrap(), (expected.clone(), vec![]));
        }
        // The defaults written as the brief writes them parse to the defaults.
        let written = "online_backup_enabled=true\nonline_backup_server=127.0.0.1:6362\nkeep_logical_logs=7 days\nlogical_log_rotation_threshold=25M\nhttp_server=127.0.0.1:7474\nonline_backup_require_tls=false\n";
        assert_eq!(parse(written), expected);
        assert_eq!(Config::default().to_properties(), written);
    }

    #[test]
    fn cfg_9_error_messages_are_pinned() {
        let cases = [
            (
                "keep_logical_logs=7 parsecs",
                "invalid value '7 parsecs' for keep_logical_logs: expected true, false, or <n>[k|M|G] <files|size|txs|hours|days>",
            ),
            (
                "online_backup_server=host:99999",
                "invalid value 'host:99999' for online_backup_server: port 99999 is out of range 1-65535; expected <host>:<port> or <host>:<port>-<port> (ports 1-65535, an IPv6 host in brackets)",
            ),
            (
                "online_backup_enabled=yes",
                "invalid value 'yes' for online_backup_enabled: expected true or false",
            ),
            (
                "logical_log_rotation_threshold=25MB",
                "invalid value '25MB' for logical_log_rotation_threshold: expected a size <n>[k|M|G] in bytes (k = 1024), or 0 to never rotate on size",
            ),
            (
                "http_server=localhost",
                "invalid value 'localhost' for http_server: no ':<port>' after the host; expected <host>:<port> (port 1-65535, an IPv6 host in brackets)",
            ),
            (
                "http_server=",
                "invalid value '' for http_server: the value is empty; expected <host>:<port> (port 1-65535, an IPv6 host in brackets)",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(error(text), message, "{text}");
        }
    }

    #[test]
    fn cfg_9_error_is_one_line_and_names_key_value_and_forms() {
        let err = Config::parse("keep_logical_logs=7\\ndays\\u2028x\\u0007").unwrap_err();
        assert_eq!(
            err.to_string(),
            r"invalid value '7\ndays\u2028x\u0007' for keep_logical_logs: expected true, false, or <n>[k|M|G] <files|size|txs|hours|days>"
        );
        let ConfigError::InvalidValue {
            key,
            value,
            problem,
            ..
        } = err
        else {
            panic!("not an invalid value");
        };
        assert_eq!(
            (key, value.as_str(), problem),
            (KEEP_LOGICAL_LOGS, "7\ndays\u{2028}x\u{7}", None)
        );
    }

    #[test]
    fn cfg_9_first_invalid_value_in_file_order_is_reported() {
        let text = "http_server=nope\nonline_backup_enabled=maybe\n";
        assert!(error(text).contains("for http_server"));
        let text = "online_backup_enabled=maybe\nhttp_server=nope\n";
        assert!(error(text).contains("for online_backup_enabled"));
        // The position of a key is that of its last occurrence.
        let text = "http_server=nope\nonline_backup_enabled=maybe\nhttp_server=nope2";
        assert!(error(text).contains("for online_backup_enabled"));
    }

    #[test]
    fn cfg_9_empty_values_are_invalid() {
        for key in KEYS {
            let message = error(&format!("{key}="));
            assert!(
                message.starts_with(&format!(
                    "invalid value '' for {key}: the value is empty; expected "
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn cfg_14_logical_log_rotation_threshold() {
        assert_eq!(threshold("0"), 0);
        assert_eq!(threshold("25M"), 25 << 20);
        assert_eq!(threshold("512k"), 512 << 10);
        assert_eq!(threshold("1G"), 1 << 30);
        assert_eq!(threshold("4096"), 4096);
        assert_eq!(
            error("logical_log_rotation_threshold=17179869184G"),
            format!("invalid value '17179869184G' for logical_log_rotation_threshold: 17179869184G is too large (at most 18446744073709551615 bytes); expected {EXPECT_THRESHOLD}")
        );
        for value in ["25 M", "never", "-1", "25MB", "1.5G"] {
            assert_eq!(
                error(&format!("logical_log_rotation_threshold={value}")),
                format!("invalid value '{value}' for logical_log_rotation_threshold: expected {EXPECT_THRESHOLD}")
            );
        }
    }

    #[test]
    fn cfg_15_http_server() {
        assert_eq!(parse("http_server=0.0.0.0:80").http_server, "0.0.0.0:80");
        assert_eq!(
            parse("http_server=localhost:07474").http_server,
            "localhost:7474"
        );
        assert_eq!(parse("http_server=[::1]:7474").http_server, "[::1]:7474");
        assert_eq!(parse("http_server=h:7474-7474").http_server, "h:7474");
        assert_eq!(
            error("http_server=h:7474-7475"),
            format!("invalid value 'h:7474-7475' for http_server: a port range is not accepted here; expected {EXPECT_HTTP_SERVER}")
        );
        assert_eq!(
            error("http_server=h:65536"),
            format!("invalid value 'h:65536' for http_server: port 65536 is out of range 1-65535; expected {EXPECT_HTTP_SERVER}")
        );
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_.-]{1,20}",
            any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
            any::<[u16; 8]>().prop_map(|s| Ipv6Addr::from(s).to_string()),
            Just("::".to_string()),
        ]
    }

    fn policy() -> impl Strategy<Value = RetentionPolicy> {
        use RetentionPolicy::*;
        prop_oneof![
            Just(KeepAll),
            Just(KeepRecoveryOnly),
            any::<u64>().prop_map(Files),
            any::<u64>().prop_map(Size),
            any::<u64>().prop_map(Txs),
            (0..=u64::MAX / 3600).prop_map(|h| Age(Duration::from_secs(h * 3600))),
            (0..=400u64).prop_map(|d| Age(Duration::from_secs(d * DAY))),
        ]
    }

    /// The TLS keys as `parse` can produce them: all three files or none (CFG-20), names only
    /// with the files, `require_tls` only with them or with the service off.
    fn tls() -> impl Strategy<Value = (Option<[std::path::PathBuf; 3]>, Vec<String>, bool)> {
        let path = "[ a-zA-Z0-9/._\\\\-]{1,16}".prop_map(std::path::PathBuf::from);
        let name = "[a-zA-Z0-9][a-zA-Z0-9 ._@*-]{0,10}[a-zA-Z0-9]";
        prop_oneof![
            Just((None, vec![], false)),
            (
                [path.clone(), path.clone(), path],
                proptest::collection::vec(name, 0..4),
                any::<bool>()
            )
                .prop_map(|(files, names, require)| (Some(files), names, require)),
        ]
    }

    fn config() -> impl Strategy<Value = Config> {
        (
            any::<bool>(),
            host(),
            (1..=u16::MAX, 1..=u16::MAX),
            policy(),
            prop_oneof![any::<u64>(), (0..1u64 << 34).prop_map(|n| n << 20)],
            host(),
            1..=u16::MAX,
            tls(),
        )
            .prop_map(
                |(enabled, host, (a, b), policy, threshold, http_host, http_port, tls)| {
                    let (files, names, require) = tls;
                    let [cert, key, ca] = files.map_or([None, None, None], |f| f.map(Some));
                    Config {
                        online_backup_enabled: enabled,
                        online_backup_server: BackupServerAddress {
                            host,
                            ports: a.min(b)..=a.max(b),
                        },
                        keep_logical_logs: policy,
                        logical_log_rotation_threshold: threshold,
                        http_server: join_host_port(&http_host, http_port),
                        online_backup_tls_cert: cert,
                        online_backup_tls_key: key,
                        online_backup_tls_client_ca: ca,
                        online_backup_allowed_clients: names,
                        online_backup_require_tls: require,
                    }
                },
            )
    }

    proptest! {
        // CFG-16: a configuration written as properties reads back to itself.
        #[test]
        fn cfg_16_to_properties_round_trips(config in config()) {
            let text = config.to_properties();
            prop_assert_eq!(Config::parse(&text), Ok((config, vec![])), "{}", text);
        }


        // CFG-7, CFG-9: parsing never panics, and what it reports is always one line.
        #[test]
        fn any_text_gives_config_or_one_line_error(
            lines in proptest::collection::vec(
                prop_oneof![
                    any::<String>(),
                    (proptest::sample::select(KEYS.to_vec()), "[ =:]{1,2}", "\\PC{0,12}")
                        .prop_map(|(k, s, v)| format!("{k}{s}{v}")),
                    "[a-z_\\\\\\\\u0-9 =:#!\t\r\n]{0,30}",
                ],
                0..8,
            )
        ) {
            let text = lines.join("\n");
            match Config::parse(&text) {
                Ok((_, warnings)) => {
                    for warning in warnings {
                        prop_assert!(!warning.contains(['\n', '\r']), "{:?}", warning);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(!message.contains(['\n', '\r', '\u{2028}', '\u{2029}']), "{:?}", message);
                }
            }
        }
    }
}
