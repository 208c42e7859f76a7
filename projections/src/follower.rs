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
//! advisory lock (see [`try_lock_followers`]), so the same follower running in several instances
//! never applies a batch twice: an instance that finds the lock taken leaves that follower to the
//! instance holding it, and learns its new checkpoint on the wake-up that instance sends.
//!
//! Groups: one [`Follower`] feeds every read model of the process, reading and locking each batch
//! once for all of them, in one transaction (see [`Follower::group`]); a read model that fails is
//! taken out of the group and retried on its own, so it stalls no other.
//!
//! Wake-up: a follower sleeps until the process's LISTEN connection sees a `pg_notify` (sent after
//! each commit) or the poll interval passes, whichever is first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;

use harden_commands::bus::WAKE_CHANNEL;
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

/// One read model in a follower group: its projector, the position it has reached, and whether
/// it is running on its own after a failure.
struct Member {
    projector: Arc<dyn Projector>,
    position: watch::Sender<Position>,
    /// Set while the member fails: it is taken out of the group's batches (so it stalls no other
    /// read model) and retried alone at this time, backing off; it rejoins after a success.
    isolated: Mutex<Option<Isolation>>,
}

#[derive(Clone, Copy)]
struct Isolation {
    retry_at: Instant,
    backoff: Duration,
}

/// Feeds a group of read models from the event store. Each batch is read once, applied to every
/// member that has not applied it yet, and committed with every member's checkpoint in one
/// transaction: the event store is read, parsed and locked once per batch however many read models
/// there are, and all of them reach a write's position together.
pub struct Follower {
    pool: PgPool,
    members: Vec<Member>,
    config: FollowerConfig,
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

impl Follower {
    /// A follower of one read model.
    pub fn new(pool: PgPool, projector: impl Projector, config: FollowerConfig, wake: watch::Receiver<u64>) -> Self {
        Self::group(pool, vec![Arc::new(projector)], config, wake)
    }

    /// One follower feeding every projector given, in one transaction per batch.
    pub fn group(
        pool: PgPool,
        projectors: Vec<Arc<dyn Projector>>,
        config: FollowerConfig,
        wake: watch::Receiver<u64>,
    ) -> Self {
        let members = projectors
            .into_iter()
            .map(|projector| Member {
                projector,
                position: watch::channel(Position::default()).0,
                isolated: Mutex::new(None),
            })
            .collect();
        Self { pool, members, config, wake }
    }

    fn names(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.projector.name()).collect()
    }

    /// The last position each member has seen committed, by name, for read-your-writes waits.
    pub fn positions(&self) -> Vec<(&'static str, watch::Receiver<Position>)> {
        self.members.iter().map(|m| (m.projector.name(), m.position.subscribe())).collect()
    }

    /// Creates the checkpoint rows of members that have never run.
    pub async fn register(&self) -> anyhow::Result<()> {
        for name in self.names() {
            register_checkpoint(&self.pool, name).await?;
        }
        Ok(())
    }

