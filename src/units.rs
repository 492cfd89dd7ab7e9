//! Quantities as people read and write them: sizes in binary units (`1.5 GiB`), rates, durations
//! (`1m 30s`), and sizes as configuration and flags take them (`25M`). Every line a person reads uses these, never a raw byte count or a Rust debug
//! rendering of a `Duration` (spec/cli.md, CLI-5).
//!
//! Owns: formatting, and reading the sizes and durations that people write, for the
//! configuration (spec/config.md CFG-14) and the command lines alike: one syntax for each.
//! Must not touch: files, the network or the clock.

use std::time::Duration;

/// Text from a peer or a file, safe to print to a terminal: control characters (escape
/// sequences, carriage returns, newlines) and the bidirectional overrides that can reorder what
/// a reader sees are written as `\u{..}` escapes, so the text cannot move the cursor, rewrite
/// a line or pass for a line of this tool's own (spec/backup.md BK-54).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A time given in milliseconds since the Unix epoch, as an HTTP date in UTC
/// (`Wed, 02 Dec 2026 07:01:04 GMT`).
pub fn date_millis(millis: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis))
}

/// A time given in milliseconds since the Unix epoch, in RFC 3339 UTC with milliseconds
/// (`2026-12-02T07:01:04.532Z`): what `backup-info` prints and `--until-time` takes (PIT-9).
pub fn time_millis(millis: u64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis),
    )
    .to_string()
}

/// Reads a time in RFC 3339 UTC (`2026-12-02T07:01:04.532Z`, `2026-12-02T07:01:04Z`, or with a
/// space for the `T` and no zone, still UTC) as milliseconds since the Unix epoch.
pub fn parse_time_millis(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("'{s}' is not a time like 2026-12-02T07:01:04Z or 2026-12-02T07:01:04.532Z (UTC)")
    };
    let t = humantime::parse_rfc3339_weak(s.trim()).map_err(|_| bad())?;
    let since = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?;
    u64::try_from(since.as_millis()).map_err(|_| bad())
}

/// `n` bytes in binary units: `512 B`, `1.5 KiB`, `2.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A rate of `bytes_per_sec`: `12.5 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec.max(0.0) as u64))
}

/// A duration as an operator writes it: `500ms`, `30s`, `1.5s`, `5m`, `1h 2m`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        return match ms % 1000 {
            0 => format!("{secs}s"),
            _ => format!("{:.1}s", d.as_secs_f64()),
        };
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// Why [`parse_size`] refused a string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("not a size: expected <n>[k|M|G] (k = 1024)")]
    Malformed,
    #[error("{0} is too large (at most 18446744073709551615 bytes)")]
    TooLarge(String),
}

/// A size `<n>[k|M|G]` at the start of `s` (as in `7 days`, `100M size`): its value and the rest
/// of `s`.
pub fn parse_size_prefix(s: &str) -> Result<(u64, &str), SizeError> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(SizeError::Malformed);
    }
    let (number, rest) = s.split_at(digits);
    let (shift, rest) = match rest.as_bytes().first() {
        Some(b'k' | b'K') => (10, &rest[1..]),
        Some(b'm' | b'M') => (20, &rest[1..]),
        Some(b'g' | b'G') => (30, &rest[1..]),
        _ => (0, rest),
    };
    let written = &s[..s.len() - rest.len()];
    let too_large = || SizeError::TooLarge(written.to_string());
    let n: u64 = number.parse().map_err(|_| too_large())?;
    let scaled = n.checked_mul(1 << shift).ok_or_else(too_large)?;
    Ok((scaled, rest))
}

/// A size in bytes, `<n>[k|M|G]`: decimal digits and an optional binary multiplier (k = 1024,
/// M = 1024², G = 1024³, either case), nothing else (CFG-14). `0` is a size.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    match parse_size_prefix(s)? {
        (n, "") => Ok(n),
        _ => Err(SizeError::Malformed),
    }
}

