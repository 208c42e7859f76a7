//! `harden-bench faults`: faults injected under a steady write load, on services of this run's own
//! ([`crate::services`]), with every acknowledged write checked afterwards.
//!
//! Writers PUT new keys through the Proxy (each write a new record, its value unique), and record
//! every answer: a 2xx is an acknowledged write (kept with its version), anything else is counted
//! by status, or by kind for a failure with no HTTP answer. Each fault is one phase: load, fault,
//! recovery, more load; then the writers stop and the phase is checked:
//!
//! - `pg`: PostgreSQL stopped (fast shutdown) and started again after `--pg-down-secs`. Requests may
//!   fail, but only with 503 and a JSON `error`, none may take longer than the request timeout, and
//!   writes succeed again after the restart.
//! - `nats`: nats-server stopped (SIGTERM) and started again after `--nats-down-secs`. No request may
//!   fail: requests do not need NATS.
//! - `kill`: harden killed with SIGKILL and started again after `--kill-down-secs`. Requests fail
//!   only while it is down (no answer at all); after it is back, none fails.
//!
//! After each: every acknowledged write reads back through the Proxy with its value and version;
//! the projections and the relay catch up (`/ready` lags 0, no event beyond any checkpoint, as
//! many stream messages as events); and each event is on the stream once and in the read models
//! once ([`crate::check::consistency`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::api::{Api, User};
use crate::check;
use crate::services::{Harden, Nats, Postgres, Scratch};

#[derive(clap::Args)]
pub struct Args {
    /// The harden binary (a release build).
    #[arg(long)]
    harden_bin: PathBuf,
    /// Where the scratch directory (cluster, NATS store, logs) goes.
    #[arg(long, default_value = "/var/tmp")]
    scratch: PathBuf,
    /// Which faults, in order.
    #[arg(long, value_delimiter = ',', default_value = "pg,nats,kill")]
    faults: Vec<Fault>,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Users the writers write as.
    #[arg(long, default_value_t = 8)]
    users: usize,
    /// Load before each fault.
    #[arg(long, default_value_t = 5)]
    lead_secs: u64,
    /// Load after each recovery.
    #[arg(long, default_value_t = 10)]
    tail_secs: u64,
    /// Longer than harden's 10 s wait for a pooled connection, so that both outcomes show: requests
    /// that wait and succeed once it is back, and 503s.
    #[arg(long, default_value_t = 15)]
    pg_down_secs: u64,
    #[arg(long, default_value_t = 5)]
    nats_down_secs: u64,
    #[arg(long, default_value_t = 1)]
    kill_down_secs: u64,
    /// harden's `HARDEN_REQUEST_TIMEOUT_SECS`; no request may take longer than this (plus 2 s).
    #[arg(long, default_value_t = 15)]
    request_timeout_secs: u64,
    /// How long the projections and the relay get to catch up after each phase.
    #[arg(long, default_value_t = 60)]
    catch_up_secs: u64,
    /// Write the outcome of every request (JSON lines) here.
    #[arg(long)]
    requests_log: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// PostgreSQL restarted.
    Pg,
    /// NATS stopped and started.
    Nats,
    /// NATS killed with SIGKILL and started (optional: a killed process, not a lost machine, so the
    /// operating system still holds what it wrote).
    NatsKill,
    /// harden killed with SIGKILL and restarted.
    Kill,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Pg => "PostgreSQL restart",
            Fault::Nats => "NATS stop/start",
            Fault::NatsKill => "SIGKILL of NATS",
            Fault::Kill => "SIGKILL of harden",
        }
    }
}

