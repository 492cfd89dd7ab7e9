//! Quantities as people read them: sizes in binary units (`1.5 GiB`), rates, durations
//! (`1m 30s`). Every line a person reads uses these, never a raw byte count or a Rust debug
//! rendering of a `Duration` (spec/cli.md, CLI-5).
//!
//! Owns: formatting only. Must not touch: parsing (sizes in configuration are `config`'s).

use std::time::Duration;

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
}