/// A size as [`parse_size`] reads it, with the largest multiplier that keeps it exact:
/// `25M`, `1536k`, `1000`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 3] = [(30, "G"), (20, "M"), (10, "k")];
    if bytes == 0 {
        return "0".to_string();
    }
    for (shift, suffix) in UNITS {
        if bytes.trailing_zeros() >= shift {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Why [`parse_duration`] refused a string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration (e.g. 30s, 5m, 1h, 500ms)")]
    Malformed(String),
    #[error("`{0}` has an unknown unit (use ms, s, m or h)")]
    UnknownUnit(String),
}

/// A duration as an operator writes it on a command line (`-timeout`, BK-7): decimal digits and
/// a unit, `ms`, `s`, `m` or `h`, a bare number being seconds (`500ms`, `30s`, `5m`, `1h`).
/// Whitespace around it is ignored; minutes and hours that overflow saturate. Zero is a duration:
/// a flag that needs more says so itself.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| DurationError::Malformed(s.to_string()))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(DurationError::UnknownUnit(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_5_sizes_and_durations_in_human_units() {
        for (n, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (57_615_198, "54.9 MiB"),
            (1 << 30, "1.0 GiB"),
        ] {
            assert_eq!(bytes(n), text, "CLI-5: {n} bytes");
        }
        assert_eq!(rate(2.0 * 1048576.0), "2.0 MiB/s", "CLI-5");
        for (d, text) in [
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(3723), "1h 2m 3s"),
        ] {
            assert_eq!(duration(d), text, "CLI-5: {d:?}");
        }
    }

    #[test]
    fn cfg_14_sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("50M"), Ok(50 << 20));
        assert_eq!(parse_size("50m"), Ok(50 << 20));
        assert_eq!(parse_size("3G"), Ok(3 << 30));
        assert_eq!(parse_size("3g"), Ok(3 << 30));
        assert_eq!(parse_size("0G"), Ok(0));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("17179869183G"), Ok(17179869183 << 30));
        for bad in [
            "", "M", "25 M", " 25M", "25M ", "25MB", "25MiB", "1.5G", "-1", "+1", "1T", "0x10",
            "25MM",
        ] {
            assert_eq!(parse_size(bad), Err(SizeError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_size("17179869184G"),
            Err(SizeError::TooLarge("17179869184G".into()))
        );
        assert_eq!(
            parse_size("18446744073709551616").unwrap_err().to_string(),
            "18446744073709551616 is too large (at most 18446744073709551615 bytes)"
        );
        assert_eq!(
            SizeError::Malformed.to_string(),
            "not a size: expected <n>[k|M|G] (k = 1024)"
        );
        for (n, text) in [
            (0, "0"),
            (1000, "1000"),
            (1024, "1k"),
            (1536, "1536"),
            (3 << 19, "1536k"),
            (25 << 20, "25M"),
            (1 << 30, "1G"),
            (u64::MAX, "18446744073709551615"),
        ] {
            assert_eq!(format_size(n), text);
            assert_eq!(parse_size(text), Ok(n));
        }
    }

    #[test]
    fn durations_as_an_operator_writes_them() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("30", Duration::from_secs(30)),
            (" 5m ", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(d), "BK-7: {text:?}");
        }
        assert_eq!(
            parse_duration(&format!("{}h", u64::MAX)),
            Ok(Duration::from_secs(u64::MAX)),
            "BK-7: hours saturate"
        );
        for (text, message) in [
            ("", "`` is not a duration (e.g. 30s, 5m, 1h, 500ms)"),
            ("s", "`s` is not a duration (e.g. 30s, 5m, 1h, 500ms)"),
            ("-1s", "`-1s` is not a duration (e.g. 30s, 5m, 1h, 500ms)"),
            (
                "99999999999999999999s",
                "`99999999999999999999s` is not a duration (e.g. 30s, 5m, 1h, 500ms)",
            ),
            ("5x", "`5x` has an unknown unit (use ms, s, m or h)"),
            ("1.5s", "`1.5s` has an unknown unit (use ms, s, m or h)"),
            (" 5 m", "`5 m` has an unknown unit (use ms, s, m or h)"),
        ] {
            assert_eq!(
                parse_duration(text).unwrap_err().to_string(),
                message,
                "BK-7: {text:?}"
            );
        }
    }
}
