//! What every service does first: open its database (own schema or own
//! file) and run its migrations, and bind its gRPC listener, so start-up reads
//! the same everywhere and tests can pass port 0. The bus is made once per
//! process (`open_bus`) and shared by the services in it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::bus::{AmqpBus, LocalBus, SharedBus};
use crate::db::{Database, DbError, Migrations};
use crate::{Config, grpc};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot open the in-process bus")]
    Bus(#[from] crate::bus::BusError),
    #[error("cannot create the data folder {0}")]
    DataDir(std::path::PathBuf, #[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a usable service URL: {1}")]
    Target(String, String),
    #[error(
        "`serve {0}` runs one service per process, which needs a shared broker: set GUICHET_AMQP_URL (or use `guichet up`)"
    )]
    NeedsBroker(String),
}

/// RabbitMQ when `GUICHET_AMQP_URL` is set; otherwise the in-process bus in
/// `<data_dir>/bus.sqlite`, which only one process may open.
pub async fn open_bus(config: &Config, name: &str) -> Result<SharedBus, StartError> {
    match &config.amqp_url {
        Some(url) => Ok(Arc::new(AmqpBus::new(url, name, config.delivery_limit))),
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
            let bus =
                LocalBus::open(&config.data_dir.join("bus.sqlite"), config.delivery_limit).await?;
            Ok(Arc::new(bus))
        }
    }
}

/// Where a service takes its gRPC calls: an address to bind now, or a
/// listener bound already, so that a peer started before it can be told its
/// address (the call centre and the desk each call the other).
pub enum Listen {
    Addr(SocketAddr),
    Bound(TcpListener),
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Listen::Addr(addr)
    }
}

impl From<TcpListener> for Listen {
    fn from(listener: TcpListener) -> Self {
        Listen::Bound(listener)
    }
}

/// A service's database and listener, ready to build on.
pub struct Foundations {
    pub db: Database,
    pub listener: TcpListener,
    pub grpc_addr: SocketAddr,
}

pub async fn prepare(
    config: &Config,
    schema: &str,
    migrations: &Migrations,
    listen: impl Into<Listen>,
) -> Result<Foundations, StartError> {
    let db = Database::open(
        config.database_url.as_deref(),
        &config.data_dir,
        schema,
        config.db_pool_size,
        migrations,
    )
    .await?;
    let (listener, grpc_addr) = match listen.into() {
        Listen::Addr(addr) => grpc::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?,
        Listen::Bound(listener) => {
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: ([0, 0, 0, 0], 0).into(),
                source,
            })?;
            (listener, addr)
        }
    };
    Ok(Foundations {
        db,
        listener,
        grpc_addr,
    })
}

/// What the services of one process share: the bus, the clock, the shutdown
/// signal and the figures for `/metrics`.
#[derive(Clone)]
pub struct Shared {
    pub bus: SharedBus,
    pub clock: crate::clock::SharedClock,
    pub shutdown: crate::shutdown::Shutdown,
    pub metrics: crate::Metrics,
}

/// A started service: its real gRPC address, its database, and its tasks.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub db: Database,
    pub tasks: JoinSet<()>,
}
