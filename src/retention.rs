//! Log retention: which logical log files may be deleted, and the pins running backups hold.
//!
//! Owns: the `keep_logical_logs` policy as a value, the pruning decision (a pure function over
//! a description of the log files), and the pin table.
//! Must not touch: files or the clock. The store describes its log files, asks this module which
//! to delete, and deletes them; every time comes in as milliseconds from the injected clock.
//! Specified in `spec/retention.md` (RET-1 .. RET-12 here, RET-13 .. RET-15 the store's part).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The `keep_logical_logs` policy (spec/retention.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionPolicy {
    /// `true`: never delete a log file.
    KeepAll,
    /// `false`: keep only what recovery (and pinned backups) need.
    KeepRecoveryOnly,
    /// `<n> files`: at least n newer files, the active one counted.
    Files(u64),
    /// `<n> size`: the newer files hold at least n bytes.
    Size(u64),
    /// `<n> txs`: the newer files hold at least n transactions.
    Txs(u64),
    /// `<n> hours|days`: the next file's first transaction is older than now − n.
    Age(Duration),
}

impl Default for RetentionPolicy {
    /// `7 days`, the brief's default.
    fn default() -> Self {
        RetentionPolicy::Age(Duration::from_secs(7 * 24 * 3600))
    }
}

/// One log file as the store describes it, oldest first; the last one is the active file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogFile {
    pub version: u64,
    /// Last tx before this file's first entry (the header's `prev_last_tx`, LOG-2).
    pub prev_last_tx: u64,
    /// Last tx in this file (= the next file's `prev_last_tx`; for the active file, the store's
    /// last tx). Equal to `prev_last_tx` when the file holds no transaction.
    pub last_tx: u64,
    /// The file's length, header included.
    pub bytes: u64,
    /// Commit time (ms since the Unix epoch, LOG-5) of the file's first transaction; `None` when
    /// it holds none.
    pub first_tx_millis: Option<u64>,
}

impl LogFile {
    /// How many transactions the file holds.
    pub fn txs(&self) -> u64 {
        self.last_tx.saturating_sub(self.prev_last_tx)
    }
}

/// What the pruning decision looks at (RET-1).
#[derive(Clone, Copy, Debug)]
pub struct PruneInput<'a> {
    /// The store's log files, oldest first, consecutive versions; the last is the active file.
    pub files: &'a [LogFile],
    pub policy: RetentionPolicy,
    /// Now, from the injected clock (ms since the Unix epoch).
    pub now_millis: u64,
    /// The durable checkpoint's log version: this file and newer are needed by recovery (RET-2).
    pub recovery_version: u64,
    /// The oldest tx a running backup still needs (it must stay in the logs), if any (RET-3):
    /// `Pins::oldest_pinned_tx`.
    pub pinned_from_tx: Option<u64>,
}

/// The versions to delete (RET-1): always a prefix of `input.files` (oldest first, never leaving
/// a gap), never the active file, never a file recovery needs (RET-2) or a pin holds (RET-3), and
/// each one only while the files after it still satisfy the policy (RET-4 .. RET-9). The store
/// deletes them in the order given. Pure: reads no clock and touches no file.
pub fn files_to_prune(input: &PruneInput) -> Vec<u64> {
    let files = input.files;
    debug_assert!(
        files.windows(2).all(|w| w[0].version < w[1].version),
        "log files must be listed oldest first"
    );
    let Some((_active, non_active)) = files.split_last() else {
        return Vec::new();
    };
    non_active
        .iter()
        .enumerate()
        .take_while(|&(i, file)| may_go(input, file, &files[i + 1..]))
        .map(|(_, file)| file.version)
        .collect()
}

/// Whether `file` may be deleted, given the files after it (`newer`, never empty: it ends with
/// the active file).
fn may_go(input: &PruneInput, file: &LogFile, newer: &[LogFile]) -> bool {
    // RET-2: recovery replays from the checkpoint's file on.
    if file.version >= input.recovery_version {
        return false;
    }
    // RET-3: a running backup still needs the txs from the pin on.
    if input.pinned_from_tx.is_some_and(|pin| file.last_tx >= pin) {
        return false;
    }
    newer_files_satisfy(input.policy, newer, input.now_millis)
}

