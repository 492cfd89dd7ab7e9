//! What the server scenarios (`server_crash`, `retention_time`) share: where the server host
//! keeps its store and serves HTTP, its configuration (parsed from properties text, as the
//! binary reads `neo4j.properties`), and waiting by polling shared state on simulated time.

use std::future::Future;
use std::time::Duration;

use online_backup::config::Config;

/// The server's host name.
pub const SERVER: &str = "server";
/// Where the server host keeps its store.
pub const STORE_DIR: &str = "/data/db";
/// The server's HTTP API, as clients dial it (the server binds its own name: SimNet binds the
/// unspecified address on that port).
pub const HTTP_ADDR: &str = "server:7474";
/// How often hosts look at the shared state they wait on.
pub const POLL: Duration = Duration::from_millis(1);

/// The server configuration: `extra` properties after the HTTP address, parsed the way the
/// server binary parses `neo4j.properties` (CFG-*). Panics on a value that does not parse: the
/// scenario wrote it.
pub fn config(extra: &str) -> Config {
    let text = format!("http_server={HTTP_ADDR}\n{extra}");
    let (config, warnings) =
        Config::parse(&text).unwrap_or_else(|e| panic!("scenario configuration {text:?}: {e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    config
}

/// Completes once `done` holds, looking every [`POLL`] of simulated time.
pub async fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(POLL).await;
    }
}

/// A future that completes once `done` holds: a shutdown signal for `server::run`.
pub fn when(done: impl FnMut() -> bool + Send + 'static) -> impl Future<Output = ()> + Send {
    wait_until(done)
}
