//! [`Inline`]: where a simulated host's blocking work runs (IO-10).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use online_backup::io::{Blocking, BoxFuture};

/// Blocking work in simulation (IO-10): run at once, on the host's one thread, so that nothing
/// escapes the seed (SIM-11). With a latency, the caller then waits a drawn number of
/// milliseconds of simulated time, as for work that takes time on a disk (SIM-23).
#[derive(Debug, Default)]
pub struct Inline {
    /// At most this many milliseconds per job (0: none), and the state of the draws.
    max_ms: u64,
    draws: AtomicU64,
}

impl Inline {
    /// Jobs that take up to `max_ms` milliseconds each, drawn from `seed`.
    pub fn with_latency(max_ms: u64, seed: u64) -> Inline {
        Inline {
            max_ms,
            draws: AtomicU64::new(seed | 1),
        }
    }

    /// The next draw of a xorshift generator: the same sequence for the same seed.
    fn draw(&self) -> u64 {
        let mut x = self.draws.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.draws.store(x, Ordering::Relaxed);
        x
    }
}

impl Blocking for Inline {
    fn run(&self, job: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        job();
        if self.max_ms == 0 {
            return Box::pin(std::future::ready(()));
        }
        let ms = self.draw() % (self.max_ms + 1);
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }
}
