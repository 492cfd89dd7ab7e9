//! [`SimClock`]: the wall clock of every simulated host (IO-4, SIM-10).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use online_backup::io::Clock;

use crate::trace::Trace;

/// simulated time elapsed plus an offset shared by every host of the simulation, which
/// [`SimClock::advance`] moves forward, plus the host's own jumps (SIM-34), forward or back.
#[derive(Clone, Debug)]
pub struct SimClock {
    epoch: SystemTime,
    offset_ms: Arc<AtomicU64>,
    /// The host's own jumps in milliseconds, when this is a host's clock.
    own_ms: Option<Arc<AtomicI64>>,
    /// Where the simulated time comes from ([`Trace::now`]), so the clock and the trace agree.
    trace: Trace,
}

impl SimClock {
    pub(super) fn new(
        epoch: SystemTime,
        offset_ms: Arc<AtomicU64>,
        own_ms: Option<Arc<AtomicI64>>,
        trace: Trace,
    ) -> SimClock {
        SimClock {
            epoch,
            offset_ms,
            own_ms,
            trace,
        }
    }

    /// Moves the clock forward by `by` in one step (days, to age logs for retention).
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// How far the clock has been advanced in total.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        let shared = self.epoch + self.trace.now() + self.offset();
        let own = self.own_ms.as_ref().map_or(0, |o| o.load(Ordering::SeqCst));
        if own >= 0 {
            shared + Duration::from_millis(own as u64)
        } else {
            shared - Duration::from_millis(own.unsigned_abs())
        }
    }
    /// Simulated time plus the shared advances, which only go forward; a host's own jumps
    /// (SIM-34) move its wall clock, never this (IO-15).
    fn monotonic(&self) -> Duration {
        self.trace.now() + self.offset()
    }
}
