//! Log retention against a model (spec/retention.md): random runs of commits, rotations,
//! checkpoints, clock jumps and backup pins, under every form of `keep_logical_logs`. After each
//! rotation or checkpoint the model asks `files_to_prune` and deletes what it returns, as the
//! store does; after every step it checks that the kept files are exactly what the rule says,
//! computed here independently by deleting the oldest file while it, judged on its own, may go.

// RET-1 RET-2 RET-3 RET-4 RET-5 RET-6 RET-7 RET-8 RET-9 RET-10 RET-11 RET-12

use std::collections::BTreeSet;
use std::time::Duration;

use online_backup::retention::{
    files_to_prune, LogFile, PinGuard, Pins, PruneInput, RetentionPolicy, PIN_IDLE_TIMEOUT,
};
use proptest::prelude::*;

const MINUTE: u64 = 60 * 1000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// The bytes of a log file header (LOG-2).
const HEADER: u64 = 64;

#[derive(Clone, Debug)]
enum Step {
    /// A transaction of `bytes` bytes committed `after` ms after the previous step.
    Commit {
        after: u64,
        bytes: u64,
    },
    /// A new active file; with `checkpoint`, the checkpoint moves into it (as LOG-8 does).
    Rotate {
        checkpoint: bool,
    },
    /// The checkpoint moves to the active file.
    Checkpoint,
    /// The clock jumps forward (or back).
    Clock {
        forward: bool,
        by: u64,
    },
    /// Under an age policy of n, the clock moves forward to `delta` ms from the moment the first
    /// tx of the `which`-th file (modulo how many) turns n old: the boundary of RET-9.
    AgeBoundary {
        which: usize,
        delta: i64,
    },
    /// A backup pins the logs from `back` txs before the next tx (never before the oldest
    /// logged tx: a backup cannot pin what is gone).
    Pin {
        back: u64,
    },
    /// The backup of the `which`-th held pin (modulo how many) closes its connection.
    Release {
        which: usize,
    },
    Touch {
        which: usize,
    },
    /// The pin moves by `by` txs (back when negative: ignored, RET-12), never past the next tx.
    Advance {
        which: usize,
        by: i64,
    },
}

/// Times are whole minutes, so that a commit lands exactly on an age cutoff or exactly ten
/// minutes after a pin's last activity often enough to test the boundaries.
fn step() -> impl Strategy<Value = Step> {
    let minutes = |max: u64| (0..=max).prop_map(|m| m * MINUTE);
    prop_oneof![
        8 => (minutes(20), 20..500u64).prop_map(|(after, bytes)| Step::Commit { after, bytes }),
        3 => any::<bool>().prop_map(|checkpoint| Step::Rotate { checkpoint }),
        1 => Just(Step::Checkpoint),
        2 => prop_oneof![minutes(15), minutes(3 * 24 * 60)]
            .prop_map(|by| Step::Clock { forward: true, by }),
        1 => minutes(120).prop_map(|by| Step::Clock { forward: false, by }),
        1 => (any::<usize>(), -1..=1i64).prop_map(|(which, delta)| Step::AgeBoundary { which, delta }),
        2 => (0..30u64).prop_map(|back| Step::Pin { back }),
        1 => any::<usize>().prop_map(|which| Step::Release { which }),
        2 => any::<usize>().prop_map(|which| Step::Touch { which }),
        1 => (any::<usize>(), -5..10i64).prop_map(|(which, by)| Step::Advance { which, by }),
    ]
}

struct File {
    version: u64,
    prev_last_tx: u64,
    /// (tx id, commit time), in commit order.
    txs: Vec<(u64, u64)>,
    bytes: u64,
}

struct HeldPin {
    guard: PinGuard,
    from_tx: u64,
    last_active: u64,
    released: bool,
}

struct Model {
    policy: RetentionPolicy,
    files: Vec<File>,
    active_version: u64,
    recovery_version: u64,
    last_tx: u64,
    now: u64,
    pins: Pins,
    held: Vec<HeldPin>,
}

impl Model {
    fn new(policy: RetentionPolicy) -> Model {
        Model {
            policy,
            files: vec![File {
                version: 0,
                prev_last_tx: 0,
                txs: Vec::new(),
                bytes: HEADER,
            }],
            active_version: 0,
            recovery_version: 0,
            last_tx: 0,
            now: 30 * DAY,
            pins: Pins::new(),
            held: Vec::new(),
        }
    }

    /// RET-11 as the model reads it: every call on the pin table that is given the time first
    /// releases each pin last active more than ten minutes before it.
    fn release_idle(&mut self) {
        let timeout = PIN_IDLE_TIMEOUT.as_millis() as u64;
        for pin in &mut self.held {
            if self.now.saturating_sub(pin.last_active) > timeout {
                pin.released = true;
            }
        }
    }

