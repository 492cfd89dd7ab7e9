//! The server configuration, `neo4j.properties` (CFG-1 .. CFG-16).
//!
//! Owns: the Java properties syntax as far as this product reads it (comments, separators,
//! continuation lines, escapes), the five configuration keys with their defaults, the validation
//! of each value into a typed [`Config`], the one-line error an invalid value gives, the warnings
//! for unknown keys. Sizes (`<n>[k|M|G]`, CFG-14) are read by [`crate::units::parse_size`], as
//! flags such as `--max-rate` are.
//! Must not touch: files or the network. The server reads the file through the `Fs` seam and
//! hands the text to [`Config::parse`]; binding the addresses is the server's job, pruning by the
//! policy is retention's.

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::retention::RetentionPolicy;
use crate::store::DEFAULT_ROTATION_THRESHOLD;
use crate::units::{format_size, parse_size, parse_size_prefix, SizeError};

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

/// Every key this product reads, in the order [`Config::to_properties`] writes them.
pub const KEYS: [&str; 5] = [
    ONLINE_BACKUP_ENABLED,
    ONLINE_BACKUP_SERVER,
    KEEP_LOGICAL_LOGS,
    LOGICAL_LOG_ROTATION_THRESHOLD,
    HTTP_SERVER,
];

/// What each key accepts, as the error message says it (CFG-9).
const EXPECT_BOOL: &str = "true or false";
const EXPECT_BACKUP_SERVER: &str =
    "<host>:<port> or <host>:<port>-<port> (ports 1-65535, an IPv6 host in brackets)";
const EXPECT_KEEP_LOGS: &str = "true, false, or <n>[k|M|G] <files|size|txs|hours|days>";
const EXPECT_THRESHOLD: &str =
    "a size <n>[k|M|G] in bytes (k = 1024), or 0 to never rotate on size";
const EXPECT_HTTP_SERVER: &str = "<host>:<port> (port 1-65535, an IPv6 host in brackets)";

/// The default backup service port (the seed document's 6362): where the server's backup service
/// listens and where `neo4j-backup` connects when no port is given. The one definition.
pub const DEFAULT_BACKUP_PORT: u16 = 6362;

/// The server configuration: the five keys of `neo4j.properties`, validated (spec/config.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub online_backup_enabled: bool,
    pub online_backup_server: BackupServerAddress,
    pub keep_logical_logs: RetentionPolicy,
    /// Bytes; 0 never rotates on size.
    pub logical_log_rotation_threshold: u64,
    /// `host:port`, normalized as [`Config::parse`] writes it (CFG-15).
    pub http_server: String,
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
        }
    }
}

/// `online_backup_server`: a host and the ports to try, in order; the service binds the first
/// free one (CFG-11).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackupServerAddress {
    /// A host name or IP address, without brackets (`::1`, not `[::1]`).
    pub host: String,
    pub ports: RangeInclusive<u16>,
}

impl Default for BackupServerAddress {
    fn default() -> Self {
        BackupServerAddress {
            host: "127.0.0.1".to_string(),
            ports: DEFAULT_BACKUP_PORT..=DEFAULT_BACKUP_PORT,
        }
    }
}

impl BackupServerAddress {
    /// The `host:port` strings to bind, first port first; an IPv6 host is bracketed
    /// (`[::1]:6362`), so each string is a socket address the network seam accepts.
    pub fn candidates(&self) -> impl Iterator<Item = String> + '_ {
        self.ports
            .clone()
            .map(move |port| join_host_port(&self.host, port))
    }
}

impl fmt::Display for BackupServerAddress {
    /// The value as `online_backup_server` takes it: `host:port`, or `host:first-last` for a
    /// range of more than one port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (first, last) = (*self.ports.start(), *self.ports.end());
        f.write_str(&join_host_port(&self.host, first))?;
        if last != first {
            write!(f, "-{last}")?;
        }
        Ok(())
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
}

/// One key/value pair of properties text, after escapes (CFG-1 .. CFG-5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The 1-based line the pair starts on.
    pub line: usize,
    pub key: String,
    pub value: String,
}

