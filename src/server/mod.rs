//! The database server: opens (or creates) the store, serves the HTTP API, and closes the store
//! cleanly on shutdown (spec/server.md).
//!
//! Owns: start-up order, binding, the accept loop adapters, and shutdown.
//! Must not touch: sockets, files or the clock except through the `Env` it is given, so the same
//! code runs under turmoil. Signals are the binary's business: it hands in a shutdown future.
//!
//! Submodules: `http` (the HTTP API: routes, JSON shapes, status codes; no sockets) and
//! `tx_body` (a transaction's body read into ops, within the request's limits).

pub mod http;
mod tx_body;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::backup::service::{self, ServiceContext};
use crate::backup::tls::{self, ServerTls, TlsSetupError};
use crate::config::Config;
use crate::db::Database;
use crate::io::{Clock, Env, Listener};
use crate::retention::Pins;
use crate::store::format::FormatVersion;
use crate::store::layout::POINTER_FILE;
use crate::store::meta::META_FILE;
use crate::store::{Store, StoreError, StoreOptions};
use http::HttpLimits;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0} holds files but no store (no neostore.meta), so the server will neither open nor create a store there")]
    NotAStoreDirectory(String),
    #[error("{0} is a file, not a directory, so the server cannot open or create a store there")]
    NotADirectory(String),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(io::Error),
    /// The backup port's TLS files cannot be used (SEC-2).
    #[error("{0}")]
    Tls(#[from] TlsSetupError),
}

/// What the server needs to start.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub store_dir: PathBuf,
    pub config: Config,
    /// The random half of the store id, used only if the store must be created (ST-11). The
    /// binary draws it from the operating system, a simulation from its seed.
    pub create_random: u64,
    /// The bounds of the HTTP API (HTTP-8, HTTP-9, SRV-8); the binary takes the defaults.
    pub http: HttpLimits,
}

/// The addresses the server bound, reported once it is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub http: SocketAddr,
    /// The backup service's address; `None` when `online_backup_enabled=false` (BK-3).
    pub backup: Option<SocketAddr>,
}

/// Opens the store in `dir`, or creates it when `dir` is missing or empty (SRV-1); refuses a
/// file, or a directory holding files but no store, without touching it (SRV-6).
pub fn open_or_create(
    env: &Env,
    dir: &Path,
    options: &StoreOptions,
    create_random: u64,
) -> Result<Store, ServerError> {
    let read_err = |e| StoreError::io(format!("reading {}", dir.display()), e);
    match env.fs.metadata(dir).map_err(read_err)? {
        Some(m) if !m.is_dir => {
            return Err(ServerError::NotADirectory(dir.display().to_string()));
        }
        Some(_) => {
            // A backup directory has its store in the generation its pointer names (BK-31).
            for name in [META_FILE, POINTER_FILE] {
                if env
                    .fs
                    .metadata(&dir.join(name))
                    .map_err(read_err)?
                    .is_some()
                {
                    return Ok(Store::open(
                        env.fs.clone(),
                        env.clock.clone(),
                        dir,
                        options,
                    )?);
                }
            }
        }
        None => {}
    }
    let store = Store::create(
        env.fs.clone(),
        env.clock.clone(),
        dir,
        options,
        FormatVersion::CURRENT,
        create_random,
    )
    .map_err(|e| match e {
        StoreError::NotEmpty(_) => ServerError::NotAStoreDirectory(dir.display().to_string()),
        e => ServerError::Store(e),
    })?;
    tracing::info!("created a new store in {}", dir.display());
    Ok(store)
}

