//! The database server: opens (or creates) the store, serves the HTTP API, and closes the store
//! cleanly on shutdown (spec/server.md).
//!
//! Owns: start-up order, binding, the accept loop adapters, and shutdown.
//! Must not touch: sockets, files or the clock except through the `Env` it is given, so the same
//! code runs under turmoil. Signals are the binary's business: it hands in a shutdown future.
//!
//! Submodules: `db` (the store shared between requests).

pub mod db;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backup::service::{self, ServiceContext};
use crate::config::Config;
use crate::io::{Env, Listener, Stream};
use crate::retention::Pins;
use crate::store::format::FormatVersion;
use crate::store::meta::META_FILE;
use crate::store::{Store, StoreError, StoreOptions};
use db::Database;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(io::Error),
}

/// What the server needs to start.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub store_dir: PathBuf,
    pub config: Config,
    /// The random half of the store id, used only if the store must be created (ST-11). The
    /// binary draws it from the operating system, a simulation from its seed.
    pub create_random: u64,
}

/// The addresses the server bound, reported once it is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub http: SocketAddr,
    /// The backup service's address; `None` when `online_backup_enabled=false` (BK-3).
    pub backup: Option<SocketAddr>,
}

/// Opens the store in `dir`, or creates it when `dir` is missing or empty (SRV-1).
pub fn open_or_create(
    env: &Env,
    dir: &Path,
    options: &StoreOptions,
    create_random: u64,
) -> Result<Store, StoreError> {
    let has_meta = env
        .fs
        .metadata(&dir.join(META_FILE))
        .map_err(|e| StoreError::io(format!("reading {}", dir.display()), e))?
        .is_some();
    if has_meta {
        Store::open(env.fs.clone(), env.clock.clone(), dir, options)
    } else {
        tracing::info!(store = %dir.display(), "creating a new store");
        Store::create(
            env.fs.clone(),
            env.clock.clone(),
            dir,
            options,
            FormatVersion::CURRENT,
            create_random,
        )
    }
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
    let db = Arc::new(Database::new(store));

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
        tracing::info!("online_backup_enabled=false: the backup service is off");
        None
    };
    let bound = Bound {
        http: listener.local_addr().map_err(ServerError::Http)?,
        backup: match &backup_listener {
            Some(l) => Some(l.local_addr().map_err(ServerError::Http)?),
            None => None,
        },
    };
    let backup_task = backup_listener.map(|l| {
        tokio::spawn(service::serve(
            l,
            ServiceContext {
                db: db.clone(),
                pins: pins.clone(),
                env: env.clone(),
            },
        ))
    });
    on_ready(&bound);

    let app = crate::http::with_date_header(crate::http::router(db.clone()), env.clock.clone());
    let served = axum::serve(NetListener(listener), app)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(task) = backup_task {
        // Closes every backup connection; their clients see the close and fail cleanly.
        task.abort();
        let _ = task.await;
    }
    tracing::info!("shutting down: checkpointing the store");
    let closed = db.close();
    served.map_err(ServerError::Http)?;
    closed?;
    Ok(())
}

/// Serves axum through the `Net` seam's listener.
struct NetListener(Box<dyn Listener>);

impl axum::serve::Listener for NetListener {
    type Io = Box<dyn Stream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(conn) => return conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum's own listener does,
                    // rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