impl Config {
    /// Parses `neo4j.properties` text. Returns the configuration and one warning per unknown
    /// key (CFG-7), or the first invalid value in file order (CFG-9).
    pub fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let properties = parse_properties(text)?;
        let mut last: [Option<&Property>; KEYS.len()] = [None; KEYS.len()];
        let mut warnings = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        for property in &properties {
            match KEYS.iter().position(|k| *k == property.key) {
                Some(i) => last[i] = Some(property),
                None if !unknown.contains(&property.key.as_str()) => {
                    unknown.push(&property.key);
                    warnings.push(unknown_key_warning(property));
                }
                None => {}
            }
        }
        // Only the last value of each key counts (CFG-6); errors come in file order (CFG-9).
        let mut effective: Vec<&Property> = last.into_iter().flatten().collect();
        effective.sort_by_key(|p| p.line);
        let mut config = Config::default();
        for property in effective {
            config.apply(&property.key, &property.value)?;
        }
        Ok((config, warnings))
    }

    /// Validates `value` for the known key `key` and stores it.
    fn apply(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let (key, expected) = match key {
            ONLINE_BACKUP_ENABLED => (ONLINE_BACKUP_ENABLED, EXPECT_BOOL),
            ONLINE_BACKUP_SERVER => (ONLINE_BACKUP_SERVER, EXPECT_BACKUP_SERVER),
            KEEP_LOGICAL_LOGS => (KEEP_LOGICAL_LOGS, EXPECT_KEEP_LOGS),
            LOGICAL_LOG_ROTATION_THRESHOLD => (LOGICAL_LOG_ROTATION_THRESHOLD, EXPECT_THRESHOLD),
            HTTP_SERVER => (HTTP_SERVER, EXPECT_HTTP_SERVER),
            _ => unreachable!("apply is called for known keys only"),
        };
        let invalid = |problem: Option<String>| ConfigError::InvalidValue {
            key,
            value: value.to_string(),
            problem,
            expected,
        };
        if value.is_empty() {
            return Err(invalid(Some("the value is empty".into())));
        }
        match key {
            ONLINE_BACKUP_ENABLED => {
                self.online_backup_enabled = parse_bool(value).ok_or_else(|| invalid(None))?;
            }
            ONLINE_BACKUP_SERVER => {
                self.online_backup_server = parse_backup_server(value).map_err(invalid)?;
            }
            KEEP_LOGICAL_LOGS => {
                self.keep_logical_logs = parse_keep_logical_logs(value).map_err(invalid)?;
            }
            LOGICAL_LOG_ROTATION_THRESHOLD => {
                self.logical_log_rotation_threshold = parse_size(value).map_err(|e| match e {
                    SizeError::Malformed => invalid(None),
                    SizeError::TooLarge(_) => invalid(Some(e.to_string())),
                })?;
            }
            _ => {
                let (host, ports) = parse_host_ports(value).map_err(invalid)?;
                if ports.start() != ports.end() {
                    return Err(invalid(Some("a port range is not accepted here".into())));
                }
                self.http_server = join_host_port(&host, *ports.start());
            }
        }
        Ok(())
    }

    /// The configuration as properties text, one `key=value` line per key in [`KEYS`] order.
    /// [`Config::parse`] reads it back to an equal `Config` (CFG-16) for every value `parse`
    /// can produce; an `Age` that is not a whole number of hours is rounded up to whole hours.
    pub fn to_properties(&self) -> String {
        let lines = [
            (
                ONLINE_BACKUP_ENABLED,
                self.online_backup_enabled.to_string(),
            ),
            (ONLINE_BACKUP_SERVER, self.online_backup_server.to_string()),
            (KEEP_LOGICAL_LOGS, format_retention(&self.keep_logical_logs)),
            (
                LOGICAL_LOG_ROTATION_THRESHOLD,
                format_size(self.logical_log_rotation_threshold),
            ),
            (HTTP_SERVER, self.http_server.clone()),
        ];
        lines
            .iter()
            .map(|(key, value)| format!("{}={}\n", escape(key, true), escape(value, false)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties syntax (CFG-1 .. CFG-5)

/// Whitespace as the properties syntax knows it: space, tab, form feed.
fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\x0c'
}

/// The lines of `text`, each without its terminator (`\n`, `\r\n` or `\r`).
fn natural_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                i += 1;
                if bytes.get(i) == Some(&b'\n') {
                    i += 1;
                }
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        lines.push(&text[start..]);
    }
    lines
}

fn ends_in_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// The key/value pairs of properties text, in file order, duplicates included (CFG-1 .. CFG-5).
pub fn parse_properties(text: &str) -> Result<Vec<Property>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = natural_lines(text);
    let mut properties = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_number = i + 1;
        let mut current = lines[i].trim_start_matches(is_ws);
        i += 1;
        if current.is_empty() || current.starts_with('#') || current.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        loop {
            if !ends_in_odd_backslashes(current) {
                logical.push_str(current);
                break;
            }
            logical.push_str(&current[..current.len() - 1]);
            match lines.get(i) {
                Some(next) => {
                    current = next.trim_start_matches(is_ws);
                    i += 1;
                }
                None => break,
            }
        }
        properties.push(split_pair(line_number, &logical)?);
    }
    Ok(properties)
}

