//! The trace of one simulation: every file operation, network message, commit and driver action
//! as an ordered `(simulated time, host, event)` record, folded into a running hash (SIM-6).
//!
//! A [`Trace`] belongs to one simulation (one seed of one scenario); it is never a process
//! global, so the test harness can run simulations on parallel threads. Seams record into it
//! directly ([`Trace::record`]); store commits reach it through a `tracing` layer
//! ([`dispatch`]) that the runner installs as the thread's default subscriber for the duration of
//! the run, so any commit on any simulated host is recorded without the scenario doing anything.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::Attributes;
use tracing::{Event, Id, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{filter, EnvFilter, Registry};

/// The `tracing` target of the store's commit events (one per committed transaction, with the
/// fields `tx_id` and `digest`).
pub const COMMIT_TARGET: &str = "online_backup::commit";

/// How many of the latest records a trace keeps to print when a run fails.
const TAIL: usize = 40;

/// FNV-1a, 64 bits: the trace hash and the short hash of data in write/read events.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Fnv64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Fnv64 {
        Fnv64(Self::OFFSET)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64::new()
    }
}

/// The FNV-1a hash of `bytes`.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    h.update(bytes);
    h.finish()
}

/// The ordered record of one simulation. Cloning gives another handle to the same trace.
#[derive(Clone, Default)]
pub struct Trace(Arc<Mutex<TraceState>>);

#[derive(Default)]
struct TraceState {
    hash: Fnv64,
    events: u64,
    /// The time of the latest record; used for records made outside any host, which turmoil
    /// gives no clock.
    last_time: Duration,
    /// Set while the driver crashes or starts a host: the simulation's time then. turmoil's
    /// per-host clock is only meaningful inside the host's tick; read during a crash (while
    /// the host's tasks are dropped) or a start, it mixes in real time.
    driver_time: Option<Duration>,
    /// The records made during a driver action, appended sorted when it ends: a crash drops the
    /// host's tasks (and with them its connections and files) in the order of tokio's task
    /// lists, which follows task ids that a process numbers across all its simulations, so it
    /// is not decided by the seed; sorted, the action's records are.
    during_driver: Option<Vec<(String, String)>>,
    /// The latest records as `(time, host, event)`, formatted only when printed: formatting
    /// every record (a float among them) cost more than the rest of the trace together.
    tail: VecDeque<(Duration, String, String)>,
    /// Every record, when asked for (the determinism check diffs two runs with it).
    all: Option<Vec<String>>,
    /// Print each record as it happens (`SIM_TRACE=1`).
    echo: bool,
    /// Per host, the record count just after its last commit event (SIM-31).
    last_commit: BTreeMap<String, u64>,
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.lock().unwrap();
        write!(f, "Trace({} events, {:016x})", s.events, s.hash.finish())
    }
}

/// One line of a printed trace.
fn format_record(time: Duration, host: &str, event: &str) -> String {
    format!("{:>10.6}s {host:<8} {event}", time.as_secs_f64())
}

impl Trace {
    pub fn new() -> Trace {
        let trace = Trace::default();
        trace.0.lock().unwrap().echo = std::env::var("SIM_TRACE").is_ok_and(|v| v == "1");
        trace
    }

    /// Keeps every record from now on, not only the tail (for diffing two runs).
    pub fn keep_all(&self) {
        self.0.lock().unwrap().all.get_or_insert_with(Vec::new);
    }

    /// Records `event` on `host` at [`Trace::now`].
    pub fn record(&self, host: &str, event: &str) {
        let mut s = self.0.lock().unwrap();
        if let Some(during) = &mut s.during_driver {
            during.push((host.to_string(), event.to_string()));
            return;
        }
        let time = s.now();
        s.append(time, host, event);
    }

    /// The current simulated time (since the simulation started): the driver's while it
    /// crashes or starts a host, else the running host's clock, else (outside any host) the
    /// time of the latest record (SIM-4).
    pub fn now(&self) -> Duration {
        self.0.lock().unwrap().now()
    }

    /// Runs `f` (a driver action: crash, start, drop of the simulation) with the trace's time
    /// fixed at `time`; the records it makes are appended sorted, in an order the seed decides
    /// (see `TraceState::during_driver`).
    pub fn at_driver_time<R>(&self, time: Duration, f: impl FnOnce() -> R) -> R {
        {
            let mut s = self.0.lock().unwrap();
            s.driver_time = Some(time);
            s.during_driver = Some(Vec::new());
        }
        let r = f();
        let mut s = self.0.lock().unwrap();
        let mut during = s.during_driver.take().unwrap_or_default();
        during.sort();
        for (host, event) in during {
            s.append(time, &host, &event);
        }
        s.driver_time = None;
        r
    }

    /// Records `event` at an explicit time (the driver passes `Sim::elapsed()`).
    pub fn record_at(&self, time: Duration, host: &str, event: &str) {
        self.0.lock().unwrap().append(time, host, event);
    }

    /// The running hash over every record so far (SIM-6).
    pub fn hash(&self) -> u64 {
        self.0.lock().unwrap().hash.finish()
    }

