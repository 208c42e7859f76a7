//! The NATS relay: a follower of the event store that publishes every committed event to the
//! JetStream stream, exactly once as seen by subscribers.
//!
//! - One relay publishes at a time across all instances: the leader holds a session-level
//!   `pg_try_advisory_lock` on a connection of its own; if that connection dies, another instance
//!   takes over.
//! - A batch is read (one statement, no transaction held), published with
//!   `Nats-Msg-Id = <aggregate_type>:<aggregate_id>:<sequence>`, and the checkpoint advances only
//!   after every PubAck has arrived.
//! - Order without gaps: every publish carries `Nats-Expected-Last-Msg-Id`, the id of the message
//!   before it, so JetStream refuses a message whose predecessor was lost (a reconnect can drop
//!   publishes still in the old connection's buffer). After any failure, and on start, the relay
//!   re-reads the stream's last message and continues after that event: nothing is published twice
//!   or out of order, and a crash between PubAck and checkpoint never re-publishes.
//! - The relay's checkpoint only moves forward, even if a deposed leader writes late.
//! - NATS down: the batch is retried with backoff; nothing is lost, and serving is not affected.
//! - Payloads carry ids, types, versions, actors and timestamps; never ciphertext, key material,
//!   key names or email addresses.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use uuid::Uuid;

use harden_commands::Position;
use harden_projections::follower::{load_checkpoint, read_batch, register_checkpoint};
use harden_projections::StoredEvent;

use crate::{msg_id, subject_with_prefix};

pub const NAME: &str = "nats-relay";
/// The advisory lock key of the relay's leadership ("harden" + 1).
const LEADER_LOCK: i64 = 0x6861_7264_656e_0001;

#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub nats_url: String,
    pub stream: String,
    pub subject_prefix: String,
    pub batch_size: i64,
    pub poll_interval: Duration,
    /// Copies JetStream keeps of the stream when the relay creates it (`HARDEN_NATS_STREAM_REPLICAS`):
    /// 3 on a 3-node cluster, so the stream survives the loss of a node. An existing stream is used
    /// as it is.
    pub replicas: usize,
}

/// What subscribers receive: the event's identity and context, none of its secret contents.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventNotice {
    pub event_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub org_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub request_id: Option<String>,
    /// The record version, for events of versioned records (KV writes and deletes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_version: Option<u64>,
    pub recorded_at: String,
}

impl EventNotice {
    pub fn of(event: &StoredEvent) -> Self {
        let body = event.payload.get(&event.event_type);
        EventNotice {
            event_id: event.position.global_id,
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            org_id: event.org(),
            actor_user_id: event.actor(),
            request_id: event.metadata.get("request_id").and_then(|v| v.as_str()).map(str::to_owned),
            record_version: body.and_then(|b| b.get("version")).and_then(|v| v.as_u64()),
            recorded_at: event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }
    }
}

pub struct Relay {
    /// The id of the stream's last message, as far as this relay knows: what the next publish expects.
    last_msg_id: Option<String>,
    pool: PgPool,
    connect: PgConnectOptions,
    config: RelayConfig,
    wake: watch::Receiver<u64>,
    position: watch::Sender<Position>,
}

impl Relay {
    pub fn new(pool: PgPool, connect: PgConnectOptions, config: RelayConfig, wake: watch::Receiver<u64>) -> Self {
        let (position, _) = watch::channel(Position::default());
        Self { last_msg_id: None, pool, connect, config, wake, position }
    }