/// What became of one request.
#[derive(Clone, Debug)]
enum Reply {
    Ok,
    Status { status: u16, json_error: bool },
    NoAnswer { kind: &'static str },
}

#[derive(Clone, Debug)]
struct Outcome {
    /// When the request was sent and when its answer (or failure) came, from the phase's start.
    sent: Duration,
    done: Duration,
    reply: Reply,
}

/// An acknowledged write.
#[derive(Clone, Debug)]
struct Acked {
    user: usize,
    key: String,
    value: Vec<u8>,
    version: i64,
}

/// Dropped in this order (fields drop in declaration order): harden, then the services it uses,
/// then their directory.
struct Services {
    harden: Harden,
    nats: Nats,
    postgres: Postgres,
    _scratch: Scratch,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let scratch = Scratch::new(&args.scratch, "harden-faults")?;
    let postgres = Postgres::start(scratch.path())?;
    let nats = Nats::start(scratch.path())?;
    let env = vec![
        ("HARDEN_DATABASE_URL".to_owned(), postgres.url("harden")),
        ("HARDEN_NATS_URL".to_owned(), nats.url()),
        ("HARDEN_REQUEST_TIMEOUT_SECS".to_owned(), args.request_timeout_secs.to_string()),
        ("HARDEN_LOG".to_owned(), std::env::var("HARDEN_LOG").unwrap_or_else(|_| "warn".into())),
    ];
    let harden = Harden::start(&args.harden_bin, scratch.path(), env)?;
    eprintln!(
        "faults: private PostgreSQL on :{}, NATS on :{}, harden on :{} (Backend) and :{} (Proxy); logs in {}",
        postgres.port,
        nats.port,
        harden.backend_port,
        harden.proxy_port,
        harden.log().display()
    );
    let mut services = Services { harden, nats, postgres, _scratch: scratch };
    let outcome = drive(&args, &mut services).await;
    if outcome.is_err() {
        // The scratch directory is removed on the way out: keep the server's log.
        let kept = std::env::temp_dir().join(format!("harden-faults-{}.log", std::process::id()));
        if std::fs::copy(services.harden.log(), &kept).is_ok() {
            eprintln!("faults: harden's log kept in {}", kept.display());
        }
    }
    outcome
}

async fn drive(args: &Args, services: &mut Services) -> anyhow::Result<()> {
    let backend = format!("http://127.0.0.1:{}", services.harden.backend_port);
    let proxy = format!("http://127.0.0.1:{}", services.harden.proxy_port);
    let client_timeout = Duration::from_secs(args.request_timeout_secs + 5);
    let api = Api::new(&backend, &proxy, client_timeout)?;
    let admin_key = std::fs::read_to_string(services.harden.data_dir().join("global-admin.key"))
        .context("read the global admin key")?;
    let (org, org_admin) = api.org(admin_key.trim(), "faults").await?;
    let users = Arc::new(api.users_with_keys(&org_admin, &org, args.users).await?);
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_lazy(&services.postgres.url("harden"))?;
    let mut log = args.requests_log.as_ref().map(std::fs::File::create).transpose()?;

    let mut reports = Vec::new();
    for (n, &fault) in args.faults.iter().enumerate() {
        eprintln!("faults: phase {}: {}", n + 1, fault.name());
        let phase_start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..args.writers)
            .map(|w| tokio::spawn(writer(api.clone(), users.clone(), w, n, phase_start, stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(args.lead_secs)).await;
        let injected = phase_start.elapsed();
        inject(fault, args, services).await?;
        let restored = phase_start.elapsed();
        tokio::time::sleep(Duration::from_secs(args.tail_secs)).await;
        stop.store(true, Ordering::SeqCst);
        let mut outcomes = Vec::new();
        let mut acked = Vec::new();
        for writer in writers {
            let (o, a) = writer.await?;
            outcomes.extend(o);
            acked.extend(a);
        }
        if let Some(log) = log.as_mut() {
            use std::io::Write;
            for o in &outcomes {
                writeln!(
                    log,
                    "{}",
                    json!({ "phase": fault.name(), "sentMs": o.sent.as_millis(), "doneMs": o.done.as_millis(), "reply": format!("{:?}", o.reply) })
                )?;
            }
        }
        let report =
            check_phase(args, (n, fault), services, &api, &pool, &users, (injected, restored), &outcomes, &acked)
                .await?;
        println!("{}", json!({ "phase": report }));
        reports.push(report);
    }
    print_table(&reports);
    let violations: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            let phase = r["fault"].as_str().unwrap_or("?").to_owned();
            r["violations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |v| format!("{phase}: {}", v.as_str().unwrap_or("?")))
        })
        .collect();
    anyhow::ensure!(violations.is_empty(), "violations:\n  {}", violations.join("\n  "));
    eprintln!("faults: no violations");
    Ok(())
}

/// Stops the service the fault is about, waits, starts it again.
async fn inject(fault: Fault, args: &Args, services: &mut Services) -> anyhow::Result<()> {
    let blocking = |f: &mut dyn FnMut() -> anyhow::Result<()>| tokio::task::block_in_place(f);
    match fault {
        Fault::Pg => {
            blocking(&mut || services.postgres.stop())?;
            tokio::time::sleep(Duration::from_secs(args.pg_down_secs)).await;
            blocking(&mut || services.postgres.start_again())?;
        }
        Fault::Nats | Fault::NatsKill => {
            let kill = fault == Fault::NatsKill;
            blocking(&mut || if kill { services.nats.kill() } else { services.nats.stop() })?;
            tokio::time::sleep(Duration::from_secs(args.nats_down_secs)).await;
            blocking(&mut || services.nats.start_again())?;
        }
        Fault::Kill => {
            blocking(&mut || services.harden.kill())?;
            tokio::time::sleep(Duration::from_secs(args.kill_down_secs)).await;
            blocking(&mut || services.harden.start_again())?;
        }
    }
    Ok(())
}

/// Writes new keys as one user until told to stop; every answer recorded.
async fn writer(
    api: Api,
    users: Arc<Vec<User>>,
    w: usize,
    phase: usize,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> (Vec<Outcome>, Vec<Acked>) {
    let user_index = w % users.len();
    let user = &users[user_index];
    let (mut outcomes, mut acked) = (Vec::new(), Vec::new());
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("p{phase}-w{w}-{n}");
        let value = format!("value of {key}").into_bytes();
        n += 1;
        let sent = start.elapsed();
        let reply = match api.put_request(user, &key, &value).send().await {
            Ok(response) => {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    match body["version"].as_i64() {
                        Some(version) => {
                            acked.push(Acked { user: user_index, key, value, version });
                            Reply::Ok
                        }
                        None => Reply::Status { status: status.as_u16(), json_error: false },
                    }
                } else {
                    Reply::Status { status: status.as_u16(), json_error: body["error"].is_string() }
                }
            }
            Err(e) => Reply::NoAnswer {
                kind: if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "cut off"
                },
            },
        };
        let failed_without_answer = matches!(reply, Reply::NoAnswer { .. });
        outcomes.push(Outcome { sent, done: start.elapsed(), reply });
        if failed_without_answer {
            // Nothing listens (harden is down): do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (outcomes, acked)
}

#[allow(clippy::too_many_arguments)]
async fn check_phase(
    args: &Args,
    (phase, fault): (usize, Fault),
    services: &Services,
    api: &Api,
    pool: &sqlx::PgPool,
    users: &[User],
    (injected, restored): (Duration, Duration),
    outcomes: &[Outcome],
    acked: &[Acked],
) -> anyhow::Result<Value> {
    let mut violations = Vec::new();
    let limit = Duration::from_secs(args.request_timeout_secs + 2);
    let ok = outcomes.iter().filter(|o| matches!(o.reply, Reply::Ok)).count();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes {
        match &o.reply {
            Reply::Ok => {}
            Reply::Status { status, json_error } => {
                *by_status
                    .entry(format!("{status}{}", if *json_error { "" } else { " (no JSON error)" }))
                    .or_default() += 1
            }
            Reply::NoAnswer { kind } => *by_status.entry(format!("no answer: {kind}")).or_default() += 1,
        }
    }
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| !matches!(o.reply, Reply::Ok)).collect();
    let slowest = outcomes.iter().map(|o| o.done - o.sent).max().unwrap_or_default();
    if slowest > limit {
        violations.push(format!("a request took {:.1} s, beyond the request timeout", slowest.as_secs_f64()));
    }
    // Recovery: the first write acknowledged once the service was back (it may have been sent
    // during the outage and waited).
    let recovered =
        outcomes.iter().filter(|o| o.done >= restored && matches!(o.reply, Reply::Ok)).map(|o| o.done).min();
    let last_failure = failures.iter().map(|o| o.done).max();
    match fault {
        Fault::Pg => {
            for (what, n) in &by_status {
                if what != "503" {
                    violations.push(format!("{n} requests failed with {what}, not 503 with a JSON error"));
                }
            }
        }
        Fault::Nats | Fault::NatsKill => {
            if !failures.is_empty() {
                violations.push(format!("{} requests failed while NATS was away: {by_status:?}", failures.len()));
            }
        }
        Fault::Kill => {
            for o in &failures {
                let while_down = o.done >= injected && o.sent <= restored;
                if !(while_down && matches!(o.reply, Reply::NoAnswer { .. })) {
                    violations.push(format!(
                        "a request sent at {:.2} s failed with {:?} outside the time harden was down ({:.2} s to {:.2} s)",
                        o.sent.as_secs_f64(),
                        o.reply,
                        injected.as_secs_f64(),
                        restored.as_secs_f64()
                    ));
                }
            }
        }
    }
    if recovered.is_none() {
        violations.push("no write succeeded after the recovery".into());
    }

