//! Fault switches (SIM-23): each breaks one thing the backup's correctness rests on, so that a
//! test can show the simulations catch it. Test-only: without the `fault-switches` cargo
//! feature, which only the test targets enable (through the package's dev-dependency on itself),
//! [`on`] is a constant `false` and there is no way to turn a switch on, so a production build
//! (`cargo build`, `cargo install`) cannot break anything here.
//!
//! Owns: the list of switches and which one is on, per thread (a simulation runs on one thread,
//! and the runner runs separate simulations on separate threads).
//! Must not touch: anything else; the code a switch breaks asks [`on`] where it would break.

/// One thing to break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Switch {
    /// The client switches the pointer to a new generation without syncing its record files
    /// first (neither as each arrives nor when it writes the generation's metadata).
    SkipSyncBeforeSwitch,
    /// The server ships a full backup's transactions from C + 2 instead of C + 1.
    ShipFromCheckpointPlusTwo,
    /// The server stops shipping one transaction short of the last, and still ends at it.
    StopOneShort,
    /// Neither the client nor the server checks that an incremental's store id is theirs.
    SkipStoreIdCheck,
    /// The server does not check the digest at the backup's last tx (diverged backups).
    SkipDigestCheck,
    /// The server releases a full backup's pin as soon as it took it.
    ReleasePinEarly,
    /// A commit is acknowledged without the log's fsync.
    AckBeforeFsync,
    /// The client applies shipped transactions to its records without writing them to its
    /// log first.
    ApplyWithoutLogging,
}

impl Switch {
    pub const ALL: [Switch; 8] = [
        Switch::SkipSyncBeforeSwitch,
        Switch::ShipFromCheckpointPlusTwo,
        Switch::StopOneShort,
        Switch::SkipStoreIdCheck,
        Switch::SkipDigestCheck,
        Switch::ReleasePinEarly,
        Switch::AckBeforeFsync,
        Switch::ApplyWithoutLogging,
    ];
}

#[cfg(feature = "fault-switches")]
thread_local! {
    static ON: std::cell::Cell<Option<Switch>> = const { std::cell::Cell::new(None) };
}

/// Whether `switch` is on for this thread. Always `false` without the `fault-switches` feature.
#[inline]
pub fn on(switch: Switch) -> bool {
    #[cfg(feature = "fault-switches")]
    {
        ON.with(|on| on.get() == Some(switch))
    }
    #[cfg(not(feature = "fault-switches"))]
    {
        let _ = switch;
        false
    }
}

/// Turns `switch` on for this thread (`None`: all off). Only with the `fault-switches` feature.
#[cfg(feature = "fault-switches")]
pub fn set(switch: Option<Switch>) {
    ON.with(|on| on.set(switch));
}
