//! The generic follower: reads committed events in order and feeds them to a [`Projector`],
//! exactly once each.
//!
//! Order and completeness: events are read in `(tx_id, global_id)` order, and only those whose
//! transaction id is below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still
//! running anywhere in the cluster. Every transaction below that bound has finished, so no event can
//! later appear behind the follower's checkpoint: a transaction that took an early `global_id` but
//! committed late is waited for, not skipped. The bound is evaluated in the same statement as the
//! read, and no writer ever waits on a follower.
//!
//! Exactly once: a batch, its read-model writes and the checkpoint update are one transaction. A
//! crash anywhere rolls all three back and the batch is read again. A batch holds the follower's
//! advisory lock (see [`lock_follower`]), so the same follower running in several instances never
//! applies a batch twice.
//!
//! Wake-up: a follower sleeps until the process's LISTEN connection sees a `pg_notify` (sent after
//! each commit) or the poll interval passes, whichever is first.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;

use harden_commands::Position;

/// An event as the followers see it.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The user whose request appended the event, from its metadata.
    pub fn actor(&self) -> Option<uuid::Uuid> {
        self.meta_uuid("actor_user_id")
    }

    /// The org the event belongs to, from its metadata.
    pub fn org(&self) -> Option<uuid::Uuid> {
        self.meta_uuid("org_id")
    }

    fn meta_uuid(&self, field: &str) -> Option<uuid::Uuid> {
        self.metadata.get(field)?.as_str()?.parse().ok()
    }
}

#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// The follower's unique name: the key of its checkpoint row.
    fn name(&self) -> &'static str;

    /// Applies one event inside the batch's transaction. An error rolls back the whole batch,
    /// checkpoint included; the batch is retried after a backoff.
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()>;
}

#[derive(Clone, Copy, Debug)]
pub struct FollowerConfig {
    pub batch_size: i64,
    pub poll_interval: Duration,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        Self { batch_size: 500, poll_interval: Duration::from_millis(500) }
    }
}

pub struct Follower<P> {
    pool: PgPool,
    projector: Arc<P>,
    config: FollowerConfig,
    position: watch::Sender<Position>,
    wake: watch::Receiver<u64>,
}

/// The columns every reader of the event store selects, in the shape [`decode`] reads.
pub(crate) const EVENT_COLUMNS: &str =
    "global_id, tx_id::text::bigint AS tx_id, aggregate_type, aggregate_id, sequence,
    event_type, event_version, payload, metadata, recorded_at";

fn select_batch() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE (tx_id, global_id) > ($1::bigint::text::xid8, $2)
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY tx_id, global_id
         LIMIT $3"
    )
}

impl<P: Projector> Follower<P> {
    pub fn new(pool: PgPool, projector: P, config: FollowerConfig, wake: watch::Receiver<u64>) -> Self {
        let (position, _) = watch::channel(Position::default());
        Self { pool, projector: Arc::new(projector), config, position, wake }
    }