/// Whether `newer` (the files after the candidate, the active one last) still satisfy the policy
/// without the candidate (RET-4 .. RET-9).
fn newer_files_satisfy(policy: RetentionPolicy, newer: &[LogFile], now_millis: u64) -> bool {
    match policy {
        RetentionPolicy::KeepAll => false,
        RetentionPolicy::KeepRecoveryOnly => true,
        RetentionPolicy::Files(n) => newer.len() as u64 >= n,
        RetentionPolicy::Size(n) => {
            newer
                .iter()
                .fold(0u64, |sum, f| sum.saturating_add(f.bytes))
                >= n
        }
        RetentionPolicy::Txs(n) => {
            newer
                .iter()
                .fold(0u64, |sum, f| sum.saturating_add(f.txs()))
                >= n
        }
        RetentionPolicy::Age(max_age) => {
            let max_age_millis = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
            if max_age_millis == 0 {
                return true;
            }
            let Some(cutoff) = now_millis.checked_sub(max_age_millis) else {
                return false;
            };
            newer[0].first_tx_millis.is_some_and(|t| t < cutoff)
        }
    }
}

/// How long a pin may go without activity before it is released (RET-11).
pub const PIN_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The pins running backups hold on the logs (RET-10 .. RET-12). Cloning shares the table.
#[derive(Clone, Debug, Default)]
pub struct Pins {
    table: Arc<Mutex<PinTable>>,
}

#[derive(Debug, Default)]
struct PinTable {
    next_id: u64,
    /// Live pins by id; an id is never reused.
    pins: BTreeMap<u64, Pin>,
}

#[derive(Clone, Copy, Debug)]
struct Pin {
    from_tx: u64,
    /// The last time the pin was taken, touched or advanced: a monotonic reading
    /// (`Clock::monotonic_millis`, RET-11), which no wall-clock step moves.
    last_active_millis: u64,
}

impl PinTable {
    /// Releases every pin idle for more than `PIN_IDLE_TIMEOUT` at `now_millis` (RET-11).
    fn release_idle(&mut self, now_millis: u64) {
        let timeout = PIN_IDLE_TIMEOUT.as_millis() as u64;
        self.pins
            .retain(|_, pin| now_millis.saturating_sub(pin.last_active_millis) <= timeout);
    }
}

impl Pins {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, PinTable> {
        // The table is consistent after every statement, so a panic elsewhere cannot poison it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pins the logs from `from_tx` on (that tx and every later one must stay in the logs) until
    /// the guard is dropped or the pin goes idle (RET-10, RET-11).
    pub fn pin(&self, from_tx: u64, now_millis: u64) -> PinGuard {
        let mut table = self.lock();
        table.release_idle(now_millis);
        let id = table.next_id;
        table.next_id += 1;
        table.pins.insert(
            id,
            Pin {
                from_tx,
                last_active_millis: now_millis,
            },
        );
        PinGuard {
            pins: self.clone(),
            id,
        }
    }

    /// The oldest pinned tx among live pins (RET-10); pins idle for more than
    /// `PIN_IDLE_TIMEOUT` are released here (RET-11).
    pub fn oldest_pinned_tx(&self, now_millis: u64) -> Option<u64> {
        let mut table = self.lock();
        table.release_idle(now_millis);
        table.pins.values().map(|pin| pin.from_tx).min()
    }

