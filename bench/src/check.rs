//! `harden-bench check`: how far the projections and the NATS relay are behind the event store,
//! and whether, once they have caught up, every event is where it should be exactly once.
//!
//! - Projection lag: the Backend's `GET /ready` (seconds, per read-model follower) and, from the
//!   database, how many committed events lie beyond each follower's checkpoint.
//! - Relay lag: events in the store minus messages on the JetStream stream.
//! - Consistency, once both are zero: the stream holds exactly the store's events, each once
//!   (`Nats-Msg-Id` = `<aggregate_type>:<aggregate_id>:<sequence>`), in the store's follower order;
//!   the read models hold each event once (a KV version row per KV write event, an audit entry per
//!   audited event with no event twice and no gap in any org's chain, a live KV row per live record).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::Api;

#[derive(clap::Args)]
pub struct Args {
    /// The harden database.
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The JetStream stream harden relays to.
    #[arg(long)]
    stream: String,
    /// The Backend's base URL (for `GET /ready`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    backend: String,
    /// How long to wait for the projections and the relay to catch up.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
    /// Delete the stream (a run's own, when it is done with it) instead of checking.
    #[arg(long)]
    delete_stream: bool,
    /// Instead of checking: sample the lag every second for this long (while a load runs) and print
    /// the largest seen.
    #[arg(long)]
    watch_secs: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.delete_stream {
        let nats = Nats::connect(&args.nats_url, &args.stream).await?;
        nats.js.delete_stream(&nats.stream).await?;
        return Ok(());
    }
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&args.database_url).await?;
    let api = Api::new(&args.backend, &args.backend, Duration::from_secs(10))?;
    let nats = Nats::connect(&args.nats_url, &args.stream).await?;
    if let Some(secs) = args.watch_secs {
        println!("{}", json!({ "lagDuringLoad": watch(&pool, &nats, &api, Duration::from_secs(secs)).await? }));
        return Ok(());
    }
    let now = lag(&pool, &nats, &api).await?;
    println!("{}", json!({ "lagAtEnd": now.to_json() }));
    let caught = catch_up(&pool, &nats, &api, Duration::from_secs(args.wait_secs)).await?;
    println!("{}", json!({ "caughtUp": caught.0.to_json(), "seconds": caught.1.map(|d| d.as_secs_f64()) }));
    let report = consistency(&pool, &nats).await?;
    println!("{}", json!({ "consistency": report.to_json() }));
    let mut problems = report.violations();
    if caught.1.is_none() {
        problems.push(format!("not caught up within {} s", args.wait_secs));
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// A JetStream context and the stream's name.
pub struct Nats {
    js: jetstream::Context,
    stream: String,
}

impl Nats {
    pub async fn connect(url: &str, stream: &str) -> anyhow::Result<Self> {
        // One URL, or a cluster's nodes separated by commas (as HARDEN_NATS_URL).
        let servers: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let client = async_nats::connect(servers).await.with_context(|| format!("connect to NATS at {url}"))?;
        Ok(Self { js: jetstream::new(client), stream: stream.to_owned() })
    }

    /// Messages on the stream (0 if it does not exist yet).
    async fn messages(&self) -> anyhow::Result<u64> {
        match self.js.get_stream(&self.stream).await {
            Ok(mut stream) => Ok(stream.info().await?.state.messages),
            Err(e) if not_found(&e) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Every message's `Nats-Msg-Id`, in stream order.
    async fn ids(&self) -> anyhow::Result<Vec<String>> {
        let mut stream = match self.js.get_stream(&self.stream).await {
            Ok(stream) => stream,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let state = stream.info().await?.state.clone();
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        let stream = &stream;
        futures::stream::iter(state.first_sequence..=state.last_sequence)
            .map(|seq| async move {
                let message = stream.get_raw_message(seq).await.with_context(|| format!("read message {seq}"))?;
                Ok(message.headers.get("Nats-Msg-Id").map(|v| v.to_string()).unwrap_or_default())
            })
            .buffered(64)
            .collect::<Vec<anyhow::Result<String>>>()
            .await
            .into_iter()
            .collect()
    }
}

fn not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Lag at one moment.
pub struct Lag {
    pub events: i64,
    /// Per follower checkpoint (read models and the relay): committed events beyond it.
    pub behind: Vec<(String, i64)>,
    /// `GET /ready`: status and body (its `followers` carry each read model's lag in seconds).
    pub ready: Option<(u16, Value)>,
    pub stream_messages: u64,
}

impl Lag {
    pub fn relay_lag(&self) -> i64 {
        self.events - self.stream_messages as i64
    }

    pub fn caught_up(&self) -> bool {
        self.relay_lag() == 0
            && self.behind.iter().all(|(_, n)| *n == 0)
            && matches!(&self.ready, Some((200, body)) if body["followers"].as_array().is_some_and(|f| f.iter().all(|f| f["lagSeconds"] == 0.0)))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "eventsBehind": self.behind.iter().map(|(n, b)| (n.clone(), json!(b))).collect::<serde_json::Map<_, _>>(),
            "ready": self.ready.as_ref().map(|(s, b)| json!({ "status": s, "body": b })),
            "streamMessages": self.stream_messages,
            "relayLag": self.relay_lag(),
        })
    }
}

pub async fn lag(pool: &PgPool, nats: &Nats, api: &Api) -> anyhow::Result<Lag> {
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await?;
    let behind: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.name, (SELECT count(*) FROM events e WHERE (e.tx_id, e.global_id) > (c.tx_id, c.global_id))
         FROM follower_checkpoints c ORDER BY c.name",
    )
    .fetch_all(pool)
    .await?;
    let ready = api.ready().await.ok();
    let stream_messages = nats.messages().await?;
    Ok(Lag { events, behind, ready, stream_messages })
}

/// The largest lag seen in samples a second apart over `during`: relay lag and events behind
/// each checkpoint (counted in the database), and each read model's `/ready` lag in seconds.
async fn watch(pool: &PgPool, nats: &Nats, api: &Api, during: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    let (mut samples, mut relay) = (0, 0i64);
    let mut behind = serde_json::Map::new();
    let mut ready_secs = serde_json::Map::new();
    let raise = |map: &mut serde_json::Map<String, Value>, name: &str, v: f64| {
        if map.get(name).and_then(Value::as_f64).is_none_or(|m| v > m) {
            map.insert(name.to_owned(), json!(v));
        }
    };
    while started.elapsed() < during {
        let now = lag(pool, nats, api).await?;
        samples += 1;
        relay = relay.max(now.relay_lag());
        for (name, n) in &now.behind {
            raise(&mut behind, name, *n as f64);
        }
        if let Some((_, body)) = &now.ready {
            for f in body["followers"].as_array().into_iter().flatten() {
                raise(&mut ready_secs, f["name"].as_str().unwrap_or("?"), f["lagSeconds"].as_f64().unwrap_or(f64::NAN));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(json!({ "samples": samples, "maxRelayLag": relay, "maxEventsBehind": behind, "maxReadyLagSeconds": ready_secs }))
}

/// Polls until everything has caught up or `within` passes: the last lag, and how long it took.
pub async fn catch_up(
    pool: &PgPool,
    nats: &Nats,
    api: &Api,
    within: Duration,
) -> anyhow::Result<(Lag, Option<Duration>)> {
    let started = Instant::now();
    loop {
        let now = lag(pool, nats, api).await?;
        if now.caught_up() {
            return Ok((now, Some(started.elapsed())));
        }
        if started.elapsed() > within {
            return Ok((now, None));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where each event ended up, counted.
#[derive(Debug, Default)]
pub struct Consistency {
    pub events: i64,
    pub stream_messages: usize,
    pub stream_duplicates: usize,
    /// Events the stream lacks.
    pub stream_missing: usize,
    /// Messages that are no event of the store.
    pub stream_foreign: usize,
    pub stream_in_store_order: bool,
    pub kv_write_events: i64,
    pub kv_version_rows: i64,
    pub secret_events: i64,
    pub audit_kv_entries: i64,
    pub audit_entries: i64,
    pub audit_distinct_events: i64,
    /// Orgs whose audit chain numbering has a gap or a repeat.
    pub audit_broken_chains: i64,
    pub live_records: i64,
    pub live_kv_rows: i64,
}

impl Consistency {
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut expect = |ok: bool, what: String| {
            if !ok {
                v.push(what);
            }
        };
        expect(
            self.stream_messages as i64 == self.events,
            format!("stream holds {} messages for {} events", self.stream_messages, self.events),
        );
        expect(self.stream_duplicates == 0, format!("{} events twice on the stream", self.stream_duplicates));
        expect(self.stream_missing == 0, format!("{} events missing from the stream", self.stream_missing));
        expect(self.stream_foreign == 0, format!("{} stream messages are no event", self.stream_foreign));
        expect(self.stream_in_store_order, "stream not in the event store's order".into());
        expect(
            self.kv_version_rows == self.kv_write_events,
            format!("{} KV version rows for {} KV write events", self.kv_version_rows, self.kv_write_events),
        );
        expect(
            self.audit_kv_entries == self.secret_events,
            format!("{} KV audit entries for {} KV events", self.audit_kv_entries, self.secret_events),
        );
        expect(
            self.audit_entries == self.audit_distinct_events,
            format!("{} audit entries for {} distinct events", self.audit_entries, self.audit_distinct_events),
        );
        expect(
            self.audit_broken_chains == 0,
            format!("{} orgs with a gap or repeat in the audit chain", self.audit_broken_chains),
        );
        expect(
            self.live_kv_rows == self.live_records,
            format!("{} live KV rows for {} live records", self.live_kv_rows, self.live_records),
        );
        v
    }

    pub fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "streamMessages": self.stream_messages,
            "streamDuplicates": self.stream_duplicates,
            "streamMissing": self.stream_missing,
            "streamForeign": self.stream_foreign,
            "streamInStoreOrder": self.stream_in_store_order,
            "kvWriteEvents": self.kv_write_events,
            "kvVersionRows": self.kv_version_rows,
            "secretEvents": self.secret_events,
            "auditKvEntries": self.audit_kv_entries,
            "auditEntries": self.audit_entries,
            "auditDistinctEvents": self.audit_distinct_events,
            "auditBrokenChains": self.audit_broken_chains,
            "liveRecords": self.live_records,
            "liveKvRows": self.live_kv_rows,
            "violations": self.violations(),
        })
    }
}

/// Counts where every event ended up. Call it once the lag is zero and no writes run.
pub async fn consistency(pool: &PgPool, nats: &Nats) -> anyhow::Result<Consistency> {
    let expected: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_type || ':' || aggregate_id || ':' || sequence FROM events ORDER BY tx_id, global_id",
    )
    .fetch_all(pool)
    .await?;
    let ids = nats.ids().await?;
    let expected_set: HashSet<&String> = expected.iter().collect();
    let seen: HashSet<&String> = ids.iter().collect();
    let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await };
    Ok(Consistency {
        events: expected.len() as i64,
        stream_messages: ids.len(),
        stream_duplicates: ids.len() - seen.len(),
        stream_missing: expected_set.difference(&seen).count(),
        stream_foreign: seen.difference(&expected_set).count(),
        stream_in_store_order: ids == expected,
        kv_write_events: count(
            "SELECT count(*) FROM events WHERE aggregate_type = 'Secret' AND event_type IN ('SecretCreated', 'SecretUpdated')",
        )
        .await?,
        kv_version_rows: count("SELECT count(*) FROM kv_versions").await?,
        // The Secret aggregate's share bookkeeping (which shares are open) is audited as the share's
        // own events, not as KV entries.
        secret_events: count(
            "SELECT count(*) FROM events WHERE aggregate_type = 'Secret'
               AND event_type NOT IN ('SecretShareOpened', 'SecretShareClosed')",
        )
        .await?,
        audit_kv_entries: count("SELECT count(*) FROM audit_entries WHERE scope = 'kv'").await?,
        audit_entries: count("SELECT count(*) FROM audit_entries").await?,
        audit_distinct_events: count("SELECT count(DISTINCT event_id) FROM audit_entries").await?,
        audit_broken_chains: count(
            "SELECT count(*) FROM (SELECT org_id FROM audit_entries GROUP BY org_id
                                   HAVING max(seq) <> count(*) OR count(DISTINCT seq) <> count(*)) broken",
        )
        .await?,
        live_records: count(
            "SELECT count(*) FROM (SELECT DISTINCT ON (aggregate_id) event_type FROM events
                                   WHERE aggregate_type = 'Secret' ORDER BY aggregate_id, sequence DESC) last
             WHERE event_type <> 'SecretDeleted'",
        )
        .await?,
        live_kv_rows: count("SELECT count(*) FROM kv_records WHERE live").await?,
    })
}
