//! The values of `online_backup_enabled` (CFG-10) and `keep_logical_logs` (CFG-13), and why a
//! value is refused ([`ValueError`]). `keep_logical_logs` is [`RetentionPolicy`] read with
//! `FromStr` and written with `Display`; sizes are `units`' (CFG-14).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::properties::is_ws;
use crate::retention::RetentionPolicy;
use crate::units::{format_size, parse_size_prefix, SizeError};

/// Why a value is not accepted (CFG-9): what is wrong, when more can be said than "not one of
/// the accepted forms". [`super::ConfigError::InvalidValue`] adds the key, the value and the
/// accepted forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    pub problem: Option<String>,
}

impl ValueError {
    /// Not one of the accepted forms, with nothing more to say.
    pub(super) fn plain() -> ValueError {
        ValueError { problem: None }
    }

    /// What is wrong: `port 99999 is out of range 1-65535`.
    pub(super) fn problem(problem: impl Into<String>) -> ValueError {
        ValueError {
            problem: Some(problem.into()),
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            self.problem
                .as_deref()
                .unwrap_or("not one of the accepted forms"),
        )
    }
}

impl std::error::Error for ValueError {}

/// `true` or `false`, in any ASCII case (CFG-10).
pub(super) fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl FromStr for RetentionPolicy {
    type Err = ValueError;

    /// A `keep_logical_logs` value (CFG-13): `true`, `false`, or `<n>[k|M|G] <unit>`.
    fn from_str(value: &str) -> Result<RetentionPolicy, ValueError> {
        if let Some(b) = parse_bool(value) {
            return Ok(if b {
                RetentionPolicy::KeepAll
            } else {
                RetentionPolicy::KeepRecoveryOnly
            });
        }
        let (n, rest) = parse_size_prefix(value).map_err(|e| match e {
            SizeError::Malformed => ValueError::plain(),
            SizeError::TooLarge(written) => ValueError::problem(format!("{written} is too large")),
        })?;
        let unit = rest.trim_start_matches(is_ws).to_ascii_lowercase();
        let written = &value[..value.len() - rest.len()];
        let age = |seconds_per: u64| {
            n.checked_mul(seconds_per)
                .map(|s| RetentionPolicy::Age(Duration::from_secs(s)))
                .ok_or_else(|| ValueError::problem(format!("{written} {unit} is too long")))
        };
        match unit.as_str() {
            "files" | "file" => Ok(RetentionPolicy::Files(n)),
            "size" => Ok(RetentionPolicy::Size(n)),
            "txs" | "tx" => Ok(RetentionPolicy::Txs(n)),
            "hours" | "hour" => age(3600),
            "days" | "day" => age(86_400),
            "" => Err(ValueError::problem(format!("'{written}' has no unit"))),
            _ => Err(ValueError::plain()),
        }
    }
}

impl fmt::Display for RetentionPolicy {
    /// The `keep_logical_logs` value that reads back as this policy (CFG-16): `true`, `7 days`,
    /// `100M size`; an `Age` that is not a whole number of hours is rounded up to whole hours.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RetentionPolicy::KeepAll => f.write_str("true"),
            RetentionPolicy::KeepRecoveryOnly => f.write_str("false"),
            RetentionPolicy::Files(n) => write!(f, "{n} files"),
            RetentionPolicy::Size(n) => write!(f, "{} size", format_size(n)),
            RetentionPolicy::Txs(n) => write!(f, "{n} txs"),
            RetentionPolicy::Age(d) => {
                let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
                if nanos == 0 && secs % 86_400 == 0 {
                    write!(f, "{} days", secs / 86_400)
                } else {
                    let whole = secs / 3600;
                    let partial = nanos > 0 || secs % 3600 > 0;
                    write!(f, "{} hours", whole + u64::from(partial))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{error, keep, parse, DAY};
    use crate::config::EXPECT_KEEP_LOGS;

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
    fn cfg_16_format_retention_reads_back() {
        use RetentionPolicy::*;
        assert_eq!(RetentionPolicy::default().to_string(), "7 days");
        assert_eq!(Age(Duration::from_secs(36 * 3600)).to_string(), "36 hours");
        assert_eq!(Age(Duration::from_secs(0)).to_string(), "0 days");
        // Not a whole number of hours: rounded up.
        assert_eq!(Age(Duration::from_secs(90 * 60)).to_string(), "2 hours");
        assert_eq!(Age(Duration::from_millis(1)).to_string(), "1 hours");
        assert_eq!(Size(100 << 20).to_string(), "100M size");
        assert_eq!(Files(3).to_string(), "3 files");
        assert_eq!(Txs(1024).to_string(), "1024 txs");
    }
}
