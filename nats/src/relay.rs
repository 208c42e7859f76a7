//! The NATS relay: a follower of the event store that publishes every committed event to the
//! JetStream stream, exactly once as seen by subscribers.
//!
//! - One relay publishes at a time across all instances: the leader holds a session-level
//!   `pg_try_advisory_lock` on a connection of its own; if that connection dies, another instance
//!   takes over.
//! - A batch is read (one statement, no transaction held), published with
//!   `Nats-Msg-Id = <aggregate_type>:<aggregate_id>:<sequence>`, and the checkpoint advances only
//!   after every PubAck has arrived. A crash in between re-publishes the batch; JetStream drops the
//!   duplicates inside its window, and on start the relay moves its checkpoint to the last message
//!   already in the stream, so a re-publish never falls outside that window.
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
use harden_projections::follower::{load_checkpoint, read_batch, register_checkpoint, save_checkpoint};
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
    pool: PgPool,
    connect: PgConnectOptions,
    config: RelayConfig,
    wake: watch::Receiver<u64>,
    position: watch::Sender<Position>,
}

impl Relay {
    pub fn new(pool: PgPool, connect: PgConnectOptions, config: RelayConfig, wake: watch::Receiver<u64>) -> Self {
        let (position, _) = watch::channel(Position::default());
        Self { pool, connect, config, wake, position }
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
            .connect(&self.config.nats_url)
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
                    tokio::select! {
                        changed = self.wake.changed() => if changed.is_err() { tokio::time::sleep(self.config.poll_interval).await },
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "publishing to NATS failed; will retry the batch");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
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
            ..Default::default()
        };
        js.get_or_create_stream(config)
            .await
            .with_context(|| format!("Failed to open the JetStream stream {}", self.config.stream))
    }

    /// A crash after PubAcks but before the checkpoint leaves published events behind the
    /// checkpoint; starting after the stream's last message keeps them from being published again.
    async fn resume_after_last_message(&self, stream: &mut stream::Stream) -> anyhow::Result<()> {
        let last = stream.info().await.context("Failed to read the stream's state")?.state.last_sequence;
        if last == 0 {
            return Ok(());
        }
        let message = stream.get_raw_message(last).await.context("Failed to read the stream's last message")?;
        let Some(id) = message.headers.get("Nats-Msg-Id").map(|v| v.to_string()) else { return Ok(()) };
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
        if load_checkpoint(&mut conn, NAME).await? < published {
            save_checkpoint(&mut conn, NAME, published).await?;
            tracing::info!(msg_id = %id, "relay resumes after the stream's last message");
        }
        Ok(())
    }

    /// Publishes the next batch and advances the checkpoint once every PubAck is in.
    async fn relay_batch(&self, js: &jetstream::Context) -> anyhow::Result<usize> {
        let mut conn = self.pool.acquire().await?;
        let from = load_checkpoint(&mut conn, NAME).await?;
        let events = read_batch(&mut conn, from, self.config.batch_size).await?;
        drop(conn);
        let mut acks = Vec::with_capacity(events.len());
        for event in &events {
            let subject =
                subject_with_prefix(&self.config.subject_prefix, event.org(), &event.aggregate_type, &event.event_type);
            let payload = serde_json::to_vec(&EventNotice::of(event))?;
            let publish = PublishMessage::build().payload(payload.into()).message_id(msg_id(
                &event.aggregate_type,
                &event.aggregate_id,
                event.sequence,
            ));
            acks.push(js.send_publish(subject, publish).await.context("Failed to publish an event")?);
        }
        for ack in acks {
            ack.await.context("JetStream did not acknowledge an event")?;
        }
        if let Some(last) = events.last() {
            let mut conn = self.pool.acquire().await?;
            save_checkpoint(&mut conn, NAME, last.position).await?;
            self.position.send_replace(last.position);
        }
        Ok(events.len())
    }
}
