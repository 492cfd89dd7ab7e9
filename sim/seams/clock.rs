//! [`SimClock`]: the wall clock of every simulated host (IO-4, SIM-10).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use online_backup::io::Clock;

use crate::trace::Trace;

/// simulated time elapsed plus an offset shared by every host of the simulation, which
/// [`SimClock::advance`] moves forward.
#[derive(Clone, Debug)]
pub struct SimClock {
    epoch: SystemTime,
    offset_ms: Arc<AtomicU64>,
    /// Where the simulated time comes from ([`Trace::now`]), so the clock and the trace agree.
    trace: Trace,
}

impl SimClock {
    pub(super) fn new(epoch: SystemTime, offset_ms: Arc<AtomicU64>, trace: Trace) -> SimClock {
        SimClock {
            epoch,
            offset_ms,
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
        self.epoch + self.trace.now() + self.offset()
    }
}
