//! Executing commands against the event store.
//!
//! Every command goes through [`Commands::execute`]: cqrs-es loads the aggregate from its events,
//! `handle` decides, postgres-es appends with optimistic concurrency (a second writer at the same
//! sequence fails with 23505 and cqrs-es reports `AggregateConflict`). A conflict is retried a bounded
//! number of times against the fresh state, then answered as [`Error::Busy`].
//!
//! After a commit the bus (1) reads the position of the aggregate's last event, so the caller can
//! wait until the read models it reads have passed it, and (2) asks the [`Wakeup`] task to send one
//! `pg_notify`, which wakes every follower of every instance. The NOTIFY is deliberately not part of
//! the append transaction: a NOTIFY takes a server-wide lock at commit and would serialize all appends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::DomainEvent;
use cqrs_es::{Aggregate, AggregateError, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::credentials::{AuthCache, CREDENTIALS_CHANNEL, REVOKING_EVENTS};
use crate::error::Error;
use harden_domain::{OrgId, UserId};

/// The channel followers LISTEN on.
pub const WAKE_CHANNEL: &str = "harden_events";

/// How often a conflicting command is tried against fresh state before answering `Busy`.
const MAX_ATTEMPTS: u32 = 5;

/// A place in the followers' read order: `(tx_id, global_id)` of an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub tx_id: i64,
    pub global_id: i64,
}

/// Who asked, on whose behalf, in which request. Stored with every event (cqrs-es metadata) and read
/// by the audit view.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub org_id: Option<OrgId>,
    pub actor: Option<UserId>,
    pub request_id: Option<String>,
    /// The identity-provider user behind a Cloud API request (who is no harden principal).
    pub identity: Option<String>,
}

impl Meta {
    fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        if let Some(org) = self.org_id {
            map.insert("org_id".to_owned(), org.to_string());
        }
        if let Some(actor) = self.actor {
            map.insert("actor_user_id".to_owned(), actor.to_string());
        }
        if let Some(rid) = &self.request_id {
            map.insert("request_id".to_owned(), rid.clone());
        }
        if let Some(identity) = &self.identity {
            map.insert("actor_identity".to_owned(), identity.clone());
        }
        map
    }

    pub fn with_org(mut self, org: OrgId) -> Self {
        self.org_id = Some(org);
        self
    }
}

/// What a successful command leaves behind: the position of the aggregate's latest event (None if the
/// aggregate has no events, which a successful no-op on a missing aggregate cannot produce).
/// `recorded_at` is that event's commit-side timestamp, the same one the read models will show.
#[derive(Clone, Copy, Debug, Default)]
pub struct Committed {
    pub position: Option<Position>,
    pub recorded_at: Option<DateTime<Utc>>,
}

impl Committed {
    /// This commit, or `other` if this one committed nothing.
    pub fn or(self, other: Committed) -> Committed {
        if self.position.is_some() {
            self
        } else {
            other
        }
    }
}

pub type Store<A> = PersistedEventStore<PostgresEventRepository, A>;

/// Coalesces post-commit wake-ups into as few `pg_notify` calls as possible: many commits while one
/// NOTIFY is in flight cost one more NOTIFY, not many. It also counts the events this process
/// committed, by aggregate type, for the metrics endpoint.
#[derive(Clone)]
pub struct Wakeup {
    pending: Arc<Notify>,
    appended: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    /// This process's cached principals, which a revoking commit drops and then waits out.
    credentials: Arc<AuthCache>,
    pool: PgPool,
}

impl Wakeup {
    pub fn spawn(pool: PgPool) -> Self {
        let pending = Arc::new(Notify::new());
        let signal = pending.clone();
        let notifier = pool.clone();
        tokio::spawn(async move {
            let pool = notifier;
            loop {
                signal.notified().await;
                if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(WAKE_CHANNEL).execute(&pool).await {
                    // The followers' poll fallback covers a lost wake-up.
                    tracing::debug!(error = %e, "pg_notify failed");
                }
            }
        });
        Self { pending, appended: Arc::default(), credentials: Arc::default(), pool }
    }

    /// The authentication cache every request of this process goes through.
    pub fn credentials(&self) -> &Arc<AuthCache> {
        &self.credentials
    }

    /// After a commit that took access away: drops this process's cached principals, tells every
    /// other instance to drop theirs, and waits out the cache's lease, so that no instance answers
    /// from an entry looked up before the commit once this returns (see [`AuthCache`]).
    async fn revoked(&self) {
        self.credentials.clear();
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(CREDENTIALS_CHANNEL).execute(&self.pool).await {
            // The lease alone bounds every other instance's entries.
            tracing::debug!(error = %e, "pg_notify of a revocation failed");
        }
        tokio::time::sleep(self.credentials.lease()).await;
    }

    pub fn wake(&self) {
        self.pending.notify_one();
    }