/// Runs the server until `shutdown` completes, then closes the store with a checkpoint.
/// `on_ready` is called once, with the bound addresses, when requests can be served.
pub async fn run(
    env: Env,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Bound),
) -> Result<(), ServerError> {
    let config = &options.config;
    // The TLS files are read before the store is touched, as the configuration is (SRV-4).
    let backup_tls = match config.backup_tls() {
        Some(settings) if config.online_backup_enabled => {
            Some(Arc::new(ServerTls::load(&env, &settings)?))
        }
        _ => None,
    };
    let pins = Pins::new();
    let store_options = StoreOptions {
        log_rotation_threshold: config.logical_log_rotation_threshold,
        retention: config.keep_logical_logs,
        pins: pins.clone(),
    };
    let store = open_or_create(
        &env,
        &options.store_dir,
        &store_options,
        options.create_random,
    )?;
    let db = Database::new(store, env.blocking.clone());

    let http_addr = config.http_server.clone();
    let listener = env
        .net
        .bind(&http_addr)
        .await
        .map_err(|source| ServerError::Bind {
            what: "the HTTP API (http_server)",
            addr: http_addr.clone(),
            source,
        })?;
    let backup_listener = if config.online_backup_enabled {
        let address = &config.online_backup_server;
        let (l, _) = service::bind(&env, address)
            .await
            .map_err(|source| ServerError::Bind {
                what: "the backup service (online_backup_server)",
                addr: address.to_string(),
                source,
            })?;
        Some(l)
    } else {
        tracing::info!("the backup service is off: online_backup_enabled is false");
        None
    };
    let bound = Bound {
        http: listener.local_addr().map_err(ServerError::Http)?,
        backup: match &backup_listener {
            Some(l) => Some(l.local_addr().map_err(ServerError::Http)?),
            None => None,
        },
    };
    let backup_task = backup_listener.zip(bound.backup).map(|(l, at)| {
        tokio::spawn(service::serve(
            tls::listener(l, backup_tls, at),
            ServiceContext {
                db: db.clone(),
                pins: pins.clone(),
                env: env.clone(),
                limits: service::ServiceLimits::default(),
            },
        ))
    });
    on_ready(&bound);

    let limits = options.http;
    let app = http::router(db.clone(), env.blocking.clone(), limits).layer(
        axum::middleware::map_response_with_state(env.clock.clone(), stamp_date),
    );
    serve(listener, app, limits, shutdown).await;
    if let Some(task) = backup_task {
        // Closes every backup connection; their clients see the close and fail cleanly.
        task.abort();
        let _ = task.await;
    }
    tracing::info!("shutting down: checkpointing and closing the store");
    db.close()?;
    Ok(())
}

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` completes, then stops accepting
/// and lets the connections finish their requests for at most the shutdown grace, after which it
/// drops them (SRV-2, SRV-8).
///
/// A connection that brings no whole request head within the head timeout is closed (hyper's
/// header read timeout, which runs from the connection's start and from each answer: it is the
/// idle timeout too), and at most `max_connections` are served at once; the others wait in the
/// listen queue, holding no descriptor of this process (HTTP-8).
///
/// This is hyper driven directly rather than `axum::serve`, for one reason: hyper stamps every
/// answer with a `Date` header read from the system clock, which no seam controls, so two
/// simulated runs of one seed would send different bytes (SIM-1). Its automatic header is off and
/// [`stamp_date`] writes the header from the injected clock instead (IO-4). Its timer is tokio's,
/// which a simulation drives.
async fn serve(
    mut listener: Box<dyn Listener>,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut at_limit = false;
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        if slots.available_permits() == 0 && !at_limit {
            tracing::warn!(
                "serving {} HTTP connections, the most it serves at once; more wait until one closes",
                limits.max_connections
            );
        }
        at_limit = slots.available_permits() == 0;
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            stream = accept(&mut *listener) => stream,
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .auto_date_header(false)
            .timer(TokioTimer::new())
            .header_read_timeout(limits.head_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "an HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let grace = limits.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        let open = connections.len();
        tracing::warn!(
            "{open} HTTP connection(s) still busy {} after shutdown began; closing them",
            crate::units::duration(grace)
        );
    }
    // Whatever is left (a request half-sent, an answer not read) is dropped: its connection
    // closes, and a commit it started finishes before the store is closed (it holds the lock).
    connections.shutdown().await;
}

/// The next connection. A failed accept (out of file descriptors and the like) is logged and
/// retried a second later, as axum's own listener does, rather than spinning.
async fn accept(listener: &mut dyn Listener) -> Box<dyn crate::io::Stream> {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => return stream,
            Err(e) => {
                tracing::warn!("accepting an HTTP connection failed ({e}); retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Sets the `Date` header of an answer from the injected clock (RFC 9110 asks a server with a
/// clock to send one).
async fn stamp_date(State(clock): State<Arc<dyn Clock>>, mut response: Response) -> Response {
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(clock.now())) {
        response.headers_mut().insert(header::DATE, date);
    }
    response
}
