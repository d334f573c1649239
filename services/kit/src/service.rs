//! What every service does first: connect its database (own schema) and run
//! its migrations, make its bus, and bind its gRPC listener, so start-up reads
//! the same everywhere and tests can pass port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::bus::AmqpBus;
use crate::{Config, db, grpc};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("GUICHET_DATABASE_URL and GUICHET_AMQP_URL must be set for the {service} service")]
    MissingBackends { service: &'static str },
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A service's connections and listener, ready to build on.
pub struct Foundations {
    pub pool: PgPool,
    pub bus: Arc<AmqpBus>,
    pub listener: TcpListener,
    pub grpc_addr: SocketAddr,
}

pub async fn prepare(
    config: &Config,
    service: &'static str,
    schema: &str,
    migrations: &Migrator,
    addr: SocketAddr,
) -> Result<Foundations, StartError> {
    let (Some(db_url), Some(amqp_url)) = (&config.database_url, &config.amqp_url) else {
        return Err(StartError::MissingBackends { service });
    };
    let pool = db::connect(db_url, schema, config.db_pool_size).await?;
    db::migrate(&pool, migrations).await?;
    let bus = Arc::new(AmqpBus::new(amqp_url, service, config.delivery_limit));
    let (listener, grpc_addr) = grpc::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok(Foundations {
        pool,
        bus,
        listener,
        grpc_addr,
    })
}

/// A started service: its real gRPC address, its pool, and its tasks.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub pool: PgPool,
    pub tasks: JoinSet<()>,
}
