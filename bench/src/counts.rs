//! `harden-bench counts`: what one request costs in PostgreSQL, per endpoint — the SQL statements
//! (from `pg_stat_statements`), the transactions (`pg_stat_database`) and the round trips on the
//! wire, counted by a relay between harden and PostgreSQL that sees each turn of the
//! conversation (a client message after the server spoke starts a round trip). It starts its own
//! harden against the relay, sends `--requests` requests one at a time per endpoint, waits for
//! the followers to settle, and subtracts what the same window costs with no request (the
//! followers' and the relay's background work). The next change to harden starts from these counts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::services::Harden;

#[derive(clap::Args)]
pub struct Args {
    /// The harden binary to start (against the relay).
    #[arg(long)]
    harden: std::path::PathBuf,
    /// PostgreSQL for harden's database (created) and the statistics (must preload pg_stat_statements).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    #[arg(long, default_value = "harden_bench_counts")]
    database: String,
    /// Requests per endpoint.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Value bytes of each write (random, so incompressible).
    #[arg(long, default_value_t = 1400)]
    value_bytes: usize,
}

/// Round trips seen by the relay: a message from harden after PostgreSQL last spoke on that
/// connection (or its first) starts one.
#[derive(Default)]
struct Turns {
    round_trips: AtomicU64,
}

async fn relay(listener: TcpListener, upstream: String, turns: Arc<Turns>) {
    while let Ok((client, _)) = listener.accept().await {
        let (upstream, turns) = (upstream.clone(), turns.clone());
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            // Whether PostgreSQL spoke last on this connection.
            let server_spoke = Arc::new(AtomicBool::new(true));
            let up = {
                let (server_spoke, turns) = (server_spoke.clone(), turns.clone());
                async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        if server_spoke.swap(false, Ordering::SeqCst) {
                            turns.round_trips.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            };
            let down = async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    server_spoke.store(true, Ordering::SeqCst);
                }
            };
            tokio::join!(up, down);
        });
    }
}

/// The request of an endpoint for its `i`th call.
type RequestFor<'a> = Box<dyn Fn(usize) -> reqwest::RequestBuilder + 'a>;

struct Sample {
    statements: f64,
    transactions: f64,
    round_trips: f64,
    top: Vec<(f64, String)>,
}

async fn totals(stats: &PgPool, database: &str) -> anyhow::Result<(f64, f64)> {
    let statements: f64 = sqlx::query_scalar(
        "SELECT coalesce(sum(s.calls), 0)::float8 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = $1",
    )
    .bind(database)
    .fetch_one(stats)
    .await?;
    let transactions: f64 =
        sqlx::query_scalar("SELECT (xact_commit + xact_rollback)::float8 FROM pg_stat_database WHERE datname = $1")
            .bind(database)
            .fetch_one(stats)
            .await?;
    Ok((statements, transactions))
}

/// Runs `work` (or nothing, for the baseline) in a measured window of `window`.
async fn measure<F, Fut>(
    stats: &PgPool,
    database: &str,
    turns: &Turns,
    window: Duration,
    work: Option<F>,
) -> anyhow::Result<Sample>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Let the followers finish what came before, then start from zero.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("SELECT pg_stat_statements_reset()").execute(stats).await?;
    sqlx::query("SELECT pg_stat_reset()").execute(stats).await.ok();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s0, t0) = totals(stats, database).await?;
    let r0 = turns.round_trips.load(Ordering::SeqCst);
    let started = Instant::now();
    if let Some(work) = work {
        work().await?;
    }
    // The followers' work the requests caused, and the statistics' flush (at most once a second).
    let rest = window.saturating_sub(started.elapsed());
    tokio::time::sleep(rest + Duration::from_millis(1500)).await;
    let (s1, t1) = totals(stats, database).await?;
    let r1 = turns.round_trips.load(Ordering::SeqCst);
    let top: Vec<(f64, String)> = sqlx::query_as(
        "SELECT s.calls::float8, s.query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = $1 ORDER BY s.calls DESC LIMIT 12",
    )
    .bind(database)
    .fetch_all(stats)
    .await?;
    Ok(Sample { statements: s1 - s0, transactions: t1 - t0, round_trips: (r1 - r0) as f64, top })
}