    fn oldest_live_pin(&self) -> Option<u64> {
        self.held
            .iter()
            .filter(|p| !p.released)
            .map(|p| p.from_tx)
            .min()
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Commit { after, bytes } => {
                self.now += after;
                self.last_tx += 1;
                let active = self.files.last_mut().unwrap();
                active.txs.push((self.last_tx, self.now));
                active.bytes += bytes;
            }
            Step::Rotate { checkpoint } => {
                self.active_version += 1;
                self.files.push(File {
                    version: self.active_version,
                    prev_last_tx: self.last_tx,
                    txs: Vec::new(),
                    bytes: HEADER,
                });
                if checkpoint {
                    self.recovery_version = self.active_version;
                }
                self.prune();
            }
            Step::Checkpoint => {
                self.recovery_version = self.active_version;
                self.prune();
            }
            Step::Clock { forward, by } => {
                self.now = if forward {
                    self.now + by
                } else {
                    self.now.saturating_sub(by)
                };
            }
            Step::AgeBoundary { which, delta } => {
                if let RetentionPolicy::Age(age) = self.policy {
                    let file = &self.files[which % self.files.len()];
                    if let Some(&(_, t)) = file.txs.first() {
                        let boundary = t + age.as_millis() as u64;
                        self.now = self.now.max(boundary.saturating_add_signed(delta));
                    }
                }
            }
            Step::Pin { back } => {
                let oldest_logged = self.files[0].prev_last_tx + 1;
                let from_tx = (self.last_tx + 1).saturating_sub(back).max(oldest_logged);
                self.release_idle();
                let guard = self.pins.pin(from_tx, self.now);
                self.held.push(HeldPin {
                    guard,
                    from_tx,
                    last_active: self.now,
                    released: false,
                });
            }
            Step::Release { which } => {
                if !self.held.is_empty() {
                    let i = which % self.held.len();
                    drop(self.held.remove(i));
                }
            }
            Step::Touch { which } => {
                if !self.held.is_empty() {
                    self.release_idle();
                    let i = which % self.held.len();
                    let pin = &mut self.held[i];
                    pin.guard.touch(self.now);
                    if !pin.released {
                        pin.last_active = self.now;
                    }
                }
            }
            Step::Advance { which, by } => {
                if !self.held.is_empty() {
                    self.release_idle();
                    let i = which % self.held.len();
                    let pin = &mut self.held[i];
                    let to = pin.from_tx.saturating_add_signed(by).min(self.last_tx + 1);
                    pin.guard.advance(to, self.now);
                    if !pin.released {
                        pin.from_tx = pin.from_tx.max(to);
                        pin.last_active = self.now;
                    }
                }
            }
        }
    }

    /// What the store does after a rotation or checkpoint: ask, then delete oldest first.
    fn prune(&mut self) {
        self.release_idle();
        let pinned_from_tx = self.pins.oldest_pinned_tx(self.now);
        assert_eq!(
            pinned_from_tx,
            self.oldest_live_pin(),
            "RET-10: the oldest live pin"
        );
        let described: Vec<LogFile> = self
            .files
            .iter()
            .map(|f| LogFile {
                version: f.version,
                prev_last_tx: f.prev_last_tx,
                last_tx: f.prev_last_tx + f.txs.len() as u64,
                bytes: f.bytes,
                first_tx_millis: f.txs.first().map(|&(_, t)| t),
            })
            .collect();
        let got = files_to_prune(&PruneInput {
            files: &described,
            policy: self.policy,
            now_millis: self.now,
            recovery_version: self.recovery_version,
            pinned_from_tx,
        });
        let expected = self.expected_prune(pinned_from_tx);
        assert_eq!(got, expected, "the files to prune (RET-1)");
        let versions: Vec<u64> = self.files.iter().map(|f| f.version).collect();
        assert!(
            versions.starts_with(&got),
            "RET-1: {got:?} is not a prefix of {versions:?}"
        );
        self.files.drain(..got.len());
    }

    /// The rule as the brief words it: the oldest non-active file is deleted while it may go.
    fn expected_prune(&self, pinned_from_tx: Option<u64>) -> Vec<u64> {
        let mut kept: Vec<&File> = self.files.iter().collect();
        let mut deleted = Vec::new();
        while kept.len() > 1 && self.may_go(kept[0], &kept[1..], pinned_from_tx) {
            deleted.push(kept.remove(0).version);
        }
        deleted
    }

    /// Whether `file` may go, given the files after it (the active one last).
    fn may_go(&self, file: &File, newer: &[&File], pinned_from_tx: Option<u64>) -> bool {
        if file.version >= self.recovery_version {
            return false; // RET-2
        }
        if let Some(pin) = pinned_from_tx {
            // RET-3: a file whose last tx (its prev_last_tx if it holds none) is ≥ the pin.
            let last_tx = file.txs.last().map_or(file.prev_last_tx, |&(tx, _)| tx);
            if last_tx >= pin {
                return false;
            }
        }
        match self.policy {
            RetentionPolicy::KeepAll => false,
            RetentionPolicy::KeepRecoveryOnly => true,
            RetentionPolicy::Files(n) => newer.len() as u64 >= n,
            RetentionPolicy::Size(n) => newer.iter().map(|f| f.bytes).sum::<u64>() >= n,
            RetentionPolicy::Txs(n) => newer.iter().map(|f| f.txs.len() as u64).sum::<u64>() >= n,
            RetentionPolicy::Age(age) => {
                let age = age.as_millis() as u64;
                age == 0
                    || newer[0]
                        .txs
                        .first()
                        .is_some_and(|&(_, t)| t as u128 + (age as u128) < self.now as u128)
            }
        }
    }

    /// What must hold after every step.
    fn check(&self) {
        let versions: Vec<u64> = self.files.iter().map(|f| f.version).collect();
        assert_eq!(
            versions.last(),
            Some(&self.active_version),
            "RET-1: the active file is kept"
        );
        assert!(
            versions.windows(2).all(|w| w[1] == w[0] + 1),
            "RET-1: a gap in {versions:?}"
        );
        for w in self.files.windows(2) {
            assert_eq!(w[1].prev_last_tx, w[0].prev_last_tx + w[0].txs.len() as u64);
        }
        assert!(
            versions[0] <= self.recovery_version.min(self.active_version),
            "RET-2: recovery from {} needs a deleted file ({versions:?})",
            self.recovery_version
        );
        if let Some(from_tx) = self.oldest_live_pin() {
            let logged: BTreeSet<u64> = self
                .files
                .iter()
                .flat_map(|f| f.txs.iter().map(|&(tx, _)| tx))
                .collect();
            for tx in from_tx..=self.last_tx {
                assert!(logged.contains(&tx), "RET-3: pinned tx {tx} was deleted");
            }
        }
    }
}