    /// The last position published and acknowledged.
    pub fn position(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    /// Runs until aborted: waits for leadership, then relays.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.lead().await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "NATS relay stopped; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Becomes the leader (or waits to), then relays until an error.
    async fn lead(&mut self) -> anyhow::Result<()> {
        register_checkpoint(&self.pool, NAME).await?;
        let mut leader =
            PgConnection::connect_with(&self.connect).await.context("Failed to open the relay's lock connection")?;
        loop {
            let won: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut leader).await?;
            if won {
                break;
            }
            tokio::time::sleep(self.config.poll_interval.max(Duration::from_millis(500))).await;
        }
        tracing::info!("this instance relays events to NATS");
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(crate::servers(&self.config.nats_url))
            .await
            .context("Failed to connect to NATS")?;
        let js = jetstream::new(client);
        let mut stream = self.ensure_stream(&js).await?;
        self.resume_after_last_message(&mut stream).await?;
        let mut backoff = Duration::from_millis(100);
        loop {
            // Leadership lives as long as the lock connection: check it before each batch.
            sqlx::query("SELECT 1").execute(&mut leader).await.context("lost the relay lock connection")?;
            match self.relay_batch(&js).await {
                Ok(n) if n as i64 >= self.config.batch_size => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    harden_projections::wake::wait(&mut self.wake, self.config.poll_interval).await;
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "publishing to NATS failed; will re-sync with the stream and retry"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Whatever part of the batch reached the stream stays; continue after it.
                    if let Err(e) = self.resume_after_last_message(&mut stream).await {
                        tracing::warn!(error = format!("{e:#}"), "could not re-read the stream's state");
                    }
                }
            }
        }
    }

    async fn ensure_stream(&self, js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
        let config = stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            storage: stream::StorageType::File,
            deny_delete: true,
            deny_purge: true,
            duplicate_window: Duration::from_secs(120),
            num_replicas: self.config.replicas.max(1),
            ..Default::default()
        };
        js.get_or_create_stream(config)
            .await
            .with_context(|| format!("Failed to open the JetStream stream {}", self.config.stream))
    }

    /// A crash after PubAcks but before the checkpoint leaves published events behind the
    /// checkpoint; starting after the stream's last message keeps them from being published again.
    async fn resume_after_last_message(&mut self, stream: &mut stream::Stream) -> anyhow::Result<()> {
        let state = stream.info().await.context("Failed to read the stream's state")?.state.clone();
        if state.messages == 0 {
            self.last_msg_id = None;
            return Ok(());
        }
        let message =
            stream.get_raw_message(state.last_sequence).await.context("Failed to read the stream's last message")?;
        let id = message.headers.get("Nats-Msg-Id").map(|v| v.to_string());
        self.last_msg_id = id.clone();
        let Some(id) = id else { return Ok(()) };
        let Some((kind, rest)) = id.split_once(':') else { return Ok(()) };
        let Some((aggregate_id, sequence)) = rest.rsplit_once(':') else { return Ok(()) };
        let Ok(sequence) = sequence.parse::<i64>() else { return Ok(()) };
        let published: Option<(i64, i64)> = sqlx::query_as(
            "SELECT tx_id::text::bigint, global_id FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        )
        .bind(kind)
        .bind(aggregate_id)
        .bind(sequence)
        .fetch_optional(&self.pool)
        .await?;
        let Some((tx_id, global_id)) = published else {
            tracing::warn!(msg_id = %id, "the stream's last message is not an event of this database; not resuming from it");
            return Ok(());
        };
        let published = Position { tx_id, global_id };
        let mut conn = self.pool.acquire().await?;
        if advance_checkpoint(&mut conn, published).await? {
            tracing::info!(msg_id = %id, "relay resumes after the stream's last message");
        }
        Ok(())
    }

    /// Publishes the next batch and advances the checkpoint once every PubAck is in.
    async fn relay_batch(&mut self, js: &jetstream::Context) -> anyhow::Result<usize> {
        let mut conn = self.pool.acquire().await?;
        let from = load_checkpoint(&mut conn, NAME).await?;
        let events = read_batch(&mut conn, from, self.config.batch_size).await?;
        drop(conn);
        let mut acks = Vec::with_capacity(events.len());
        for event in &events {
            let subject =
                subject_with_prefix(&self.config.subject_prefix, event.org(), &event.aggregate_type, &event.event_type);
            let payload = serde_json::to_vec(&EventNotice::of(event))?;
            let id = msg_id(&event.aggregate_type, &event.aggregate_id, event.sequence);
            let mut publish = PublishMessage::build().payload(payload.into()).message_id(&id);
            if let Some(previous) = &self.last_msg_id {
                publish = publish.expected_last_message_id(previous);
            }
            acks.push(js.send_publish(subject, publish).await.context("Failed to publish an event")?);
            self.last_msg_id = Some(id);
        }
        for ack in acks {
            ack.await.context("JetStream did not acknowledge an event")?;
        }
        if let Some(last) = events.last() {
            let mut conn = self.pool.acquire().await?;
            advance_checkpoint(&mut conn, last.position).await?;
            self.position.send_replace(last.position);
        }
        Ok(events.len())
    }
}

/// Moves the relay's checkpoint forward to `to`, never back; true if it moved.
async fn advance_checkpoint(conn: &mut PgConnection, to: Position) -> anyhow::Result<bool> {
    let moved = sqlx::query(
        "UPDATE follower_checkpoints SET tx_id = $2::bigint::text::xid8, global_id = $3, updated_at = now()
         WHERE name = $1 AND (tx_id, global_id) < ($2::bigint::text::xid8, $3)",
    )
    .bind(NAME)
    .bind(to.tx_id)
    .bind(to.global_id)
    .execute(conn)
    .await
    .context("Failed to advance the relay's checkpoint")?;
    Ok(moved.rows_affected() == 1)
}