    /// How many pins are held, as of the last call that was given the time (idle pins are
    /// released only by a call that is told the time).
    pub fn len(&self) -> usize {
        self.lock().pins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A running backup's pin (RET-10); dropping it releases the pin.
#[derive(Debug)]
pub struct PinGuard {
    pins: Pins,
    id: u64,
}

impl PinGuard {
    /// Marks the pin active (the backup connection made progress). A pin already released for
    /// idleness stays released (RET-11).
    pub fn touch(&self, now_millis: u64) {
        let mut table = self.pins.lock();
        table.release_idle(now_millis);
        if let Some(pin) = table.pins.get_mut(&self.id) {
            pin.last_active_millis = now_millis;
        }
    }

    /// Moves the pin forward (the backup no longer needs txs before `from_tx`) and marks it
    /// active; a pin never moves back (RET-12).
    pub fn advance(&self, from_tx: u64, now_millis: u64) {
        let mut table = self.pins.lock();
        table.release_idle(now_millis);
        if let Some(pin) = table.pins.get_mut(&self.id) {
            pin.from_tx = pin.from_tx.max(from_tx);
            pin.last_active_millis = now_millis;
        }
    }

    /// Whether the pin still holds: not released for idleness as of the last call that was given
    /// the time (RET-11). A backup whose pin was released may find its logs gone.
    pub fn is_live(&self) -> bool {
        self.pins.lock().pins.contains_key(&self.id)
    }
}

impl Drop for PinGuard {
    /// Releases the pin: the backup connection closed (RET-10).
    fn drop(&mut self) {
        self.pins.lock().pins.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600 * 1000;
    const DAY: u64 = 24 * HOUR;

    /// A log of files `0..sizes.len()` where file `i` holds `txs[i]` transactions, each file
    /// `bytes[i]` long, its first tx committed at `first[i]`.
    fn log(txs: &[u64], bytes: &[u64], first: &[Option<u64>]) -> Vec<LogFile> {
        let mut prev = 0;
        (0..txs.len())
            .map(|i| {
                let file = LogFile {
                    version: i as u64,
                    prev_last_tx: prev,
                    last_tx: prev + txs[i],
                    bytes: bytes[i],
                    first_tx_millis: first[i],
                };
                prev = file.last_tx;
                file
            })
            .collect()
    }

    /// `n` files of 10 txs and 1000 bytes each, the first tx of file `i` at day `i`.
    fn uniform(n: usize) -> Vec<LogFile> {
        let first: Vec<_> = (0..n as u64).map(|i| Some(i * DAY)).collect();
        log(&vec![10; n], &vec![1000; n], &first)
    }

    fn prune(files: &[LogFile], policy: RetentionPolicy) -> Vec<u64> {
        prune_at(files, policy, 100 * DAY)
    }

    fn prune_at(files: &[LogFile], policy: RetentionPolicy, now_millis: u64) -> Vec<u64> {
        files_to_prune(&PruneInput {
            files,
            policy,
            now_millis,
            recovery_version: files.last().map_or(0, |f| f.version),
            pinned_from_tx: None,
        })
    }

    fn days(n: u64) -> RetentionPolicy {
        RetentionPolicy::Age(Duration::from_secs(n * 24 * 3600))
    }

    #[test]
    fn ret_1_empty_input_and_active_only_prune_nothing() {
        assert!(prune(&[], RetentionPolicy::KeepRecoveryOnly).is_empty());
        assert!(prune(&uniform(1), RetentionPolicy::KeepRecoveryOnly).is_empty());
    }

    #[test]
    fn ret_1_never_the_active_file_even_if_recovery_would_allow_it() {
        let files = uniform(3);
        let input = PruneInput {
            files: &files,
            policy: RetentionPolicy::KeepRecoveryOnly,
            now_millis: 100 * DAY,
            recovery_version: 99,
            pinned_from_tx: None,
        };
        assert_eq!(files_to_prune(&input), vec![0, 1]);
    }

    #[test]
    fn ret_1_stops_at_the_first_file_that_may_not_go() {
        // File 1 may not go (its next file, 2, holds no tx, RET-9); file 2 could, but going
        // would leave a gap.
        let files = log(
            &[5, 5, 0, 5, 0],
            &[100; 5],
            &[Some(0), Some(DAY), None, Some(2 * DAY), None],
        );
        assert_eq!(prune_at(&files, days(1), 100 * DAY), vec![0]);
    }

    #[test]
    fn ret_2_recovery_needs_the_checkpoint_file_and_newer() {
        let files = uniform(5);
        for recovery_version in 0..6 {
            let input = PruneInput {
                files: &files,
                policy: RetentionPolicy::KeepRecoveryOnly,
                now_millis: 100 * DAY,
                recovery_version,
                pinned_from_tx: None,
            };
            let expected: Vec<u64> = (0..recovery_version.min(4)).collect();
            assert_eq!(
                files_to_prune(&input),
                expected,
                "recovery_version {recovery_version}"
            );
        }
    }

    #[test]
    fn ret_3_a_file_holding_a_pinned_tx_stays() {
        // Files hold txs 1..=10, 11..=20, 21..=30, 31..=40 (active).
        let files = uniform(4);
        let pruned_with_pin = |pin| {
            files_to_prune(&PruneInput {
                files: &files,
                policy: RetentionPolicy::KeepRecoveryOnly,
                now_millis: 100 * DAY,
                recovery_version: 3,
                pinned_from_tx: Some(pin),
            })
        };
        assert_eq!(pruned_with_pin(0), Vec::<u64>::new());
        assert_eq!(pruned_with_pin(1), Vec::<u64>::new());
        assert_eq!(pruned_with_pin(10), Vec::<u64>::new());
        assert_eq!(pruned_with_pin(11), vec![0]);
        assert_eq!(pruned_with_pin(21), vec![0, 1]);
        assert_eq!(pruned_with_pin(31), vec![0, 1, 2]);
        assert_eq!(pruned_with_pin(1000), vec![0, 1, 2]);
    }

    #[test]
    fn ret_3_a_file_without_transactions_holds_no_pinned_tx() {
        // File 1 holds no tx (prev_last_tx = last_tx = 5); a pin from tx 6 keeps file 2 only.
        let files = log(&[5, 0, 5, 0], &[100; 4], &[Some(0), None, Some(0), None]);
        let input = PruneInput {
            files: &files,
            policy: RetentionPolicy::KeepRecoveryOnly,
            now_millis: 0,
            recovery_version: 3,
            pinned_from_tx: Some(6),
        };
        assert_eq!(files_to_prune(&input), vec![0, 1]);
    }

    #[test]
    fn ret_4_true_keeps_every_file() {
        assert!(prune(&uniform(6), RetentionPolicy::KeepAll).is_empty());
    }

    #[test]
    fn ret_5_false_keeps_only_what_recovery_needs() {
        assert_eq!(
            prune(&uniform(4), RetentionPolicy::KeepRecoveryOnly),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn ret_6_files_counts_newer_files_with_the_active_one() {
        let files = uniform(5);
        assert_eq!(prune(&files, RetentionPolicy::Files(1)), vec![0, 1, 2, 3]);
        assert_eq!(prune(&files, RetentionPolicy::Files(2)), vec![0, 1, 2]);
        assert_eq!(prune(&files, RetentionPolicy::Files(4)), vec![0]);
        assert!(prune(&files, RetentionPolicy::Files(5)).is_empty());
        assert!(prune(&files, RetentionPolicy::Files(50)).is_empty());
    }

    #[test]
    fn ret_6_zero_files_behaves_like_false() {
        assert_eq!(
            prune(&uniform(5), RetentionPolicy::Files(0)),
            prune(&uniform(5), RetentionPolicy::KeepRecoveryOnly)
        );
    }

    #[test]
    fn ret_7_size_counts_the_bytes_of_the_newer_files() {
        // Newer files of file 0: 300 + 64 + 500 bytes; of file 1: 564; of file 2: 500.
        let files = log(&[1, 1, 0, 1], &[1000, 300, 64, 500], &[Some(0); 4]);
        assert_eq!(prune(&files, RetentionPolicy::Size(864)), vec![0]);
        assert_eq!(prune(&files, RetentionPolicy::Size(865)), Vec::<u64>::new());
        assert_eq!(prune(&files, RetentionPolicy::Size(564)), vec![0, 1]);
        assert_eq!(prune(&files, RetentionPolicy::Size(500)), vec![0, 1, 2]);
        assert_eq!(prune(&files, RetentionPolicy::Size(0)), vec![0, 1, 2]);
        assert_eq!(
            prune(&files, RetentionPolicy::Size(u64::MAX)),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn ret_8_txs_counts_the_transactions_of_the_newer_files() {
        // Txs per file: 4, 3, 0, 2 (active). Newer of file 0: 5; of 1: 2; of 2: 2.
        let files = log(&[4, 3, 0, 2], &[100; 4], &[Some(0), Some(0), None, Some(0)]);
        assert_eq!(prune(&files, RetentionPolicy::Txs(5)), vec![0]);
        assert_eq!(prune(&files, RetentionPolicy::Txs(6)), Vec::<u64>::new());
        assert_eq!(prune(&files, RetentionPolicy::Txs(2)), vec![0, 1, 2]);
        assert_eq!(prune(&files, RetentionPolicy::Txs(3)), vec![0]);
        assert_eq!(prune(&files, RetentionPolicy::Txs(0)), vec![0, 1, 2]);
    }

    #[test]
    fn ret_8_an_empty_active_file_counts_no_transaction() {
        let files = log(&[4, 0], &[100, 64], &[Some(0), None]);
        assert!(prune(&files, RetentionPolicy::Txs(1)).is_empty());
        assert_eq!(prune(&files, RetentionPolicy::Txs(0)), vec![0]);
    }

    #[test]
    fn ret_9_age_looks_at_the_next_files_first_transaction() {
        // First txs at days 0, 1, 2, 3, 4; now = day 10.
        let files = uniform(5);
        let now = 10 * DAY;
        // days(7): the cutoff is day 3; file 2's next file starts at day 3, not older.
        assert_eq!(prune_at(&files, days(7), now), vec![0, 1]);
        assert_eq!(prune_at(&files, days(9), now), Vec::<u64>::new());
        assert_eq!(prune_at(&files, days(8), now), vec![0]);
        assert_eq!(prune_at(&files, days(1), now), vec![0, 1, 2, 3]);
        let hours = |n: u64| RetentionPolicy::Age(Duration::from_secs(n * 3600));
        assert_eq!(prune_at(&files, hours(7 * 24), now), vec![0, 1]);
    }

    #[test]
    fn ret_9_older_than_is_strict() {
        // File 1's first tx is exactly 7 days before now: not older than now − 7 days.
        let files = uniform(3);
        assert!(prune_at(&files, days(7), 8 * DAY).is_empty());
        assert_eq!(prune_at(&files, days(7), 8 * DAY + 1), vec![0]);
    }

    #[test]
    fn ret_9_a_next_file_without_transactions_keeps_the_file() {
        let files = log(&[5, 0, 5], &[100; 3], &[Some(0), None, Some(0)]);
        assert!(prune_at(&files, days(1), 100 * DAY).is_empty());
        let files = log(&[5, 0], &[100, 64], &[Some(0), None]);
        assert!(prune_at(&files, days(1), 100 * DAY).is_empty());
    }

    #[test]
    fn ret_9_a_clock_behind_the_transactions_keeps_everything() {
        // now before the txs, and now earlier than now − n can express (before the epoch).
        let files = uniform(4);
        assert!(prune_at(&files, days(1), DAY / 2).is_empty());
        assert!(prune_at(&files, days(1), 0).is_empty());
        assert!(prune_at(&files, RetentionPolicy::Age(Duration::MAX), u64::MAX).is_empty());
    }

    #[test]
    fn ret_9_zero_age_behaves_like_false() {
        let files = log(&[5, 0, 5], &[100; 3], &[Some(50 * DAY), None, None]);
        assert_eq!(prune_at(&files, days(0), 0), vec![0, 1]);
        let sub_millisecond = RetentionPolicy::Age(Duration::from_micros(999));
        assert_eq!(prune_at(&files, sub_millisecond, 0), vec![0, 1]);
    }

    #[test]
    fn ret_10_the_oldest_live_pin_wins_and_dropping_releases() {
        let pins = Pins::new();
        assert!(pins.is_empty());
        assert_eq!(pins.oldest_pinned_tx(0), None);
        let a = pins.pin(20, 0);
        let b = pins.pin(10, 0);
        let shared = pins.clone();
        let c = shared.pin(30, 0);
        assert_eq!(pins.len(), 3);
        assert_eq!(pins.oldest_pinned_tx(0), Some(10));
        drop(b);
        assert_eq!(pins.oldest_pinned_tx(0), Some(20));
        drop(a);
        assert_eq!(pins.oldest_pinned_tx(0), Some(30));
        drop(c);
        assert_eq!(pins.oldest_pinned_tx(0), None);
        assert!(pins.is_empty());
    }

    #[test]
    fn ret_10_two_pins_on_one_tx_are_independent() {
        let pins = Pins::new();
        let a = pins.pin(5, 0);
        let b = pins.pin(5, 0);
        drop(a);
        assert_eq!(pins.oldest_pinned_tx(0), Some(5));
        assert!(b.is_live());
    }

    #[test]
    fn ret_11_a_pin_idle_for_more_than_ten_minutes_is_released() {
        let timeout = PIN_IDLE_TIMEOUT.as_millis() as u64;
        assert_eq!(timeout, 10 * 60 * 1000);
        let pins = Pins::new();
        let t0 = 1_000_000;
        let guard = pins.pin(7, t0);
        assert_eq!(pins.oldest_pinned_tx(t0 + timeout), Some(7));
        assert!(guard.is_live());
        assert_eq!(pins.oldest_pinned_tx(t0 + timeout + 1), None);
        assert!(!guard.is_live());
        assert_eq!(pins.len(), 0);
        // Released for good: touching or advancing does not bring it back.
        guard.touch(t0 + timeout + 2);
        guard.advance(9, t0 + timeout + 2);
        assert_eq!(pins.oldest_pinned_tx(t0 + timeout + 2), None);
        drop(guard);
        assert!(pins.is_empty());
    }

    #[test]
    fn ret_11_touch_keeps_a_pin_alive() {
        let timeout = PIN_IDLE_TIMEOUT.as_millis() as u64;
        let pins = Pins::new();
        let guard = pins.pin(7, 0);
        guard.touch(timeout);
        guard.touch(2 * timeout);
        assert_eq!(pins.oldest_pinned_tx(3 * timeout), Some(7));
        // A touch that comes too late does not revive it.
        guard.touch(4 * timeout + 1);
        assert_eq!(pins.oldest_pinned_tx(4 * timeout + 1), None);
    }

    #[test]
    fn ret_11_a_clock_going_back_idles_no_pin() {
        let pins = Pins::new();
        let _guard = pins.pin(7, 10 * DAY);
        assert_eq!(pins.oldest_pinned_tx(0), Some(7));
    }

    #[test]
    fn ret_11_any_call_given_the_time_releases_idle_pins() {
        let timeout = PIN_IDLE_TIMEOUT.as_millis() as u64;
        let pins = Pins::new();
        let idle = pins.pin(1, 0);
        let busy = pins.pin(2, 0);
        busy.touch(timeout);
        assert!(idle.is_live());
        busy.touch(timeout + 1);
        assert!(!idle.is_live());
        assert!(busy.is_live());
        assert_eq!(pins.len(), 1);
    }

    #[test]
    fn ret_12_advance_moves_forward_only_and_counts_as_activity() {
        let timeout = PIN_IDLE_TIMEOUT.as_millis() as u64;
        let pins = Pins::new();
        let guard = pins.pin(10, 0);
        guard.advance(15, timeout);
        assert_eq!(pins.oldest_pinned_tx(timeout), Some(15));
        guard.advance(12, 2 * timeout);
        assert_eq!(pins.oldest_pinned_tx(2 * timeout), Some(15));
        assert_eq!(pins.oldest_pinned_tx(3 * timeout), Some(15));
        assert_eq!(pins.oldest_pinned_tx(3 * timeout + 1), None);
    }
}
