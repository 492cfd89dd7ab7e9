//! The driver the single-host crash scenarios share (`log_crash`, `store_crash`): the host's
//! software runs one round of work per start, and the driver loses its power round after round,
//! at a random mutating filesystem operation or at rest, then lets one last round run undisturbed
//! (SIM-7). What a round does and what must hold after each start is the scenario's.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use rand::Rng;

use crate::runner::{HostCtx, ScenarioCtx, Stopped};

/// How a crash scenario's rounds go.
pub struct CrashRounds {
    pub host: &'static str,
    /// Rounds that may lose power, before the last, undisturbed one.
    pub rounds: u64,
    /// The chance that a round loses power at an operation rather than at rest (then crashes).
    pub loss_probability: f64,
    /// Before which of the round's mutating filesystem operations power may go.
    pub loss_at: LossAt,
    /// Driver patience, in ticks, for one round.
    pub max_steps: u64,
    /// What a round does, for the driver's message when it gives up waiting.
    pub what: &'static str,
}

/// Before which mutating filesystem operation of a round power goes: one drawn uniformly from
/// the first `n` of the round.
#[derive(Clone, Copy)]
pub enum LossAt {
    /// A fixed `n`.
    Within(u64),
    /// `n` is what the last round that ran to its end took (at least 20), `guess` before one did:
    /// power may go anywhere in a round, however long rounds turn out to be.
    RoundLength { guess: u64 },
}

/// Set by the host's software when its round is done, reset by the driver before each round.
#[derive(Clone, Default)]
pub struct RoundDone(Rc<Cell<bool>>);

impl RoundDone {
    /// The software's round is done: the driver may crash the host, or end.
    pub fn set(&self) {
        self.0.set(true);
    }

    fn is_set(&self) -> bool {
        self.0.get()
    }

    fn reset(&self) {
        self.0.set(false);
    }
}

/// Runs the rounds: `software` is the host's software, started afresh each round with the flag
/// it sets when its round is done. Fails when the last round does not run to its end.
pub fn run<F, Fut>(ctx: &mut ScenarioCtx, plan: &CrashRounds, software: F) -> turmoil::Result
where
    F: Fn(HostCtx, RoundDone) -> Fut + 'static,
    Fut: Future<Output = turmoil::Result> + 'static,
{
    let done = RoundDone::default();
    let mut software = Some(software);
    let mut loss_within = match plan.loss_at {
        LossAt::Within(n) => n,
        LossAt::RoundLength { guess } => guess,
    };
    for round in 0..=plan.rounds {
        done.reset();
        let ops_before = ctx.world.mutating_ops(plan.host);
        // SIM-7: most rounds lose power at a random operation (mid-write, mid-sync, mid-recovery);
        // the others at rest.
        if round < plan.rounds && ctx.rng.random_bool(plan.loss_probability) {
            let n = ctx.rng.random_range(1..=loss_within);
            ctx.power_loss_before_op(plan.host, n);
        }
        if let Some(software) = software.take() {
            let done = done.clone();
            ctx.host(plan.host, move |h| software(h, done.clone()));
        } else {
            ctx.restart(plan.host);
        }
        let d = done.clone();
        let stopped = ctx.run_until(plan.max_steps, plan.what, move || d.is_set())?;
        if let (LossAt::RoundLength { .. }, Stopped::Done) = (plan.loss_at, &stopped) {
            loss_within = (ctx.world.mutating_ops(plan.host) - ops_before).max(20);
        }
        if round < plan.rounds {
            ctx.crash(plan.host);
        } else if stopped != Stopped::Done {
            return Err(format!("the final, undisturbed round stopped with {stopped:?}").into());
        }
    }
    Ok(())
}