/// Splits one logical line into key and value (CFG-2) and resolves their escapes.
fn split_pair(line: usize, logical: &str) -> Result<Property, ConfigError> {
    let chars: Vec<char> = logical.chars().collect();
    let mut key_end = 0;
    let mut value_start = chars.len();
    let mut has_separator = false;
    let mut preceding_backslash = false;
    while key_end < chars.len() {
        let c = chars[key_end];
        if !preceding_backslash && (c == '=' || c == ':') {
            value_start = key_end + 1;
            has_separator = true;
            break;
        }
        if !preceding_backslash && is_ws(c) {
            value_start = key_end + 1;
            break;
        }
        preceding_backslash = c == '\\' && !preceding_backslash;
        key_end += 1;
    }
    while value_start < chars.len() {
        let c = chars[value_start];
        if !is_ws(c) {
            if !has_separator && (c == '=' || c == ':') {
                has_separator = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    Ok(Property {
        line,
        key: unescape(line, &chars[..key_end], false)?,
        value: unescape(line, &chars[value_start..], true)?,
    })
}

/// Resolves escapes (CFG-4). With `trim_end`, trailing whitespace that was not escaped is
/// dropped (CFG-5).
fn unescape(line: usize, chars: &[char], trim_end: bool) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(chars.len());
    // The length of `out` up to its last character that must be kept.
    let mut keep = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' {
            out.push(c);
            if !(trim_end && is_ws(c)) {
                keep = out.len();
            }
            continue;
        }
        let Some(&e) = chars.get(i) else {
            // Unreachable from parse_properties (a trailing odd backslash continues the line);
            // a lone backslash at the very end stands for nothing, as in Java.
            break;
        };
        i += 1;
        let resolved = match e {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\x0c',
            'u' => {
                let unit = hex4(line, chars, i)?;
                i += 4;
                if (0xD800..0xDC00).contains(&unit) {
                    let low = (chars.get(i) == Some(&'\\') && chars.get(i + 1) == Some(&'u'))
                        .then(|| hex4(line, chars, i + 2))
                        .transpose()?
                        .filter(|low| (0xDC00..0xE000).contains(low));
                    let Some(low) = low else {
                        return Err(lone_surrogate(line, unit));
                    };
                    i += 6;
                    let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    char::from_u32(code).expect("a surrogate pair is a valid scalar value")
                } else {
                    char::from_u32(unit).ok_or_else(|| lone_surrogate(line, unit))?
                }
            }
            other => other,
        };
        out.push(resolved);
        keep = out.len();
    }
    if trim_end {
        out.truncate(keep);
    }
    Ok(out)
}

/// The four hex digits of a `\uXXXX` escape starting at `chars[at]`.
fn hex4(line: usize, chars: &[char], at: usize) -> Result<u32, ConfigError> {
    let digits: String = chars.iter().skip(at).take(4).collect();
    if digits.len() == 4 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(u32::from_str_radix(&digits, 16).expect("four hex digits"))
    } else {
        Err(ConfigError::Syntax {
            line,
            message: format!(
                "malformed \\uXXXX escape '\\u{}': expected four hex digits",
                one_line(&digits)
            ),
        })
    }
}

fn lone_surrogate(line: usize, unit: u32) -> ConfigError {
    ConfigError::Syntax {
        line,
        message: format!(
            "escape '\\u{unit:04X}' is half of a UTF-16 surrogate pair without its other half"
        ),
    }
}

