//! The addresses of `online_backup_server` (`host:port` or `host:first-last`, CFG-11) and
//! `http_server` (`host:port`, CFG-15), with their hosts (CFG-12).

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

use super::values::ValueError;
use super::{one_line, DEFAULT_BACKUP_PORT};

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

impl FromStr for BackupServerAddress {
    type Err = ValueError;

    /// `host:port` or `host:first-last` (CFG-11), the host without brackets (CFG-12).
    fn from_str(value: &str) -> Result<BackupServerAddress, ValueError> {
        let (host, ports) = if let Some(bracketed) = value.strip_prefix('[') {
            let Some((inside, after)) = bracketed.split_once(']') else {
                return Err(ValueError::problem("the '[' of an IPv6 host has no ']'"));
            };
            if inside.parse::<Ipv6Addr>().is_err() {
                return Err(ValueError::problem(format!(
                    "'[{}]' is not an IPv6 address",
                    one_line(inside)
                )));
            }
            let Some(ports) = after.strip_prefix(':') else {
                return Err(ValueError::problem("no ':<port>' after the host"));
            };
            (inside, ports)
        } else {
            let Some((host, ports)) = value.rsplit_once(':') else {
                return Err(ValueError::problem("no ':<port>' after the host"));
            };
            if host.contains(':') {
                return Err(ValueError::problem(
                    "an IPv6 host must be in brackets, as in [::1]:6362",
                ));
            }
            if host.is_empty() {
                return Err(ValueError::problem("the host is empty"));
            }
            if let Some(bad) = host
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
            {
                return Err(ValueError::problem(format!(
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
            return Err(ValueError::problem(format!(
                "the port range {first}-{last} is empty: its first port is greater than its last"
            )));
        }
        Ok(BackupServerAddress {
            host: host.to_string(),
            ports: first..=last,
        })
    }
}

/// `http_server` (CFG-15): a `host:port` as `online_backup_server` reads it, with one port,
/// normalized (no leading zeros, an IPv6 host in brackets).
pub(super) fn parse_http_server(value: &str) -> Result<String, ValueError> {
    let address: BackupServerAddress = value.parse()?;
    if address.ports.start() != address.ports.end() {
        return Err(ValueError::problem("a port range is not accepted here"));
    }
    Ok(address.to_string())
}

fn parse_port(s: &str) -> Result<u16, ValueError> {
    if s.is_empty() {
        return Err(ValueError::problem("a port is missing"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::problem(format!(
            "port '{}' is not a number",
            one_line(s)
        )));
    }
    match s.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ValueError::problem(format!(
            "port {s} is out of range 1-65535"
        ))),
    }
}

/// `host:port`, the host in brackets when it is an IPv6 address.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{backup_server, error, parse};
    use crate::config::{Config, EXPECT_BACKUP_SERVER, EXPECT_HTTP_SERVER};

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
}