    // Every acknowledged write reads back, with its value and version.
    let stream = check::Nats::connect(&services.nats.url(), "HARDEN_EVENTS").await?;
    let caught = check::catch_up(pool, &stream, api, Duration::from_secs(args.catch_up_secs)).await?;
    if caught.1.is_none() {
        violations.push(format!("not caught up within {} s: {}", args.catch_up_secs, caught.0.to_json()));
    }
    let lost = readback(api, users, acked).await;
    if !lost.is_empty() {
        violations.push(format!("{} acknowledged writes lost or changed, e.g. {}", lost.len(), lost[0]));
    }
    let consistency = check::consistency(pool, &stream).await?;
    violations.extend(consistency.violations());
    // Writes committed whose answer never arrived (cut off, or a 503 after the commit) are fine:
    // they were never acknowledged. Counted to show what the store holds beyond the acknowledged.
    let committed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'SecretCreated' AND payload -> 'SecretCreated' ->> 'key_name' LIKE $1",
    )
    .bind(format!("p{phase}-%"))
    .fetch_one(pool)
    .await?;
    if committed < acked.len() as i64 {
        violations.push(format!("{} writes committed, fewer than the {} acknowledged", committed, acked.len()));
    }
    let rss = services.harden.rss_kib();
    Ok(json!({
        "fault": fault.name(),
        "requests": outcomes.len(),
        "acknowledged": ok,
        "failed": by_status,
        "faultAtS": secs(injected),
        "restoredAtS": secs(restored),
        "firstFailureAtS": failures.iter().map(|o| o.done).min().map(secs),
        "lastFailureAtS": last_failure.map(secs),
        "recoverySecs": recovered.map(|r| secs(r.saturating_sub(restored))),
        "slowestRequestSecs": secs(slowest),
        "acknowledgedReadBack": acked.len() - lost.len(),
        "committedWrites": committed,
        "catchUpSecs": caught.1.map(secs),
        "events": consistency.events,
        "streamMessages": consistency.stream_messages,
        "streamDuplicates": consistency.stream_duplicates,
        "streamMissing": consistency.stream_missing,
        "kvVersionRows": consistency.kv_version_rows,
        "kvWriteEvents": consistency.kv_write_events,
        "auditEntries": consistency.audit_entries,
        "auditDistinctEvents": consistency.audit_distinct_events,
        "rssKib": rss.map(|(now, peak)| json!({ "now": now, "peak": peak })),
        "violations": violations,
    }))
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// The acknowledged writes that do not read back as written: lost, or another value or version.
async fn readback(api: &Api, users: &[User], acked: &[Acked]) -> Vec<String> {
    futures::stream::iter(acked)
        .map(|a| async move {
            match api.get(&users[a.user], &a.key).await {
                Ok((value, version)) if value == a.value && version == a.version => None,
                Ok((_, version)) => {
                    Some(format!("{} reads back other data (version {version}, acknowledged {})", a.key, a.version))
                }
                Err(e) => Some(format!("{}: {e:#}", a.key)),
            }
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

fn print_table(reports: &[Value]) {
    println!();
    println!(
        "| fault | requests | acknowledged | failed (by status) | failures seen (s after fault) | first ack after restore (s) \
         | slowest request (s) | acked writes read back | writes committed | catch-up (s) | events in store (so far) \
         | stream messages (doubled/missing) | violations |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        let fault_at = r["faultAtS"].as_f64().unwrap_or(0.0);
        let window = match (r["firstFailureAtS"].as_f64(), r["lastFailureAtS"].as_f64()) {
            (Some(a), Some(b)) => format!("{:.2} to {:.2}", a - fault_at, b - fault_at),
            _ => "none".into(),
        };
        let failed = r["failed"].as_object().map(|m| {
            if m.is_empty() {
                "0".to_owned()
            } else {
                m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
            }
        });
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {} ({}/{}) | {} |",
            r["fault"].as_str().unwrap_or("?"),
            r["requests"],
            r["acknowledged"],
            failed.unwrap_or_default(),
            window,
            r["recoverySecs"],
            r["slowestRequestSecs"],
            r["acknowledgedReadBack"],
            r["acknowledged"],
            r["committedWrites"],
            r["catchUpSecs"],
            r["events"],
            r["streamMessages"],
            r["streamDuplicates"],
            r["streamMissing"],
            r["violations"].as_array().map(|v| v.len()).unwrap_or(0),
        );
    }
}