/// `n` random bytes (UUIDv4s, 122 random bits in every 128): incompressible payloads.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stats = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{}/postgres", args.postgres))
        .await
        .context("connect to PostgreSQL")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", args.database)).execute(&stats).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&stats)
        .await
        .context("pg_stat_statements (bench/run preloads it)")?;

    let upstream = {
        let url = reqwest::Url::parse(&args.postgres.replace("postgres://", "http://")).context("--postgres")?;
        format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432))
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay_port = listener.local_addr()?.port();
    let turns = Arc::new(Turns::default());
    tokio::spawn(relay(listener, upstream, turns.clone()));

    let scratch = tempfile_dir()?;
    let url = format!("postgres://postgres@127.0.0.1:{relay_port}/{}", args.database);
    let env = vec![
        ("HARDEN_DATABASE_URL".to_owned(), url),
        ("HARDEN_LOG".to_owned(), "warn".to_owned()),
        ("HARDEN_NATS_STREAM".to_owned(), format!("COUNTS_{}", std::process::id())),
        ("HARDEN_NATS_SUBJECT_PREFIX".to_owned(), format!("counts{}.events", std::process::id())),
    ];
    let harden = Harden::start(&args.harden, &scratch, env)?;
    let backend = format!("http://127.0.0.1:{}", harden.backend_port);
    let proxy = format!("http://127.0.0.1:{}", harden.proxy_port);
    let api = crate::api::Api::new(&backend, &proxy, Duration::from_secs(30))?;
    let admin_key = std::fs::read_to_string(harden.data_dir().join("global-admin.key"))?;
    let (org, org_admin) = api.org(admin_key.trim(), "counts").await?;
    let user = api.users_with_keys(&org_admin, &org, 1).await?.remove(0);
    let http = reqwest::Client::new();
    let n = args.requests;
    let ciphertext = |bytes: usize| STANDARD.encode(random_bytes(29 + bytes));
    let backend_body = |bytes: usize| {
        json!({
            "ciphertextB64": ciphertext(bytes),
            "encryptedAesKeyEccB64": STANDARD.encode(random_bytes(33)),
            "encryptedAesKeyKyberB64": STANDARD.encode(random_bytes(1149)),
        })
    };
    // The Proxy's records exist before they are measured (the first write of a user unlocks).
    for i in 0..n {
        api.put(&user, &format!("pkey-{i}"), &random_bytes(args.value_bytes)).await?;
    }
    let window = Duration::from_secs(3);
    let baseline =
        measure(&stats, &args.database, &turns, window, None::<fn() -> std::future::Ready<anyhow::Result<()>>>).await?;
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await?;
        anyhow::ensure!(response.status().is_success(), "{}: {}", response.status(), response.text().await?);
        Ok::<_, anyhow::Error>(())
    };
    let endpoints: Vec<(&str, RequestFor<'_>)> = vec![
        (
            "Backend PUT /kv/{key} new",
            Box::new(|i| {
                http.put(format!("{backend}/kv/key-{i}"))
                    .header("X-Api-Key", &user.api_key)
                    .json(&backend_body(args.value_bytes))
            }),
        ),
        (
            "Backend PUT /kv/{key} update",
            Box::new(|i| {
                http.put(format!("{backend}/kv/key-{i}"))
                    .header("X-Api-Key", &user.api_key)
                    .json(&backend_body(args.value_bytes))
            }),
        ),
        (
            "Backend GET /kv/{key}",
            Box::new(|i| http.get(format!("{backend}/kv/key-{i}")).header("X-Api-Key", &user.api_key)),
        ),
        (
            "Proxy PUT /v1/kv/{key}",
            Box::new(|i| api.put_request(&user, &format!("pkey-{i}"), &random_bytes(args.value_bytes))),
        ),
        (
            "Proxy GET /v1/kv/{key}",
            Box::new(|i| {
                http.get(format!("{proxy}/v1/kv/pkey-{i}"))
                    .header("X-Api-Key", &user.api_key)
                    .header("X-User-Secret", &user.secret)
            }),
        ),
    ];
    let per = |total: f64, base: f64| ((total - base).max(0.0)) / n as f64;
    for (name, request) in &endpoints {
        let sample = measure(
            &stats,
            &args.database,
            &turns,
            window,
            Some(|| async {
                for i in 0..n {
                    send(request(i)).await?;
                }
                Ok(())
            }),
        )
        .await?;
        let top: Vec<Value> = sample
            .top
            .iter()
            .filter(|(calls, _)| *calls >= n as f64 / 2.0)
            .map(|(calls, query)| {
                let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
                json!({ "per_request": (calls / n as f64 * 100.0).round() / 100.0, "query": query.chars().take(110).collect::<String>() })
            })
            .collect();
        println!(
            "{}",
            json!({
                "endpoint": name,
                "requests": n,
                "statements_per_request": (per(sample.statements, baseline.statements) * 10.0).round() / 10.0,
                "transactions_per_request": (per(sample.transactions, baseline.transactions) * 10.0).round() / 10.0,
                "round_trips_per_request": (per(sample.round_trips, baseline.round_trips) * 10.0).round() / 10.0,
                "statements": top,
            })
        );
    }
    drop(harden);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", args.database)).execute(&stats).await.ok();
    std::fs::remove_dir_all(&scratch).ok();
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("harden-counts-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
