//! `harden-bench kv`: drives a running harden with concurrent clients and reports throughput and
//! latency percentiles. `bench/run` starts harden on a fresh database, runs this, and measures raw
//! PostgreSQL with pgbench in the same run for comparison.
//!
//! Each client is its own user of one org (business plan) and writes and reads its own keys, as
//! independent services sharing a vault would.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// The Backend's base URL.
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    backend: String,
    /// The global admin key file of that harden.
    #[arg(long)]
    admin_key_file: std::path::PathBuf,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Duration of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Keys per client that the update and read phases cycle over (the create phase writes at least
    /// this many; fewer and the bench stops with an error).
    #[arg(long, default_value_t = 50)]
    keys: usize,
    /// Plaintext bytes per value (the ciphertext adds 29).
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Delete this JetStream stream afterwards (the bench's own).
    #[arg(long)]
    delete_stream: Option<String>,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Also drive the Proxy at this base URL (keys generated through it, PUT/GET /v1/kv).
    #[arg(long)]
    proxy: Option<String>,
    /// Skip the Backend phases (for a second run against a differently configured Proxy).
    #[arg(long)]
    proxy_only: bool,
    /// Label for the Proxy phases (e.g. "cache on").
    #[arg(long, default_value = "")]
    label: String,
}

const USER_SECRET: &str = "bench user secret 0123456789";
/// Keys per client in the Proxy phases.
const PROXY_KEYS: usize = 5;

struct Phase {
    name: &'static str,
    ops: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Phase {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }
    fn rps(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let admin_key = std::fs::read_to_string(&args.admin_key_file).context("read the global admin key")?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients * 2).build()?;
    let keys = setup(&client, &args, admin_key.trim()).await?;
    // Random bytes, as a real ciphertext and wraps are: nothing on the way can compress them.
    let body = json!({
        "ciphertextB64": STANDARD.encode(crate::counts::random_bytes(29 + args.value_bytes)),
        "encryptedAesKeyEccB64": STANDARD.encode(crate::counts::random_bytes(33)),
        "encryptedAesKeyKyberB64": STANDARD.encode(crate::counts::random_bytes(1149)),
    });
    let mut phases = Vec::new();
    if !args.proxy_only {
        // New keys: each create also moves the org's record count, which serializes creates per org.
        let create =
            run_phase(&client, &args.backend, &args, &keys, "PUT /kv/{key} new", Some(body.clone()), Naming::Fresh)
                .await;
        ensure!(
            create.ops >= args.keys * args.clients,
            "the create phase wrote fewer keys than the other phases use; lower --keys"
        );
        phases.push(create);
        // Updates and reads cycle over keys that exist.
        phases.push(
            run_phase(&client, &args.backend, &args, &keys, "PUT /kv/{key} update", Some(body), Naming::Cycle).await,
        );
        phases.push(run_phase(&client, &args.backend, &args, &keys, "GET /kv/{key}", None, Naming::Cycle).await);
    }
    if let Some(proxy) = &args.proxy {
        for key in &keys {
            client
                .post(format!("{proxy}/v1/keys/generate"))
                .header("X-Api-Key", key)
                .header("X-User-Secret", USER_SECRET)
                .send()
                .await?
                .error_for_status()?;
        }
        let value = json!({ "valueB64": STANDARD.encode(crate::counts::random_bytes(args.value_bytes)) });
        let base = format!("{proxy}/v1");
        // Untimed warm-up: every client writes its Proxy keys once (the first request of a user
        // pays its unlock; with the cache off, every request does).
        let warm: Vec<_> = keys
            .iter()
            .map(|key| {
                let (client, key, value, base) = (client.clone(), key.clone(), value.clone(), base.clone());
                tokio::spawn(async move {
                    for i in 0..PROXY_KEYS {
                        let url = format!("{base}/kv/pkey-{i}");
                        let res = client
                            .put(&url)
                            .header("X-Api-Key", &key)
                            .header("X-User-Secret", USER_SECRET)
                            .json(&value)
                            .send()
                            .await?;
                        anyhow::ensure!(res.status().is_success(), "warm-up write failed: {}", res.status());
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for w in warm {
            w.await??;
        }
        let label = |what: &str| -> &'static str {
            Box::leak(format!("{what} {}", args.label).trim().to_owned().into_boxed_str())
        };
        phases.push(
            run_phase(&client, &base, &args, &keys, label("Proxy PUT /v1/kv/{key}"), Some(value), Naming::ProxyCycle)
                .await,
        );
        phases.push(
            run_phase(&client, &base, &args, &keys, label("Proxy GET /v1/kv/{key}"), None, Naming::ProxyCycle).await,
        );
    }
    for phase in &phases {
        println!(
            "{{\"phase\":\"{}\",\"clients\":{},\"seconds\":{:.1},\"ops\":{},\"errors\":{},\"rps\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
            phase.name,
            args.clients,
            phase.elapsed.as_secs_f64(),
            phase.ops,
            phase.errors,
            phase.rps(),
            phase.percentile(0.50),
            phase.percentile(0.99)
        );
    }
    if let Some(stream) = &args.delete_stream {
        if let Ok(nats) = async_nats::connect(&args.nats_url).await {
            let _ = async_nats::jetstream::new(nats).delete_stream(stream).await;
        }
    }
    ensure!(phases.iter().all(|p| p.errors == 0), "requests failed");
    Ok(())
}

/// An org on the business plan, its first admin, and one user per client: the clients' API keys.
async fn setup(client: &reqwest::Client, args: &Args, admin_key: &str) -> anyhow::Result<Vec<String>> {
    let org: Value = client
        .post(format!("{}/admin/orgs", args.backend))
        .header("X-Api-Key", admin_key)
        .json(&json!({ "name": "bench", "plan": "business" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let org = org["id"].as_str().context("org id")?.to_owned();
    let admin: Value = client
        .post(format!("{}/admin/orgs/{org}/users", args.backend))
        .header("X-Api-Key", admin_key)
        .json(&json!({ "name": "bench admin", "isAdmin": true }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let org_admin = admin["apiKey"].as_str().context("admin key")?.to_owned();
    let mut keys = Vec::new();
    for i in 0..args.clients {
        let user: Value = client
            .post(format!("{}/admin/orgs/{org}/users", args.backend))
            .header("X-Api-Key", &org_admin)
            .json(&json!({ "name": format!("client {i}") }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        keys.push(user["apiKey"].as_str().context("user key")?.to_owned());
    }
    Ok(keys)
}

#[derive(Clone, Copy)]
enum Naming {
    /// A key never written before on every request.
    Fresh,
    /// The client's keys `key-0` .. `key-<keys-1>` in turn (written by the Fresh phase).
    Cycle,
    /// `pkey-0` .. `pkey-<keys-1>` in turn: the Proxy's own records (the Backend phases store
    /// stand-in envelopes the Proxy could not open).
    ProxyCycle,
}

async fn run_phase(
    client: &reqwest::Client,
    base: &str,
    args: &Args,
    keys: &[String],
    name: &'static str,
    body: Option<Value>,
    naming: Naming,
) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = keys
        .iter()
        .map(|api_key| {
            let (client, api_key, body, base, n_keys) =
                (client.clone(), api_key.clone(), body.clone(), base.to_owned(), args.keys);
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, 0usize);
                while Instant::now() < deadline {
                    let url = match naming {
                        Naming::Fresh => format!("{base}/kv/key-{n}"),
                        Naming::Cycle => format!("{base}/kv/key-{}", n % n_keys),
                        Naming::ProxyCycle => format!("{base}/kv/pkey-{}", n % PROXY_KEYS),
                    };
                    let request = match &body {
                        Some(b) => client.put(&url).json(b),
                        None => client.get(&url),
                    };
                    let t = Instant::now();
                    let request = request.header("X-Api-Key", &api_key).header("X-User-Secret", USER_SECRET);
                    let ok = match request.send().await {
                        Ok(r) if r.status().is_success() => true,
                        Ok(r) => {
                            if errors == 0 {
                                eprintln!(
                                    "{name}: first failure: {} {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                );
                            }
                            false
                        }
                        Err(e) => {
                            if errors == 0 {
                                eprintln!("{name}: first failure: {e}");
                            }
                            false
                        }
                    };
                    latencies.push(t.elapsed().as_micros() as u64);
                    errors += usize::from(!ok);
                    n += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut phase = Phase { name, ops: 0, errors: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() };
    for worker in workers {
        let (latencies, errors) = worker.await.expect("worker");
        phase.ops += latencies.len();
        phase.errors += errors;
        phase.latencies_us.extend(latencies);
    }
    phase.elapsed = started.elapsed();
    phase.latencies_us.sort_unstable();
    phase
}

/// The cost of one unlock (Argon2id at the default parameters), one wrap and one unwrap, measured
/// in this process (release build), as JSON lines.
pub fn crypto_costs() -> anyhow::Result<()> {
    use harden_domain::crypto::{self, DataKey, KdfParams, PrivateKeys, RecordContext};
    let time = |name: &str, runs: u32, f: &mut dyn FnMut()| {
        f();
        let started = Instant::now();
        for _ in 0..runs {
            f();
        }
        let each = started.elapsed() / runs;
        println!("{{\"crypto\":\"{name}\",\"runs\":{runs},\"ms_each\":{:.3}}}", each.as_secs_f64() * 1000.0);
    };
    let keys = PrivateKeys::from_seeds([1; 32], [2; 64]);
    let public = keys.public_keys();
    let user = uuid::Uuid::from_u128(1);
    let context = RecordContext { kind: "kv", org: user, owner: user, name: b"bench" };
    let data_key = DataKey::from_bytes([3; 32]);
    let p = KdfParams::DEFAULT;
    time(&format!("unlock: Argon2id m={}KiB t={} p={}", p.m_kib, p.t, p.p), 5, &mut || {
        crypto::derive_kek(USER_SECRET.as_bytes(), [4; 16], p).unwrap();
    });
    let (ecc, kyber) = crypto::wrap_data_key(&public, user, &context, &data_key, &[5; 64], [6; 12]);
    time("wrap: X-Wing encapsulate + AES-256-GCM", 500, &mut || {
        crypto::wrap_data_key(&public, user, &context, &data_key, &[5; 64], [6; 12]);
    });
    time("unwrap: X-Wing decapsulate + AES-256-GCM", 500, &mut || {
        crypto::unwrap_data_key(&keys, user, &context, &ecc, &kyber).unwrap();
    });
    Ok(())
}
