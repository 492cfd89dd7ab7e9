//! [`Inline`]: where a simulated host's blocking work runs (IO-10).

use online_backup::io::{Blocking, BoxFuture};

/// Blocking work in simulation (IO-10): run at once, on the host's one thread, so that nothing
/// escapes the seed (SIM-11).
#[derive(Debug)]
pub struct Inline;

impl Blocking for Inline {
    fn run(&self, job: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        job();
        Box::pin(std::future::ready(()))
    }
}
