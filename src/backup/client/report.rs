//! What a run tells people: the [`Observer`] that hears it as it happens, the [`Summary`] of a
//! finished backup and its one line (BK-9), and the facts `--json` reports on failure (BK-43).

use std::time::Duration;

use crate::backup::decision::{FullReason, ServerInfo};
use crate::backup::manifest::Scrubbed;
use crate::digest::Digest;
use crate::progress::Phase;
use crate::store::format::FormatVersion;
use crate::store::meta::StoreId;
use crate::units;

/// Which kind of backup was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Full,
    Incremental,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
        }
    }
}

/// The outcome of verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// Skipped (`-verify false`).
    Skipped,
    /// The records touched and the digest (incremental, `-verify true`).
    Touched,
    /// A full scan of every record and the recomputed digest.
    FullScan,
    /// The stream's own checks only: every file's and transaction's checksum, the tx chain and
    /// the end digest the last transaction carries; the records are checked when the backup
    /// is restored (an object store target, OBJ-6).
    Stream,
}

impl Verified {
    /// The name `--json` reports (BK-43).
    pub fn name(self) -> &'static str {
        match self {
            Verified::Skipped => "skipped",
            Verified::Touched => "records_written",
            Verified::FullScan => "full_scan",
            Verified::Stream => "stream_checks",
        }
    }

    /// What the summary line says (BK-9).
    pub fn describe(self) -> &'static str {
        match self {
            Verified::Skipped => "not verified (-verify false)",
            Verified::Touched => "verified (records written and digest)",
            Verified::FullScan => "verified (full scan and digest)",
            Verified::Stream => "checked as it streamed (checksums, tx chain, digest); the records are checked on restore",
        }
    }
}

/// What a finished backup reports (the final summary, BK-9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub kind: Kind,
    /// Why this kind, in one line.
    pub reason: String,
    /// Why this kind, typed (`None` for an incremental backup).
    pub full_reason: Option<FullReason>,
    pub store_id: StoreId,
    pub format: FormatVersion,
    /// The backup's last tx before this run (`None` when it had none).
    pub from_tx: Option<u64>,
    /// For a full backup, the checkpoint the store files were copied at (BK-21).
    pub checkpoint_tx: Option<u64>,
    /// The backup's last tx now.
    pub to_tx: u64,
    /// The digest at `to_tx` (equal to the server's, BK-20).
    pub digest: Digest,
    /// Bytes received from the server in this run: files, transactions and framing.
    pub bytes: u64,
    pub transactions: u64,
    pub duration: Duration,
    pub verified: Verified,
    /// Whether this full backup was taken because an incremental one was impossible (BK-11).
    pub fell_back: bool,
    /// What this incremental's scrub read (MF-11); `None` when it did not scrub.
    pub scrubbed: Option<Scrubbed>,
}

impl Summary {
    /// The summary line (BK-9): kind, store, tx range, transactions, bytes, duration, rate,
    /// verification and digest, in human units.
    pub fn describe(&self) -> String {
        let secs = self.duration.as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        };
        let range = match (self.kind, self.from_tx, self.checkpoint_tx) {
            (Kind::Incremental, Some(from), _) if from == self.to_tx => format!(
                "nothing new since tx {from} ({})",
                transactions(self.transactions)
            ),
            (Kind::Incremental, from, _) => format!(
                "tx {} to {} ({})",
                from.unwrap_or(0) + 1,
                self.to_tx,
                transactions(self.transactions)
            ),
            (Kind::Full, _, Some(checkpoint)) if self.transactions == 0 => format!(
                "at tx {} (store files at checkpoint tx {checkpoint}, no transactions after it)",
                self.to_tx
            ),
            (Kind::Full, _, checkpoint) => format!(
                "at tx {} (store files at checkpoint tx {}, then {})",
                self.to_tx,
                checkpoint.unwrap_or(0),
                transactions(self.transactions)
            ),
        };
        format!(
            "done: {} backup of store {}, {range}, {} in {:.2} s ({}), {}, digest {}",
            self.kind.name(),
            self.store_id,
            units::bytes(self.bytes),
            secs,
            units::rate(rate),
            self.verified.describe(),
            self.digest
        )
    }
}

/// `n transactions`, singular for one.
pub fn transactions(n: u64) -> String {
    if n == 1 {
        "1 transaction".to_string()
    } else {
        format!("{n} transactions")
    }
}

/// The backup the target held before a run, as `--json` reports it (BK-43).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupFacts {
    pub store_id: StoreId,
    pub format: FormatVersion,
    /// The last tx recovery would reach (the checkpoint's when the logs could not be read).
    pub last_tx: u64,
}

/// Receives the account of a run as it happens.
pub trait Observer {
    /// One line of what the tool is doing or decided (which mode and why, fallbacks).
    fn line(&mut self, text: &str);
    /// Progress of a long phase: `done` of `total` units (bytes or transactions, as the
    /// phase says). `total` may grow as the phase learns more.
    fn progress(&mut self, _phase: Phase, _done: u64, _total: u64) {}
    /// What the server said about itself in the handshake.
    fn server(&mut self, _addr: &str, _server: &ServerInfo) {}
    /// What the target held before the run.
    fn existing(&mut self, _backup: &BackupFacts) {}
}

/// An observer that keeps the lines (tests, simulations).
#[derive(Debug, Default)]
pub struct Lines(pub Vec<String>);

impl Observer for Lines {
    fn line(&mut self, text: &str) {
        self.0.push(text.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incremental(bytes: u64, duration: Duration) -> Summary {
        Summary {
            kind: Kind::Incremental,
            reason: String::new(),
            full_reason: None,
            store_id: StoreId {
                created_millis: 1,
                random: 2,
            },
            format: FormatVersion::CURRENT,
            from_tx: Some(4),
            checkpoint_tx: None,
            to_tx: 7,
            digest: Digest([1; 32]),
            bytes,
            transactions: 3,
            duration,
            verified: Verified::Touched,
            fell_back: false,
            scrubbed: None,
        }
    }

    // BK-9: the summary line's rate is the bytes received over the run's duration; a run that
    // took no measurable time reports no rate, not an infinite one.
    #[test]
    fn bk_9_the_summary_rate_is_the_bytes_over_the_duration() {
        let line = incremental(3 << 20, Duration::from_secs(2)).describe();
        let rate = units::rate((3 << 20) as f64 / 2.0);
        assert!(
            line.contains("tx 5 to 7 (3 transactions)")
                && line.contains(&format!("in 2.00 s ({rate})")),
            "BK-9: {line}"
        );
        let line = incremental(1000, Duration::ZERO).describe();
        let none = units::rate(0.0);
        assert!(
            line.contains(&format!("in 0.00 s ({none})")),
            "BK-9: {line}"
        );
    }
}