    /// How many records so far.
    pub fn events(&self) -> u64 {
        self.0.lock().unwrap().events
    }

    /// The record count just after the last commit event of `host`, if it committed at all:
    /// whether it committed after some record (SIM-31).
    pub fn last_commit(&self, host: &str) -> Option<u64> {
        self.0.lock().unwrap().last_commit.get(host).copied()
    }

    /// Notes that `host` just recorded a commit event.
    fn note_commit(&self, host: &str) {
        let mut s = self.0.lock().unwrap();
        if s.during_driver.is_none() {
            let at = s.events;
            s.last_commit.insert(host.to_string(), at);
        }
    }

    /// The latest records, oldest first, formatted for printing.
    pub fn tail(&self) -> Vec<String> {
        let s = self.0.lock().unwrap();
        s.tail
            .iter()
            .map(|(time, host, event)| format_record(*time, host, event))
            .collect()
    }

    /// Every record, if [`Trace::keep_all`] was called before the run.
    pub fn all(&self) -> Option<Vec<String>> {
        self.0.lock().unwrap().all.clone()
    }
}

impl TraceState {
    fn now(&self) -> Duration {
        self.driver_time
            .or_else(turmoil::sim_elapsed)
            .unwrap_or(self.last_time)
    }

    /// Folds one record into the hash: the time in nanoseconds (u64, little-endian), then the
    /// host and the event, each as a u32 little-endian length and its UTF-8 bytes (SIM-6).
    fn append(&mut self, time: Duration, host: &str, event: &str) {
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.hash.update(&nanos.to_le_bytes());
        self.hash.update(&(host.len() as u32).to_le_bytes());
        self.hash.update(host.as_bytes());
        self.hash.update(&(event.len() as u32).to_le_bytes());
        self.hash.update(event.as_bytes());
        self.events += 1;
        self.last_time = self.last_time.max(time);
        if self.echo || self.all.is_some() {
            let line = format_record(time, host, event);
            if self.echo {
                println!("{line}");
            }
            if let Some(all) = &mut self.all {
                all.push(line);
            }
        }
        // Reuse the evicted record's buffers: no allocation once the tail is full.
        let (mut old_host, mut old_event) = if self.tail.len() == TAIL {
            let (_, h, e) = self.tail.pop_front().expect("full");
            (h, e)
        } else {
            (String::new(), String::new())
        };
        old_host.clear();
        old_host.push_str(host);
        old_event.clear();
        old_event.push_str(event);
        self.tail.push_back((time, old_host, old_event));
    }
}

/// The subscriber the runner installs (thread-local, with `tracing::dispatcher::with_default`)
/// while a simulation runs: the commit layer feeding `trace`, plus, when `SIM_LOG` is set (an
/// `EnvFilter` directive such as `debug` or `online_backup=trace`), human-readable logs on the
/// test's output.
pub fn dispatch(trace: Trace) -> tracing::Dispatch {
    let log = std::env::var("SIM_LOG").ok().map(|directives| {
        tracing_subscriber::fmt::layer()
            .with_test_writer()
            .without_time()
            .with_target(true)
            .with_filter(EnvFilter::new(directives))
    });
    let commits = CommitLayer { trace }.with_filter(filter::filter_fn(|meta| {
        meta.target() == COMMIT_TARGET || is_turmoil_node_span(meta)
    }));
    tracing::Dispatch::new(Registry::default().with(commits).with(log))
}

/// turmoil wraps each host's tick in a span named `node` with the host's name in the field
/// `name`; the commit layer reads the host of a commit event from it.
fn is_turmoil_node_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.name() == "node" && meta.target().starts_with("turmoil")
}

/// Records each commit event as `commit <field>=<value> ...` (fields in their declared order,
/// the message last) on the host whose tick emitted it.
struct CommitLayer {
    trace: Trace,
}

/// The host name stored in a turmoil `node` span's extensions.
struct HostName(String);

impl<S> Layer<S> for CommitLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_turmoil_node_span(attrs.metadata()) {
            return;
        }
        // turmoil opens this span for every host at every step: read only its `name`.
        let mut name = NameField(None);
        attrs.record(&mut name);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(HostName(name.0.unwrap_or_default()));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != COMMIT_TARGET {
            return;
        }
        let host = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope
                    .from_root()
                    .find_map(|span| span.extensions().get::<HostName>().map(|h| h.0.clone()))
            })
            .unwrap_or_else(|| "?".to_string());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::from("commit");
        let mut message = None;
        for (k, v) in fields.pairs {
            if k == "message" {
                message = Some(v);
            } else {
                let _ = write!(line, " {k}={v}");
            }
        }
        if let Some(m) = message {
            let _ = write!(line, " {m:?}");
        }
        self.trace.record(&host, &line);
        self.trace.note_commit(&host);
    }
}

/// The `name` field of a span, as text.
struct NameField(Option<String>);

impl Visit for NameField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "name" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "name" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// Collects an event's or span's fields as text, in declaration order.
#[derive(Default)]
struct Fields {
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pairs
            .push((field.name().to_string(), value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pairs
            .push((field.name().to_string(), format!("{value:?}")));
    }
}
