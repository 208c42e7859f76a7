//! Prometheus metrics, served at `/metrics` on a listener of their own (`HARDEN_METRICS_ADDR`), so
//! the public edge never exposes them.
//!
//! Counted as they happen: requests by surface, method, route template and status, with their
//! latency; unlock-cache hits and misses (the Proxy). Read when scraped: events this process
//! appended, by aggregate type; each read-model follower's and the NATS relay's lag; resident memory.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{header, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use sqlx::PgPool;

use harden_commands::bus::Wakeup;
use harden_projections::follower::follower_lag;

/// The route label of a request that matched no route (so probes of random paths add one series).
pub const UNMATCHED: &str = "unmatched";

/// How long one scrape may wait for the database.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    surface: &'static str,
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerLabels {
    follower: String,
}

/// The unlock cache's counters, which the Proxy's unlocker increments.
pub use harden_client::unlock::UnlockCounts;

/// What a Backend in this process lets a scrape read: the event store, and the followers to report.
struct EventStore {
    pool: PgPool,
    followers: Vec<String>,
    wakeup: Wakeup,
}

/// The process's metrics. Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    follower_lag: Family<FollowerLabels, Gauge<f64, AtomicU64>>,
    database_up: Gauge,
    resident_memory: Gauge,
    store: Arc<OnceLock<EventStore>>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("harden");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by surface, method, route and status",
            requests.clone(),
        );
        let durations = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by surface, method, route and status",
            Unit::Seconds,
            durations.clone(),
        );
        let follower_lag = Family::<FollowerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "follower_lag",
            "Age of the oldest committed event a read-model follower or the NATS relay has not applied (0 when caught up)",
            Unit::Seconds,
            follower_lag.clone(),
        );
        let database_up = Gauge::default();
        registry.register("database_up", "1 when the last scrape could read the event store", database_up.clone());
        let resident_memory = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the harden process",
            Unit::Bytes,
            resident_memory.clone(),
        );
        let store = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(AppendedEvents(store.clone())));
        Self(Arc::new(Inner {
            registry: Mutex::new(registry),
            requests,
            durations,
            follower_lag,
            database_up,
            resident_memory,
            store,
        }))
    }

    /// Reports the Backend's event store: appended events and the lag of `followers` (the relay's
    /// checkpoint included when it runs).
    pub fn watch_event_store(&self, pool: PgPool, followers: Vec<String>, wakeup: Wakeup) {
        let _ = self.0.store.set(EventStore { pool, followers, wakeup });
    }

    /// Registers the unlock cache's counters (the Proxy).
    pub fn watch_unlocks(&self, counts: &UnlockCounts) {
        let mut registry = self.registry();
        registry.register("unlock_cache_hits", "Proxy requests whose keys were already unlocked", counts.hits.clone());
        registry.register(
            "unlock_cache_misses",
            "Proxy requests that ran Argon2id to unlock the caller's keys",
            counts.misses.clone(),
        );
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, labels: RequestLabels, elapsed: Duration) {
        self.0.durations.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.0.requests.get_or_create(&labels).inc();
    }

    /// Reads what is read at scrape time, then renders the registry in the OpenMetrics text format.
    pub async fn render(&self) -> String {
        if let Some(store) = self.0.store.get() {
            let names: Vec<&str> = store.followers.iter().map(String::as_str).collect();
            match tokio::time::timeout(SCRAPE_TIMEOUT, follower_lag(&store.pool, &names)).await {
                Ok(Ok(lags)) => {
                    for (follower, lag) in lags {
                        self.0.follower_lag.get_or_create(&FollowerLabels { follower }).set(lag);
                    }
                    self.0.database_up.set(1);
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "metrics: could not read the followers' lag");
                    self.0.database_up.set(0);
                }
                Err(_) => {
                    self.0.database_up.set(0);
                }
            }
        }
        if let Some(bytes) = resident_memory_bytes() {
            self.0.resident_memory.set(bytes);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry())
            .expect("writing to a String cannot fail");
        text
    }

    /// Records every request of `router` under `surface`. The route is the matched template
    /// (`/kv/{key}`), never the concrete path, so the number of series stays bounded.
    pub fn layer(&self, router: Router, surface: &'static str) -> Router {
        let metrics = self.clone();
        router.layer(axum::middleware::from_fn(move |req: Request<Body>, next: Next| {
            let metrics = metrics.clone();
            async move {
                let route = req.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
                let method = req.method().as_str().to_owned();
                let started = Instant::now();
                let response = next.run(req).await;
                let status = response.status().as_u16();
                metrics.record(RequestLabels { surface, method, route, status }, started.elapsed());
                response
            }
        }))
    }

    /// The metrics listener's router: `GET /metrics`.
    pub fn router(&self) -> Router {
        Router::new().route("/metrics", get(scrape)).with_state(self.clone())
    }
}

async fn scrape(State(metrics): State<Metrics>) -> Response {
    let body = metrics.render().await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

/// This process's resident memory, from `/proc` (Linux); None elsewhere.
fn resident_memory_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// `harden_events_appended_total{aggregate}`: events this process committed since it started. A
/// counter per process, as Prometheus expects; `sum(rate(...))` over instances is the append rate.
struct AppendedEvents(Arc<OnceLock<EventStore>>);

impl fmt::Debug for AppendedEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppendedEvents")
    }
}

impl Collector for AppendedEvents {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(store) = self.0.get() else { return Ok(()) };
        let mut metric = encoder.encode_descriptor(
            "events_appended",
            "Events this process appended to the event store, by aggregate type",
            None,
            MetricType::Counter,
        )?;
        for (aggregate, count) in store.wakeup.appended() {
            let labels = [("aggregate", aggregate)];
            ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