    fn committed(&self, aggregate: &'static str, events: usize) {
        let mut appended = self.appended.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *appended.entry(aggregate).or_default() += events as u64;
    }

    /// Events committed through this wake-up's command buses since start, by aggregate type.
    pub fn appended(&self) -> Vec<(&'static str, u64)> {
        let appended = self.appended.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        appended.iter().map(|(aggregate, n)| (*aggregate, *n)).collect()
    }
}

/// The command side of one aggregate type.
///
/// It runs the same steps as cqrs-es's `CqrsFramework` (load, handle, commit) on the event store
/// itself, because harden needs what the framework does not return: the events a command
/// committed (their versions, their positions).
pub struct Commands<A: Aggregate<Services = ()>> {
    store: Store<A>,
    pool: PgPool,
    wakeup: Wakeup,
    /// Load only the aggregate's last event (for aggregates whose state follows from it alone).
    tail_only: bool,
}

impl<A> Commands<A>
where
    A: Aggregate<Services = ()>,
    A::Command: Clone,
    A::Error: Into<Error>,
{
    pub fn new(pool: PgPool, wakeup: Wakeup) -> Self {
        let store = PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()));
        Self { store, pool, wakeup, tail_only: false }
    }

    /// For an aggregate whose whole state follows from its last event: loading reads that one
    /// event instead of the whole history, so a command costs the same however old the aggregate.
    pub fn loading_last_event_only(mut self) -> Self {
        self.tail_only = true;
        self
    }

    /// The aggregate's last event and its sequence number: the whole state of an aggregate whose
    /// events each carry all of it (see [`Self::loading_last_event_only`]), and that event's content.
    pub async fn last_event(&self, id: &str) -> Result<Option<(usize, A::Event)>, Error> {
        let last: Option<(i64, serde_json::Value)> = sqlx::query_as(
            "SELECT sequence, payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
             ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("Failed to load {} {id}", A::TYPE))?;
        last.map(|(sequence, payload)| {
            serde_json::from_value(payload)
                .map(|event| (sequence as usize, event))
                .with_context(|| format!("Failed to decode the last event of {} {id}", A::TYPE))
                .map_err(Error::from)
        })
        .transpose()
    }

    /// The aggregate's last event of one of `types`, and its sequence number.
    pub async fn last_event_of(&self, id: &str, types: &[&str]) -> Result<Option<(usize, A::Event)>, Error> {
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        let last: Option<(i64, serde_json::Value)> = sqlx::query_as(
            "SELECT sequence, payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
               AND event_type = ANY($3) ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id)
        .bind(&types)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("Failed to load {} {id}", A::TYPE))?;
        last.map(|(sequence, payload)| {
            serde_json::from_value(payload)
                .map(|event| (sequence as usize, event))
                .with_context(|| format!("Failed to decode an event of {} {id}", A::TYPE))
                .map_err(Error::from)
        })
        .transpose()
    }

    async fn load_context(&self, id: &str) -> Result<EventStoreAggregateContext<A>, Error> {
        if !self.tail_only {
            return self.store.load_aggregate(id).await.map_err(|e| store_error::<A>(e, "load", id));
        }
        let mut aggregate = A::default();
        let mut current_sequence = 0;
        if let Some((sequence, event)) = self.last_event(id).await? {
            aggregate.apply(event);
            current_sequence = sequence;
        }
        Ok(EventStoreAggregateContext {
            aggregate_id: id.to_owned(),
            aggregate,
            current_sequence,
            current_snapshot: None,
        })
    }

    pub async fn execute(&self, id: &str, command: A::Command, meta: &Meta) -> Result<Committed, Error> {
        self.run(id, command, meta).await.map(|(committed, _)| committed)
    }

    /// Executes the command and returns the events it committed (none for a no-op).
    pub async fn run(&self, id: &str, command: A::Command, meta: &Meta) -> Result<(Committed, Vec<A::Event>), Error> {
        let metadata = meta.to_map();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut context = self.load_context(id).await?;
            let sink = EventSink::default();
            cqrs_es::AggregateContext::aggregate(&mut context)
                .handle(command.clone(), &(), &sink)
                .await
                .map_err(Into::into)?;
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok((Committed::default(), events));
            }
            match self.store.commit(events, context, metadata.clone()).await {
                Ok(envelopes) => {
                    self.wakeup.wake();
                    self.wakeup.committed(A::TYPE, envelopes.len());
                    if envelopes.iter().any(|e| REVOKING_EVENTS.contains(&e.payload.event_type().as_str())) {
                        self.wakeup.revoked().await;
                    }
                    let last = envelopes.last().map(|e| e.sequence).unwrap_or_default();
                    let committed = self.commit_of(id, last).await?;
                    return Ok((committed, envelopes.into_iter().map(|e| e.payload).collect()));
                }
                Err(AggregateError::AggregateConflict) => {
                    tracing::debug!(aggregate = A::TYPE, attempt, "concurrency conflict, retrying");
                    // Backed off with jitter: racers that collided once must not wake in step and
                    // collide again on every attempt (six grants of one share did, past the cap).
                    let base = 2u64 << attempt;
                    tokio::time::sleep(Duration::from_millis(base + rand::random::<u64>() % (base * 2))).await;
                }
                Err(e) => return Err(store_error::<A>(e, "append events to", id)),
            }
        }
        Err(Error::Busy)
    }

    /// The aggregate as its events make it now: for rules that need the authoritative state (does
    /// this org exist, which org is this user in) rather than a read model that may lag.
    pub async fn load(&self, id: &str) -> Result<A, Error> {
        let mut context = self.store.load_aggregate(id).await.map_err(|e| store_error::<A>(e, "load", id))?;
        Ok(std::mem::take(cqrs_es::AggregateContext::aggregate(&mut context)))
    }

    async fn commit_of(&self, id: &str, sequence: usize) -> Result<Committed, Error> {
        let (tx_id, global_id, at): (i64, i64, DateTime<Utc>) = sqlx::query_as(
            "SELECT tx_id::text::bigint, global_id, recorded_at FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        )
        .bind(A::TYPE)
        .bind(id)
        .bind(sequence as i64)
        .fetch_one(&self.pool)
        .await
        .context("Failed to read the position of a committed event")?;
        Ok(Committed { position: Some(Position { tx_id, global_id }), recorded_at: Some(at) })
    }
}