fn run(policy: RetentionPolicy, steps: &[Step]) {
    let mut model = Model::new(policy);
    model.check();
    for step in steps {
        model.apply(step);
        model.check();
    }
    // Every held guard is dropped with the model; the table ends empty.
    let pins = model.pins.clone();
    drop(model);
    assert!(pins.is_empty(), "RET-10: dropping a guard releases its pin");
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(), 1..150)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn ret_6_files_policy_against_the_model(n in 0..6u64, steps in steps()) {
        run(RetentionPolicy::Files(n), &steps);
    }

    #[test]
    fn ret_7_size_policy_against_the_model(n in prop_oneof![Just(0u64), 1..4000u64], steps in steps()) {
        run(RetentionPolicy::Size(n), &steps);
    }

    #[test]
    fn ret_8_txs_policy_against_the_model(n in 0..25u64, steps in steps()) {
        run(RetentionPolicy::Txs(n), &steps);
    }

    #[test]
    fn ret_9_age_policy_against_the_model(hours in prop_oneof![Just(0u64), 1..96u64], steps in steps()) {
        run(RetentionPolicy::Age(Duration::from_secs(hours * 3600)), &steps);
    }

    #[test]
    fn ret_4_keep_all_against_the_model(steps in steps()) {
        run(RetentionPolicy::KeepAll, &steps);
    }

    #[test]
    fn ret_5_keep_recovery_only_against_the_model(steps in steps()) {
        run(RetentionPolicy::KeepRecoveryOnly, &steps);
    }
}

/// The model's own sanity: a run that must prune does, and a pin holds files back.
#[test]
fn ret_3_model_sanity_a_pin_holds_files_that_would_go() {
    let commit = Step::Commit {
        after: MINUTE,
        bytes: 100,
    };
    let rotate = Step::Rotate { checkpoint: true };
    let mut model = Model::new(RetentionPolicy::KeepRecoveryOnly);
    for step in [&commit, &rotate, &commit, &rotate] {
        model.apply(step);
        model.check();
    }
    assert_eq!(model.files.len(), 1, "false keeps only the active file");

    let mut model = Model::new(RetentionPolicy::KeepRecoveryOnly);
    model.apply(&commit);
    model.apply(&Step::Pin { back: 1 }); // pins tx 1 on
    for step in [&rotate, &commit, &rotate] {
        model.apply(step);
        model.check();
    }
    assert_eq!(
        model.files.len(),
        3,
        "the pin on tx 1 keeps file 0 and so the rest"
    );
    model.apply(&Step::Clock {
        forward: true,
        by: 11 * MINUTE,
    });
    model.apply(&Step::Checkpoint);
    model.check();
    assert_eq!(model.files.len(), 1, "the idle pin was released");
}