    /// Runs until the task is aborted. Aborting mid-batch is safe: the batch's transaction is rolled
    /// back and read again by whoever runs next.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        // The checkpoint rows are made once, and again after a failure (a database recreated
        // under a running instance): not on every batch, where they cost a statement per member.
        let mut registered = false;
        loop {
            let outcome = if registered {
                self.step().await
            } else {
                match self.register().await {
                    Ok(()) => {
                        registered = true;
                        self.step().await
                    }
                    Err(e) => Err(e),
                }
            };
            if outcome.is_err() {
                registered = false;
            }
            match outcome {
                Ok(n) if n as i64 >= self.config.batch_size => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    let poll = self.next_retry().map_or(self.config.poll_interval, |at| {
                        at.saturating_duration_since(Instant::now()).min(self.config.poll_interval)
                    });
                    crate::wake::wait(&mut self.wake, poll).await;
                }
                Err(e) => {
                    tracing::warn!(followers = ?self.names(), error = format!("{e:#}"), "follower batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        self.members.iter().filter_map(|m| m.isolated.lock().unwrap().map(|i| i.retry_at)).min()
    }

    /// Applies one batch to the group, and retries isolated members whose time has come; returns
    /// the most events any member applied.
    pub async fn step(&self) -> anyhow::Result<usize> {
        let now = Instant::now();
        let (grouped, due): (Vec<&Member>, Vec<&Member>) = {
            let mut grouped = Vec::new();
            let mut due = Vec::new();
            for m in &self.members {
                match *m.isolated.lock().unwrap() {
                    None => grouped.push(m),
                    Some(i) if i.retry_at <= now => due.push(m),
                    Some(_) => {}
                }
            }
            (grouped, due)
        };
        let mut applied = 0;
        let mut alone = due;
        if !grouped.is_empty() {
            match self.apply_batch(&grouped).await {
                Ok(n) => applied = n,
                // One member alone cannot be told apart from the database failing: back off.
                Err(e) if grouped.len() == 1 && alone.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(followers = ?self.names(), error = format!("{e:#}"), "a read model failed in the group's batch; applying each on its own");
                    alone.extend(grouped);
                }
            }
        }
        for m in alone {
            match self.apply_batch(&[m]).await {
                Ok(n) => {
                    applied = applied.max(n);
                    *m.isolated.lock().unwrap() = None;
                }
                Err(e) => {
                    let mut isolated = m.isolated.lock().unwrap();
                    let backoff =
                        isolated.map_or(Duration::from_millis(100), |i| (i.backoff * 2).min(Duration::from_secs(5)));
                    *isolated = Some(Isolation { retry_at: Instant::now() + backoff, backoff });
                    tracing::warn!(
                        follower = m.projector.name(),
                        error = format!("{e:#}"),
                        ?backoff,
                        "read model failed on its own; retrying after a backoff"
                    );
                }
            }
        }
        Ok(applied)
    }

    /// One batch for `members`: takes the lock of each that no one else holds (another instance
    /// applying it, or `harden replay` swapping its tables in; those wait for the next batch, and
    /// stall no one), reads their checkpoints, reads the events after the lowest once, gives each
    /// member the events past its own checkpoint, and saves the checkpoints of the members that
    /// moved, all in one transaction. After a batch that applied events it wakes every instance,
    /// whose followers then see the new checkpoints (for their read-your-writes waits).
    async fn apply_batch(&self, members: &[&Member]) -> anyhow::Result<usize> {
        let names: Vec<&'static str> = members.iter().map(|m| m.projector.name()).collect();
        let mut tx = self.pool.begin().await.context("Failed to begin a follower batch")?;
        let locked = try_lock_followers(&mut tx, &names).await?;
        let is_mine = |m: &Member| locked.iter().any(|name| name == m.projector.name());
        let checkpoints = load_checkpoints(&mut tx, &names).await?;
        let mine: Vec<(&Member, Position)> =
            members.iter().zip(&checkpoints).filter(|(m, _)| is_mine(m)).map(|(m, cp)| (*m, *cp)).collect();
        let mut events = Vec::new();
        if let Some(from) = mine.iter().map(|(_, cp)| *cp).min() {
            events = read_batch(&mut tx, from, self.config.batch_size).await?;
        }
        for event in &events {
            for (member, checkpoint) in &mine {
                if event.position <= *checkpoint {
                    continue;
                }
                member.projector.apply(&mut tx, event).await.with_context(|| {
                    format!(
                        "{} failed on event {}/{}#{}",
                        member.projector.name(),
                        event.aggregate_type,
                        event.aggregate_id,
                        event.sequence
                    )
                })?;
            }
        }
        let reached = events.last().map(|e| e.position);
        if let Some(reached) = reached {
            let moved: Vec<&str> =
                mine.iter().filter(|(_, cp)| *cp < reached).map(|(m, _)| m.projector.name()).collect();
            save_checkpoints(&mut tx, &moved, reached).await?;
        }
        tx.commit().await.context("Failed to commit a follower batch")?;
        for (member, checkpoint) in members.iter().zip(&checkpoints) {
            let now = match reached {
                Some(reached) if is_mine(member) => reached.max(*checkpoint),
                _ => *checkpoint,
            };
            member.position.send_if_modified(|p| {
                let advanced = now > *p;
                if advanced {
                    *p = now;
                }
                advanced
            });
        }
        if reached.is_some() {
            // A lost wake-up only delays the other instances until their poll.
            let _ = sqlx::query("SELECT pg_notify($1, '')").bind(WAKE_CHANNEL).execute(&self.pool).await;
        }
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

/// The followers of `names` whose transaction-level lock this transaction could take at once; the
/// others are held by a batch of another instance or by `harden replay`. Never waits, so no two
/// batches wait on each other.
pub async fn try_lock_followers(conn: &mut PgConnection, names: &[&str]) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT name FROM unnest($1::text[]) AS name
         WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
           AND pg_try_advisory_xact_lock(hashtextextended(name, 0))",
    )
    .bind(names)
    .fetch_all(conn)
    .await
    .with_context(|| format!("Failed to take the locks of followers {names:?}"))
}

/// The checkpoints of the named followers, in the order given.
async fn load_checkpoints(conn: &mut PgConnection, names: &[&str]) -> anyhow::Result<Vec<Position>> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT name, tx_id::text::bigint, global_id FROM follower_checkpoints WHERE name = ANY($1)")
            .bind(names)
            .fetch_all(conn)
            .await
            .with_context(|| format!("Failed to read the checkpoints of {names:?}"))?;
    names
        .iter()
        .map(|name| {
            rows.iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, tx_id, global_id)| Position { tx_id: *tx_id, global_id: *global_id })
                .with_context(|| format!("follower {name} has no checkpoint"))
        })
        .collect()
}

/// Moves the named followers' checkpoints to `position`, in one statement.
async fn save_checkpoints(conn: &mut PgConnection, names: &[&str], position: Position) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE follower_checkpoints SET tx_id = $2::bigint::text::xid8, global_id = $3, updated_at = now()
         WHERE name = ANY($1)",
    )
    .bind(names)
    .bind(position.tx_id)
    .bind(position.global_id)
    .execute(conn)
    .await
    .with_context(|| format!("Failed to advance the checkpoints of {names:?}"))?;
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
    Ok(load_checkpoints(conn, &[name]).await?[0])
}

pub async fn save_checkpoint(conn: &mut PgConnection, name: &str, position: Position) -> anyhow::Result<()> {
    save_checkpoints(conn, &[name], position).await
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