/// SQLSTATE raised by the plan-limit trigger (migration 0005). Deliberately not 23505, which
/// postgres-es reports as a retryable concurrency conflict.
pub const PLAN_LIMIT_SQLSTATE: &str = "HL001";
/// SQLSTATE raised when the acting user was deactivated while their request was in flight (0008).
pub const INACTIVE_ACTOR_SQLSTATE: &str = "HL003";

/// Store failures other than conflicts: a plan limit refused at append time is the caller's 400;
/// anything else is infrastructure, `Unavailable` when the database is out of reach.
fn store_error<A: Aggregate>(e: AggregateError<A::Error>, doing: &str, id: &str) -> Error {
    let cause = match e {
        AggregateError::UnexpectedError(cause) | AggregateError::DatabaseConnectionError(cause) => cause,
        AggregateError::DeserializationError(cause) => {
            return Error::Internal(
                anyhow::Error::from_boxed(cause).context(format!("Failed to decode {} {id}", A::TYPE)),
            )
        }
        AggregateError::AggregateConflict => return Error::Busy,
        AggregateError::UserError(user) => return Error::Internal(anyhow::anyhow!("{user}")),
    };
    if let Some(limit) = plan_limit(cause.as_ref()) {
        return limit;
    }
    // Decided here, on the typed cause: an anyhow error made from a box hides the box's type from
    // its chain.
    let outage = cause.downcast_ref::<sqlx::Error>().is_some_and(crate::error::is_database_outage);
    let error = anyhow::Error::from_boxed(cause).context(format!("Failed to {doing} {} {id}", A::TYPE));
    if outage {
        Error::Unavailable(error)
    } else {
        Error::Internal(error)
    }
}

fn plan_limit(cause: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<Error> {
    let db = cause.downcast_ref::<sqlx::Error>()?.as_database_error()?;
    if db.code().as_deref() == Some(INACTIVE_ACTOR_SQLSTATE) {
        return Some(Error::Unauthorized("invalid API key".into()));
    }
    if db.code().as_deref() != Some(PLAN_LIMIT_SQLSTATE) {
        return None;
    }
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let (limit, plan, max) = (pg.message(), pg.detail().unwrap_or("?"), pg.hint().unwrap_or("?"));
    Some(Error::Invalid(format!("plan limit reached: {limit} is {max} on the {plan} plan")))
}

#[cfg(test)]
mod tests {
    use harden_domain::secret::Secret;

    use super::*;

    #[test]
    fn an_event_store_that_lost_the_database_is_unavailable() {
        let reset = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let cases: [(&str, AggregateError<_>); 3] = [
            ("connection error", AggregateError::DatabaseConnectionError(Box::new(reset()))),
            ("pool timed out", AggregateError::UnexpectedError(Box::new(sqlx::Error::PoolTimedOut))),
            ("reset mid-append", AggregateError::UnexpectedError(Box::new(reset()))),
        ];
        for (case, error) in cases {
            assert!(matches!(store_error::<Secret>(error, "append events to", "x"), Error::Unavailable(_)), "{case}");
        }
        let other = AggregateError::UnexpectedError(Box::new(sqlx::Error::RowNotFound));
        assert!(matches!(store_error::<Secret>(other, "load", "x"), Error::Internal(_)), "a failed query is internal");
    }
}
