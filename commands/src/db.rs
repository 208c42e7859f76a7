//! Connecting to PostgreSQL. With no settings, harden uses `postgres://postgres@127.0.0.1:5432/harden`
//! and creates that database if it is missing, then migrates it.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// A pooled connection idle for longer than this is pinged before it is handed out; one used more
/// recently is handed out as it is. sqlx pings every connection by default, which doubles the round
/// trips of every query under load, when connections are never idle for long. A connection that
/// broke anyway (PostgreSQL restarted between two queries) fails its query, which answers 503 as an
/// outage does, and the pool replaces it.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

pub struct DbConfig<'a> {
    pub url: &'a str,
    pub max_connections: u32,
    /// Every harden connection gets this `idle_in_transaction_session_timeout`: a transaction left
    /// open holds back the snapshot horizon of the whole cluster, which stalls every follower.
    pub idle_in_transaction_timeout: Duration,
}

pub fn connect_options(cfg: &DbConfig<'_>) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(cfg.url).context("HARDEN_DATABASE_URL is not a valid PostgreSQL URL")?;
    let timeout_ms = cfg.idle_in_transaction_timeout.as_millis().max(1).to_string();
    Ok(options.options([("idle_in_transaction_session_timeout", timeout_ms.as_str())]))
}

/// Creates the database named in the URL if it does not exist (connecting to the `postgres`
/// maintenance database of the same server), then opens a pool to it.
pub async fn connect(cfg: &DbConfig<'_>) -> anyhow::Result<PgPool> {
    let options = connect_options(cfg)?;
    ensure_database(&options).await?;
    PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_BEFORE_PING {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .context("Failed to connect to PostgreSQL")
}

async fn ensure_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    if name == "postgres" {
        return Ok(());
    }
    let maintenance = options.clone().database("postgres");
    let mut conn = PgConnection::connect_with(&maintenance)
        .await
        .with_context(|| format!("Failed to connect to PostgreSQL at {}:{}", options.get_host(), options.get_port()))?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&create).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another instance created it between our check and our CREATE: fine. (A CREATE racing
            // another CREATE reports the unique index of pg_database, 23505, rather than 42P04.)
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e).context("Failed to create the harden database"),
        }
    }
    conn.close().await.ok();
    Ok(())
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Applies pending migrations. sqlx holds an advisory lock while it migrates, so instances starting
/// together do not collide.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("Failed to run database migrations")
}