/// `s` written so that [`parse_properties`] reads it back unchanged, as a key or as a value.
fn escape(s: &str, is_key: bool) -> String {
    let mut out = String::with_capacity(s.len());
    // Characters from this index on are trailing whitespace.
    let trailing = s.chars().count() - s.chars().rev().take_while(|&c| is_ws(c)).count();
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x0c' => out.push_str("\\f"),
            // Leading whitespace is skipped, trailing whitespace trimmed (CFG-5); in a key,
            // whitespace ends the key.
            ' ' if is_key || i == 0 || i >= trailing => out.push_str("\\ "),
            '=' | ':' if is_key => {
                out.push('\\');
                out.push(c);
            }
            '#' | '!' if is_key && i == 0 => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Values (CFG-9 .. CFG-15)

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

/// `true` or `false`, in any ASCII case (CFG-10).
fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `keep_logical_logs` (CFG-13).
fn parse_keep_logical_logs(value: &str) -> Result<RetentionPolicy, Option<String>> {
    if let Some(b) = parse_bool(value) {
        return Ok(if b {
            RetentionPolicy::KeepAll
        } else {
            RetentionPolicy::KeepRecoveryOnly
        });
    }
    let (n, rest) = parse_size_prefix(value).map_err(|e| match e {
        SizeError::Malformed => None,
        SizeError::TooLarge(written) => Some(format!("{written} is too large")),
    })?;
    let unit = rest.trim_start_matches(is_ws).to_ascii_lowercase();
    let written = &value[..value.len() - rest.len()];
    let age = |seconds_per: u64| {
        n.checked_mul(seconds_per)
            .map(|s| RetentionPolicy::Age(Duration::from_secs(s)))
            .ok_or_else(|| Some(format!("{written} {unit} is too long")))
    };
    match unit.as_str() {
        "files" | "file" => Ok(RetentionPolicy::Files(n)),
        "size" => Ok(RetentionPolicy::Size(n)),
        "txs" | "tx" => Ok(RetentionPolicy::Txs(n)),
        "hours" | "hour" => age(3600),
        "days" | "day" => age(86_400),
        "" => Err(Some(format!("'{written}' has no unit"))),
        _ => Err(None),
    }
}

/// A `keep_logical_logs` value that [`Config::parse`] reads back as `policy` (CFG-16).
pub fn format_retention(policy: &RetentionPolicy) -> String {
    match *policy {
        RetentionPolicy::KeepAll => "true".to_string(),
        RetentionPolicy::KeepRecoveryOnly => "false".to_string(),
        RetentionPolicy::Files(n) => format!("{n} files"),
        RetentionPolicy::Size(n) => format!("{} size", format_size(n)),
        RetentionPolicy::Txs(n) => format!("{n} txs"),
        RetentionPolicy::Age(d) => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            if nanos == 0 && secs % 86_400 == 0 {
                format!("{} days", secs / 86_400)
            } else {
                let whole = secs / 3600;
                let partial = nanos > 0 || secs % 3600 > 0;
                format!("{} hours", whole + u64::from(partial))
            }
        }
    }
}

/// `online_backup_server` (CFG-11).
fn parse_backup_server(value: &str) -> Result<BackupServerAddress, Option<String>> {
    let (host, ports) = parse_host_ports(value)?;
    Ok(BackupServerAddress { host, ports })
}

/// `host:port` or `host:first-last`: the host without brackets and the ports (CFG-11, CFG-12).
fn parse_host_ports(value: &str) -> Result<(String, RangeInclusive<u16>), Option<String>> {
    let (host, ports) = if let Some(bracketed) = value.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(Some("the '[' of an IPv6 host has no ']'".into()));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(Some(format!(
                "'[{}]' is not an IPv6 address",
                one_line(inside)
            )));
        }
        let Some(ports) = after.strip_prefix(':') else {
            return Err(Some("no ':<port>' after the host".into()));
        };
        (inside, ports)
    } else {
        let Some((host, ports)) = value.rsplit_once(':') else {
            return Err(Some("no ':<port>' after the host".into()));
        };
        if host.contains(':') {
            return Err(Some(
                "an IPv6 host must be in brackets, as in [::1]:6362".into(),
            ));
        }
        if host.is_empty() {
            return Err(Some("the host is empty".into()));
        }
        if let Some(bad) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(Some(format!(
                "the host has '{}'; a host name has only letters, digits, '-', '.' and '_'",
                one_line(&bad.to_string())
            )));
        }
        (host, ports)
    };
    let (first, last) = match ports.split_once('-') {
        Some((first, last)) => (parse_port(first)?, parse_port(last)?),
        // A single port 0 asks the system for a free port (tests, several servers on one
        // machine); the bound address is printed at start (CFG-17).
        None if ports == "0" => (0, 0),
        None => {
            let port = parse_port(ports)?;
            (port, port)
        }
    };
    if first > last {
        return Err(Some(format!(
            "the port range {first}-{last} is empty: its first port is greater than its last"
        )));
    }
    Ok((host.to_string(), first..=last))
}

fn parse_port(s: &str) -> Result<u16, Option<String>> {
    if s.is_empty() {
        return Err(Some("a port is missing".into()));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Some(format!("port '{}' is not a number", one_line(s))));
    }
    match s.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(Some(format!("port {s} is out of range 1-65535"))),
    }
}