    pub fn name(&self) -> &'static str {
        self.projector.name()
    }

    /// The last position this follower has seen committed, for read-your-writes waits.
    pub fn position(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    /// Creates the checkpoint row if this follower has never run.
    pub async fn register(&self) -> anyhow::Result<()> {
        register_checkpoint(&self.pool, self.name()).await
    }

    /// Runs until the task is aborted. Aborting mid-batch is safe: the batch's transaction is rolled
    /// back and read again by whoever runs next.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = match self.register().await {
                Ok(()) => self.step().await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(n) if n as i64 >= self.config.batch_size => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    crate::wake::wait(&mut self.wake, self.config.poll_interval).await;
                }
                Err(e) => {
                    tracing::warn!(follower = self.name(), error = format!("{e:#}"), "follower batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Applies one batch; returns how many events it applied.
    pub async fn step(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await.context("Failed to begin a follower batch")?;
        lock_follower(&mut tx, self.name()).await?;
        let (cp_tx, cp_gid): (i64, i64) =
            sqlx::query_as("SELECT tx_id::text::bigint, global_id FROM follower_checkpoints WHERE name = $1")
                .bind(self.name())
                .fetch_one(&mut *tx)
                .await
                .with_context(|| format!("Failed to read the checkpoint of {}", self.name()))?;
        let mut reached = Position { tx_id: cp_tx, global_id: cp_gid };
        let events = read_batch(&mut tx, reached, self.config.batch_size).await?;
        for event in &events {
            self.projector.apply(&mut tx, event).await.with_context(|| {
                format!(
                    "{} failed on event {}/{}#{}",
                    self.name(),
                    event.aggregate_type,
                    event.aggregate_id,
                    event.sequence
                )
            })?;
            reached = event.position;
        }
        if !events.is_empty() {
            save_checkpoint(&mut tx, self.name(), reached).await?;
        }
        tx.commit().await.context("Failed to commit a follower batch")?;
        self.position.send_if_modified(|p| {
            let advanced = reached > *p;
            if advanced {
                *p = reached;
            }
            advanced
        });
        Ok(events.len())
    }
}

/// Starts a follower's batch transaction: takes the follower's lock (one batch at a time across all
/// instances; `harden replay` takes it too, to pause the follower while it swaps tables in) and
/// commits without waiting for the WAL flush.
///
/// The lock is a transaction-level advisory lock rather than `FOR UPDATE` on the checkpoint row:
/// it takes no transaction id, and every transaction id alive in the cluster holds back the
/// snapshot horizon all followers read up to. The batch takes an id only when it writes.
///
/// Asynchronous commit is safe here: the read-model rows and the checkpoint are one transaction, so
/// a crash can only lose whole batches, which are then read and applied again. The events
/// themselves are committed synchronously by the command side.
pub async fn lock_follower(conn: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(name)
        .execute(conn)
        .await
        .with_context(|| format!("Failed to take the lock of follower {name}"))?;
    Ok(())
}

/// The next committed events after `after`, at most `limit`, in follower order, never past the
/// oldest transaction still running in the cluster (see the module documentation).
pub async fn read_batch(conn: &mut PgConnection, after: Position, limit: i64) -> anyhow::Result<Vec<StoredEvent>> {
    let rows = sqlx::query(&select_batch())
        .bind(after.tx_id)
        .bind(after.global_id)
        .bind(limit)
        .fetch_all(conn)
        .await
        .context("Failed to read events")?;
    rows.iter().map(decode).collect()
}

/// A follower's checkpoint (its row is created by `register`).
pub async fn load_checkpoint(conn: &mut PgConnection, name: &str) -> anyhow::Result<Position> {
    let (tx_id, global_id): (i64, i64) =
        sqlx::query_as("SELECT tx_id::text::bigint, global_id FROM follower_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_one(conn)
            .await
            .with_context(|| format!("Failed to read the checkpoint of {name}"))?;
    Ok(Position { tx_id, global_id })
}

pub async fn save_checkpoint(conn: &mut PgConnection, name: &str, position: Position) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE follower_checkpoints SET tx_id = $2::bigint::text::xid8, global_id = $3, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(position.tx_id)
    .bind(position.global_id)
    .execute(conn)
    .await
    .with_context(|| format!("Failed to advance the checkpoint of {name}"))?;
    Ok(())
}

/// Creates a follower's checkpoint row if it has never run.
pub async fn register_checkpoint(pool: &PgPool, name: &str) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO follower_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(pool)
        .await
        .with_context(|| format!("Failed to register follower {name}"))?;
    Ok(())
}

pub(crate) fn decode(row: &sqlx::postgres::PgRow) -> anyhow::Result<StoredEvent> {
    Ok(StoredEvent {
        position: Position { tx_id: row.try_get("tx_id")?, global_id: row.try_get("global_id")? },
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// How far behind each named follower is: the age of the oldest committed event it has not applied
/// yet (zero when it is caught up). For readiness and operators.
pub async fn follower_lag(pool: &PgPool, names: &[&str]) -> anyhow::Result<Vec<(String, f64)>> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let rows: Vec<(String, Option<f64>)> = sqlx::query_as(
        "SELECT c.name,
                (SELECT extract(epoch FROM now() - e.recorded_at)::float8 FROM events e
                 WHERE (e.tx_id, e.global_id) > (c.tx_id, c.global_id)
                   AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
                 ORDER BY e.tx_id, e.global_id LIMIT 1)
         FROM follower_checkpoints c WHERE c.name = ANY($1) ORDER BY c.name",
    )
    .bind(&names)
    .fetch_all(pool)
    .await
    .context("Failed to read the followers' lag")?;
    Ok(rows.into_iter().map(|(name, lag)| (name, lag.unwrap_or(0.0).max(0.0))).collect())
}
