//! Progress of the long phases (spec/cli.md, CLI-6; BK-44): which phases there are, and the one
//! progress bar the binaries draw for them on a terminal.
//!
//! Owns: the phases' names and units, and drawing (through `indicatif`) only when stdout is a
//! terminal. Must not touch: what the phases do. Library code reports progress through a
//! callback or an observer; only binaries create a [`Bar`].

/// A long phase a person may wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A full backup's store files arriving (bytes).
    Copy,
    /// Transactions applied to a backup (counted from the run's first).
    Apply,
    /// Verification's scan of every record (records).
    Verify,
    /// `restore` checking the backup before it copies (records).
    CheckBackup,
    /// `restore` copying the backup's files (bytes).
    CopyFiles,
    /// `restore` checking its copy (records).
    CheckCopy,
    /// `check` scanning a store (records).
    Check,
}

impl Phase {
    /// What the bar calls the phase.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Copy => "copying store files",
            Phase::Apply => "applying transactions",
            Phase::Verify => "verifying",
            Phase::CheckBackup => "checking the backup",
            Phase::CopyFiles => "copying the backup",
            Phase::CheckCopy => "checking the copy",
            Phase::Check => "checking the store",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Phase::Copy | Phase::CopyFiles => {
                "{msg}: {bytes} of {total_bytes} at {bytes_per_sec}, ETA {eta} {wide_bar}"
            }
            Phase::Apply => "{msg}: {human_pos} of {human_len} transactions, ETA {eta} {wide_bar}",
            Phase::Verify | Phase::CheckBackup | Phase::CheckCopy | Phase::Check => {
                "{msg}: {human_pos} of {human_len} records, ETA {eta} {wide_bar}"
            }
        }
    }
}

/// A progress bar on stdout when it is a terminal, and nothing otherwise: plain output stays
/// whole lines, without carriage returns or escape sequences (BK-44).
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
    /// The phase the bar shows: a new phase gets a new bar with its own units.
    phase: Option<Phase>,
    /// Whether stdout is a terminal, asked once.
    on_terminal: bool,
}

impl Bar {
    /// A bar for stdout.
    pub fn stdout() -> Bar {
        Bar {
            bar: None,
            phase: None,
            on_terminal: std::io::IsTerminal::is_terminal(&std::io::stdout()),
        }
    }

    /// `done` of `total` of `phase`. The first frame of a phase already has its units, rate
    /// and ETA (never a bare `0/57615198`).
    pub fn update(&mut self, phase: Phase, done: u64, total: u64) {
        if !self.on_terminal {
            return;
        }
        let len = total.max(done);
        if self.phase != Some(phase) {
            self.finish();
            let style = indicatif::ProgressStyle::with_template(phase.template())
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(len),
                indicatif::ProgressDrawTarget::stdout(),
            )
            .with_style(style)
            .with_message(phase.describe());
            self.bar = Some(bar);
            self.phase = Some(phase);
        }
        if let Some(bar) = &self.bar {
            if bar.length() != Some(len) {
                bar.set_length(len);
            }
            bar.set_position(done);
        }
    }

    /// Prints a whole line on stdout, above the bar when one is drawn.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout(), "{line}");
            }
        }
    }

    /// Clears the bar (before a summary line).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.phase = None;
    }
}