/// `host:port`, the host in brackets when it is an IPv6 address.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
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
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 86_400;

    fn parse(text: &str) -> Config {
        let (config, warnings) = Config::parse(text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        config
    }

    fn error(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_properties(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    fn keep(value: &str) -> RetentionPolicy {
        parse(&format!("keep_logical_logs={value}")).keep_logical_logs
    }

    fn threshold(value: &str) -> u64 {
        parse(&format!("logical_log_rotation_threshold={value}")).logical_log_rotation_threshold
    }

    fn backup_server(value: &str) -> BackupServerAddress {
        parse(&format!("online_backup_server={value}")).online_backup_server
    }

    #[test]
    fn cfg_1_separators_comments_blank_lines_and_line_ends() {
        let text =
            "# a comment\n! another\n\n   \t\na=1\nb: 2\nc 3\n  \t d = 4\ne\t:\t5\r\nf=6\rg=7";
        assert_eq!(
            pairs(text),
            vec![
                pair("a", "1"),
                pair("b", "2"),
                pair("c", "3"),
                pair("d", "4"),
                pair("e", "5"),
                pair("f", "6"),
                pair("g", "7"),
            ]
        );
        // A comment is a whole line; `#` later in a line is data.
        assert_eq!(pairs("  # x=1\na=b#c"), vec![pair("a", "b#c")]);
        // A leading byte order mark is not part of the first key.
        assert_eq!(pairs("\u{feff}a=1"), vec![pair("a", "1")]);
        let config = parse("\u{feff}online_backup_enabled=false\r\n");
        assert!(!config.online_backup_enabled);
    }

    #[test]
    fn cfg_1_line_numbers_count_every_line_end() {
        let props = parse_properties("a=1\r\n\r\n# c\rb=2\n").unwrap();
        assert_eq!(props[1].line, 4);
    }

    #[test]
    fn cfg_2_key_ends_at_first_unescaped_separator() {
        assert_eq!(pairs("a=b=c"), vec![pair("a", "b=c")]);
        assert_eq!(pairs("a:b:c"), vec![pair("a", "b:c")]);
        // Whitespace, then at most one `=` or `:`, then whitespace.
        assert_eq!(pairs("a := b"), vec![pair("a", "= b")]);
        assert_eq!(pairs("a = = b"), vec![pair("a", "= b")]);
        assert_eq!(pairs("a b c"), vec![pair("a", "b c")]);
        // A key alone has an empty value; a line that starts with `=` has an empty key.
        assert_eq!(pairs("lonely"), vec![pair("lonely", "")]);
        assert_eq!(pairs("lonely =  "), vec![pair("lonely", "")]);
        assert_eq!(pairs("=v"), vec![pair("", "v")]);
        // Escaped separators belong to the key.
        assert_eq!(pairs(r"a\=b\:c\ d=e"), vec![pair("a=b:c d", "e")]);
    }

    #[test]
    fn cfg_3_continuation_lines() {
        assert_eq!(pairs("a=one \\\n     two"), vec![pair("a", "one two")]);
        assert_eq!(pairs("a=x\\\r\n\ty\\\rz"), vec![pair("a", "xyz")]);
        // The key can be continued too, and a continued line starting with `#` is data.
        assert_eq!(pairs("ke\\\n  y=v\\\n#w"), vec![pair("key", "v#w")]);
        // An even number of backslashes is escaped backslashes, no continuation.
        assert_eq!(
            pairs("a=x\\\\\nb=y"),
            vec![pair("a", "x\\"), pair("b", "y")]
        );
        assert_eq!(pairs("a=x\\\\\\\ny"), vec![pair("a", "x\\y")]);
        // A comment does not continue.
        assert_eq!(pairs("# c \\\na=1"), vec![pair("a", "1")]);
        // A blank continuation line ends the pair; a backslash at the end of text is dropped.
        assert_eq!(
            pairs("a=1\\\n\nb=2\\"),
            vec![pair("a", "1"), pair("b", "2")]
        );
        // Line numbers are those of the first line.
        let props = parse_properties("a=1\\\n2\nb=3").unwrap();
        assert_eq!((props[0].line, props[1].line), (1, 3));
        let config = parse("keep_logical_logs = 10 \\\n    days");
        assert_eq!(
            config.keep_logical_logs,
            RetentionPolicy::Age(Duration::from_secs(10 * DAY))
        );
    }

    #[test]
    fn cfg_4_escapes() {
        assert_eq!(
            pairs(r"k=\t\n\r\f\\\q\#\u0041\u00e9\u20AC"),
            vec![pair("k", "\t\n\r\x0c\\q#Aé€")]
        );
        assert_eq!(pairs(r"\u006B\u0065y=v"), vec![pair("key", "v")]);
        // A surrogate pair is one character.
        assert_eq!(pairs(r"k=\uD83D\uDE00"), vec![pair("k", "😀")]);
        // A backslash before a separator or whitespace makes it data.
        assert_eq!(pairs(r"k=a\=b\ c"), vec![pair("k", "a=b c")]);
        // UTF-8 text is taken as it is.
        assert_eq!(pairs("clé=valeur ☃"), vec![pair("clé", "valeur ☃")]);
    }

    #[test]
    fn cfg_4_malformed_unicode_escapes_are_errors() {
        assert_eq!(
            error("a=1\nk=\\u12G4"),
            r"line 2: malformed \uXXXX escape '\u12G4': expected four hex digits"
        );
        assert_eq!(
            error("k=\\u12"),
            r"line 1: malformed \uXXXX escape '\u12': expected four hex digits"
        );
        assert_eq!(
            error("k=\\uD83Dx"),
            r"line 1: escape '\uD83D' is half of a UTF-16 surrogate pair without its other half"
        );
        assert_eq!(
            error("k=\\uDE00"),
            r"line 1: escape '\uDE00' is half of a UTF-16 surrogate pair without its other half"
        );
        assert!(error("\\uZZZZ=1").starts_with("line 1: malformed"));
    }

    #[test]
    fn cfg_5_trailing_whitespace_of_values_is_dropped_unless_escaped() {
        assert_eq!(
            pairs("k=v \t\x0c \nk2=v2"),
            vec![pair("k", "v"), pair("k2", "v2")]
        );
        assert_eq!(pairs("k=v w  "), vec![pair("k", "v w")]);
        assert_eq!(pairs("k=v\\  "), vec![pair("k", "v ")]);
        assert_eq!(pairs(r"k=v\t"), vec![pair("k", "v\t")]);
        assert!(!parse("online_backup_enabled=false   ").online_backup_enabled);
        assert_eq!(
            error("online_backup_enabled=false\\ "),
            "invalid value 'false ' for online_backup_enabled: expected true or false"
        );
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
        };
        assert_eq!(Config::default(), expected);
        for text in ["", "\n\n", "# only a comment\n!and another", "\u{feff}"] {
            assert_eq!(Config::parse(text).unwrap(), (expected.clone(), vec![]));
        }
        // The defaults written as the brief writes them parse to the defaults.
        let written = "online_backup_enabled=true\nonline_backup_server=127.0.0.1:6362\nkeep_logical_logs=7 days\nlogical_log_rotation_threshold=25M\nhttp_server=127.0.0.1:7474\n";
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
    fn cfg_10_online_backup_enabled() {
        for (value, expected) in [
            ("true", true),
            ("false", false),
            ("TRUE", true),
            ("False", false),
            ("tRuE", true),
        ] {
            assert_eq!(
                parse(&format!("online_backup_enabled={value}")).online_backup_enabled,
                expected
            );
        }
        for value in ["yes", "no", "1", "0", "on", "truee", "t", "true false"] {
            assert_eq!(
                error(&format!("online_backup_enabled={value}")),
                format!(
                    "invalid value '{value}' for online_backup_enabled: expected true or false"
                )
            );
        }
    }

    #[test]
    fn cfg_11_online_backup_server_forms_and_candidates() {
        assert_eq!(
            backup_server("0.0.0.0:6362"),
            BackupServerAddress {
                host: "0.0.0.0".into(),
                ports: 6362..=6362
            }
        );
        let range = backup_server("db1.example.com:6362-6364");
        assert_eq!(range.ports, 6362..=6364);
        assert_eq!(
            range.candidates().collect::<Vec<_>>(),
            vec![
                "db1.example.com:6362",
                "db1.example.com:6363",
                "db1.example.com:6364"
            ]
        );
        assert_eq!(range.to_string(), "db1.example.com:6362-6364");
        // A range of one port is a single port; leading zeros are accepted.
        let one = backup_server("h:7000-07000");
        assert_eq!(
            (one.ports.clone(), one.to_string()),
            (7000..=7000, "h:7000".to_string())
        );
        assert_eq!(backup_server("h:1-65535").ports, 1..=65535);
        assert_eq!(
            backup_server("h:65535").candidates().collect::<Vec<_>>(),
            vec!["h:65535"]
        );
        assert_eq!(
            BackupServerAddress::default()
                .candidates()
                .collect::<Vec<_>>(),
            vec!["127.0.0.1:6362"]
        );
    }

    // CFG-17: a single port 0 is accepted for both addresses: the system chooses the port.
    #[test]
    fn cfg_17_port_zero_means_any_free_port() {
        let (config, _) =
            Config::parse("http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\n").unwrap();
        assert_eq!(config.http_server, "127.0.0.1:0");
        assert_eq!(config.online_backup_server.ports, 0..=0);
    }

    #[test]
    fn cfg_11_online_backup_server_rejections() {
        let cases = [
            ("h:99999", "port 99999 is out of range 1-65535"),
            ("h:0-5", "port 0 is out of range 1-65535"),
            (
                "h:6362-99999999999999999999",
                "port 99999999999999999999 is out of range 1-65535",
            ),
            (
                "h:6364-6362",
                "the port range 6364-6362 is empty: its first port is greater than its last",
            ),
            ("h:x", "port 'x' is not a number"),
            ("h:+80", "port '+80' is not a number"),
            ("h: 80", "port ' 80' is not a number"),
            ("h:80-", "a port is missing"),
            ("h:-80", "a port is missing"),
            ("h:", "a port is missing"),
            ("h:1-2-3", "port '2-3' is not a number"),
            ("h", "no ':<port>' after the host"),
            (":6362", "the host is empty"),
        ];
        for (value, problem) in cases {
            assert_eq!(
                error(&format!("online_backup_server={value}")),
                format!("invalid value '{value}' for online_backup_server: {problem}; expected {EXPECT_BACKUP_SERVER}"),
            );
        }
    }

    #[test]
    fn cfg_12_hosts() {
        // IPv6 in brackets; stored without them and bracketed again in candidates.
        let v6 = backup_server("[::1]:6362-6363");
        assert_eq!(v6.host, "::1");
        assert_eq!(
            v6.candidates().collect::<Vec<_>>(),
            vec!["[::1]:6362", "[::1]:6363"]
        );
        assert_eq!(v6.to_string(), "[::1]:6362-6363");
        assert_eq!(backup_server("[fe80::1:2]:1").host, "fe80::1:2");
        assert_eq!(parse("http_server=[::]:7474").http_server, "[::]:7474");
        for host in [
            "localhost",
            "10.0.0.1",
            "db-1.internal",
            "my_host",
            "UPPER.example",
        ] {
            assert_eq!(backup_server(&format!("{host}:6362")).host, host);
        }
        let cases = [
            (
                "::1:6362",
                "an IPv6 host must be in brackets, as in [::1]:6362",
            ),
            ("[::1:6362", "the '[' of an IPv6 host has no ']'"),
            ("[nope]:6362", "'[nope]' is not an IPv6 address"),
            ("[127.0.0.1]:6362", "'[127.0.0.1]' is not an IPv6 address"),
            ("[::1]6362", "no ':<port>' after the host"),
            (
                "my host:6362",
                "the host has ' '; a host name has only letters, digits, '-', '.' and '_'",
            ),
            (
                "a/b:6362",
                "the host has '/'; a host name has only letters, digits, '-', '.' and '_'",
            ),
            (
                "héte:6362",
                "the host has 'é'; a host name has only letters, digits, '-', '.' and '_'",
            ),
        ];
        for (value, problem) in cases {
            assert_eq!(
                error(&format!("online_backup_server={value}")),
                format!("invalid value '{value}' for online_backup_server: {problem}; expected {EXPECT_BACKUP_SERVER}"),
            );
            assert_eq!(
                error(&format!("http_server={value}")),
                format!("invalid value '{value}' for http_server: {problem}; expected {EXPECT_HTTP_SERVER}"),
            );
        }
    }

    #[test]
    fn cfg_13_keep_logical_logs_forms() {
        use RetentionPolicy::*;
        let hours = |n: u64| Age(Duration::from_secs(n * 3600));
        let cases = [
            ("true", KeepAll),
            ("false", KeepRecoveryOnly),
            ("TRUE", KeepAll),
            ("False", KeepRecoveryOnly),
            ("7 days", hours(7 * 24)),
            ("1 day", hours(24)),
            ("36 hours", hours(36)),
            ("1 hour", hours(1)),
            ("10 files", Files(10)),
            ("1 file", Files(1)),
            ("500 txs", Txs(500)),
            ("1 tx", Txs(1)),
            ("100M size", Size(100 << 20)),
            ("2G size", Size(2 << 30)),
            ("4k size", Size(4096)),
            ("4K size", Size(4096)),
            ("3m size", Size(3 << 20)),
            ("1g size", Size(1 << 30)),
            ("123 size", Size(123)),
            ("1k txs", Txs(1024)),
            ("2k files", Files(2048)),
            ("1k hours", hours(1024)),
            // Whitespace between the number and the unit is optional and may be any run.
            ("7days", hours(7 * 24)),
            ("100Msize", Size(100 << 20)),
            ("7 \t days", hours(7 * 24)),
            // Units in any case; leading zeros; zero.
            ("7 DAYS", hours(7 * 24)),
            ("2 Hours", hours(2)),
            ("007 days", hours(7 * 24)),
            ("0 files", Files(0)),
            ("0 size", Size(0)),
            ("0 txs", Txs(0)),
            ("0 hours", hours(0)),
            ("0 days", hours(0)),
        ];
        for (value, policy) in cases {
            assert_eq!(keep(value), policy, "{value}");
        }
        assert_eq!(
            keep(&format!("{} hours", u64::MAX / 3600)),
            hours(u64::MAX / 3600)
        );
        assert_eq!(keep(&format!("{} files", u64::MAX)), Files(u64::MAX));
    }

    #[test]
    fn cfg_13_keep_logical_logs_rejections() {
        let plain = [
            "7 parsecs",
            "yes",
            "days",
            "-1 days",
            "+1 days",
            "1.5 days",
            "1,000 txs",
            "7 M days",
            "1T size",
            "7 days ago",
            "1_000 txs",
            "7 d",
            "25MB size",
        ];
        for value in plain {
            assert_eq!(
                error(&format!("keep_logical_logs={value}")),
                format!(
                    "invalid value '{value}' for keep_logical_logs: expected {EXPECT_KEEP_LOGS}"
                ),
                "{value}"
            );
        }
        let with_problem = [
            ("7", "'7' has no unit"),
            ("100M", "'100M' has no unit"),
            ("17179869184G size", "17179869184G is too large"),
            (
                "18446744073709551616 files",
                "18446744073709551616 is too large",
            ),
            ("213503982334602 days", "213503982334602 days is too long"),
            (
                "5124095576030432 hours",
                "5124095576030432 hours is too long",
            ),
        ];
        for (value, problem) in with_problem {
            assert_eq!(
                error(&format!("keep_logical_logs={value}")),
                format!("invalid value '{value}' for keep_logical_logs: {problem}; expected {EXPECT_KEEP_LOGS}"),
            );
        }
        // The largest whole number of days that fits.
        let max_days = u64::MAX / DAY;
        assert_eq!(
            keep(&format!("{max_days} days")),
            RetentionPolicy::Age(Duration::from_secs(max_days * DAY))
        );
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

    #[test]
    fn cfg_16_format_retention_reads_back() {
        use RetentionPolicy::*;
        assert_eq!(format_retention(&RetentionPolicy::default()), "7 days");
        assert_eq!(
            format_retention(&Age(Duration::from_secs(36 * 3600))),
            "36 hours"
        );
        assert_eq!(format_retention(&Age(Duration::from_secs(0))), "0 days");
        // Not a whole number of hours: rounded up.
        assert_eq!(
            format_retention(&Age(Duration::from_secs(90 * 60))),
            "2 hours"
        );
        assert_eq!(format_retention(&Age(Duration::from_millis(1))), "1 hours");
        assert_eq!(format_retention(&Size(100 << 20)), "100M size");
        assert_eq!(format_retention(&Files(3)), "3 files");
        assert_eq!(format_retention(&Txs(1024)), "1024 txs");
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

    fn config() -> impl Strategy<Value = Config> {
        (
            any::<bool>(),
            host(),
            (1..=u16::MAX, 1..=u16::MAX),
            policy(),
            prop_oneof![any::<u64>(), (0..1u64 << 34).prop_map(|n| n << 20)],
            host(),
            1..=u16::MAX,
        )
            .prop_map(
                |(enabled, host, (a, b), policy, threshold, http_host, http_port)| Config {
                    online_backup_enabled: enabled,
                    online_backup_server: BackupServerAddress {
                        host,
                        ports: a.min(b)..=a.max(b),
                    },
                    keep_logical_logs: policy,
                    logical_log_rotation_threshold: threshold,
                    http_server: join_host_port(&http_host, http_port),
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

        // CFG-4, CFG-5: any key and value, escaped, read back unchanged.
        #[test]
        fn escaped_pairs_read_back(key in "\\PC*", value in any::<String>(), crlf in any::<bool>()) {
            let end = if crlf { "\r\n" } else { "\n" };
            let text = format!("{}={}{end}# c{end}", escape(&key, true), escape(&value, false));
            let props = parse_properties(&text).unwrap();
            prop_assert_eq!(props, vec![Property { line: 1, key, value }]);
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
