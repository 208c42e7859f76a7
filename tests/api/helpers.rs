//! `spawn_app()`: the real application on port 0 against a fresh database, with typed helpers.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use harden::{Application, Settings, Surfaces};
use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use tempfile::TempDir;
use uuid::Uuid;

pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";
pub const NATS: &str = "nats://127.0.0.1:4222";

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn new() -> Self {
        Self { name: format!("harden_test_{}", Uuid::new_v4().simple()) }
    }
    pub fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let stream = format!("T_{}", name.to_uppercase());
        // Drop runs inside the test's runtime; do the async work on a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&format!("{SERVER}/postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
                if let Ok(client) = async_nats::connect(NATS).await {
                    let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub backend: String,
    pub proxy: String,
    /// `http://127.0.0.1:<port>` of the metrics listener, when `metrics_addr` is set.
    pub metrics: Option<String>,
    pub global_admin_key: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub settings: Settings,
    pub data_dir: Arc<TempDir>,
    pub db: Arc<TestDb>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn test_settings(db: &TestDb, data_dir: PathBuf) -> Settings {
    Settings {
        database_url: SecretString::from(db.url()),
        database_max_connections: 8,
        data_dir,
        backend_addr: "127.0.0.1:0".parse().unwrap(),
        proxy_addr: "127.0.0.1:0".parse().unwrap(),
        log: std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        follower_poll_ms: 100,
        // Read-your-writes is waited for longer than in production: on a loaded two-core machine the
        // followers can be seconds behind, and the tests read right after they write.
        read_model_wait_ms: 10_000,
        // Each test publishes to a stream of its own on the machine's NATS.
        nats_stream: format!("T_{}", db.name.to_uppercase()),
        nats_subject_prefix: format!("t.{}", db.name),
        // The floor, so that tests do not spend seconds per unlock.
        argon2_m_kib: 19 * 1024,
        argon2_t: 2,
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let db = Arc::new(TestDb::new());
    let data_dir = Arc::new(TempDir::new().unwrap());
    let mut settings = test_settings(&db, data_dir.path().join("data"));
    customize(&mut settings);
    start(settings, db, data_dir).await
}

pub async fn start(settings: Settings, db: Arc<TestDb>, data_dir: Arc<TempDir>) -> TestApp {
    harden::telemetry::init(&settings);
    let app = Application::build(&settings, Surfaces::Both).await.expect("application builds");
    let backend = format!("http://127.0.0.1:{}", app.backend_port().unwrap());
    let proxy = format!("http://127.0.0.1:{}", app.proxy_port().unwrap());
    let metrics = app.metrics_port().map(|port| format!("http://127.0.0.1:{port}"));
    let server = tokio::spawn(async move {
        app.run_until(std::future::pending()).await.unwrap();
    });
    let global_admin_key =
        std::fs::read_to_string(settings.data_dir.join("global-admin.key")).expect("global admin key file");
    let pool = PgPool::connect(&db.url()).await.unwrap();
    TestApp {
        backend,
        proxy,
        metrics,
        global_admin_key,
        client: reqwest::Client::new(),
        pool,
        settings,
        data_dir,
        db,
        server,
    }
}

impl TestApp {
    /// A second instance of harden on the same database and data dir.
    pub async fn restart(&self) -> TestApp {
        start(self.settings.clone(), self.db.clone(), self.data_dir.clone()).await
    }

    pub async fn request(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.backend));
        if let Some(key) = key {
            req = req.header("X-Api-Key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request sent")
    }

    /// A request to the Proxy.
    pub async fn proxy(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.proxy));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.request(Method::GET, path, Some(key), None).await
    }
    pub async fn post(&self, path: &str, key: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(key), Some(body)).await
    }
    pub async fn put(&self, path: &str, key: &str, body: Value) -> Response {
        self.request(Method::PUT, path, Some(key), Some(body)).await
    }
    pub async fn delete(&self, path: &str, key: &str) -> Response {
        self.request(Method::DELETE, path, Some(key), None).await
    }

    pub async fn create_org(&self, name: &str) -> Uuid {
        let res = self.post("/admin/orgs", &self.global_admin_key, json!({ "name": name })).await;
        let body = expect_json(res, StatusCode::CREATED).await;
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// The org's first admin, created by the global admin: (user id, API key).
    pub async fn create_first_admin(&self, org: Uuid) -> (Uuid, String) {
        let res = self
            .post(
                &format!("/admin/orgs/{org}/users"),
                &self.global_admin_key,
                json!({ "name": "first admin", "isAdmin": true }),
            )
            .await;
        created_user(res).await
    }

    pub async fn create_user(&self, org: Uuid, admin_key: &str, name: &str, is_admin: bool) -> (Uuid, String) {
        let res = self
            .post(&format!("/admin/orgs/{org}/users"), admin_key, json!({ "name": name, "isAdmin": is_admin }))
            .await;
        created_user(res).await
    }

    /// An org with its first admin and one member.
    pub async fn org_with_users(&self, name: &str) -> OrgFixture {
        let org = self.create_org(name).await;
        let (admin_id, admin_key) = self.create_first_admin(org).await;
        let (member_id, member_key) = self.create_user(org, &admin_key, "member", false).await;
        OrgFixture { org, admin_id, admin_key, member_id, member_key }
    }

    pub async fn put_kv(&self, key: &str, api_key: &str, value_len: usize) -> Response {
        self.put(&kv_path(key), api_key, kv_body(value_len, 7)).await
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&self.pool).await.unwrap()
    }

    /// How many events of `event_type` the store holds.
    pub async fn events_of_type(&self, event_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// A KV write body whose ciphertext stands for `value_len` plaintext bytes (29 bytes of envelope
/// overhead: version, nonce, tag). The bytes are arbitrary: the Backend never decrypts.
pub fn kv_body(value_len: usize, fill: u8) -> Value {
    use base64::Engine;
    let b64 = |n: usize, f: u8| base64::engine::general_purpose::STANDARD.encode(vec![f; n]);
    json!({
        "ciphertextB64": b64(29 + value_len, fill),
        "encryptedAesKeyEccB64": b64(33, 1),
        "encryptedAesKeyKyberB64": b64(1149, 2),
    })
}

/// Percent-encodes a key name for a path segment.
pub fn kv_path(key: &str) -> String {
    let mut out = String::from("/kv/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub struct OrgFixture {
    pub org: Uuid,
    pub admin_id: Uuid,
    pub admin_key: String,
    pub member_id: Uuid,
    pub member_key: String,
}

async fn created_user(res: Response) -> (Uuid, String) {
    let body = expect_json(res, StatusCode::CREATED).await;
    (body["id"].as_str().unwrap().parse().unwrap(), body["apiKey"].as_str().unwrap().to_owned())
}

/// Asserts the status and returns the JSON body, printing the body on a mismatch.
pub async fn expect_json(res: Response, status: StatusCode) -> Value {
    let actual = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts an error status with a `{ "error": "..." }` body and returns the message.
pub async fn expect_error(res: Response, status: StatusCode) -> String {
    let body = expect_json(res, status).await;
    let msg = body["error"].as_str().unwrap_or_else(|| panic!("error body without \"error\": {body}"));
    assert!(!msg.is_empty());
    msg.to_owned()
}

/// Polls `check` until it returns true; fails the test after a generous liveness bound.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Every message in a JetStream stream: (Nats-Msg-Id, subject, payload).
pub async fn stream_messages(nats_url: &str, stream: &str) -> Vec<(String, String, Value)> {
    let Ok(client) = async_nats::connect(nats_url).await else { return vec![] };
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream(stream).await else { return vec![] };
    let state = stream.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let id = msg.headers.get("Nats-Msg-Id").map(|v| v.to_string()).unwrap_or_default();
        out.push((id, msg.subject.to_string(), serde_json::from_slice(&msg.payload).unwrap()));
    }
    out
}

/// The message id every committed event should have on the stream.
pub async fn expected_msg_ids(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT aggregate_type || ':' || aggregate_id || ':' || sequence FROM events ORDER BY tx_id, global_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The forms a plaintext marker could leak in: as is, base64, hex.
fn marker_forms(marker: &str) -> [String; 3] {
    use base64::Engine;
    [marker.to_owned(), base64::engine::general_purpose::STANDARD.encode(marker)[..20].to_owned(), hex::encode(marker)]
}

/// Every row of every table, as text, holds neither `marker` (in any form) nor any of `also`.
pub async fn assert_nowhere_in_the_database(app: &TestApp, marker: &str, also: &[&str]) {
    let tables: Vec<String> = sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t")).fetch_all(&app.pool).await.unwrap();
        for form in marker_forms(marker).iter().map(String::as_str).chain(also.iter().copied()) {
            assert!(!rows.iter().any(|r| r.contains(form)), "{form} found in {table}");
        }
    }
}

/// Once every event committed so far is on the test's stream, none of them holds `marker` in any form.
pub async fn assert_nowhere_on_the_stream(app: &TestApp, marker: &str) {
    let events = app.event_count().await as usize;
    eventually("events on the stream", || async {
        stream_messages(&app.settings.nats_url, &app.settings.nats_stream).await.len() >= events
    })
    .await;
    let stream =
        serde_json::to_string(&stream_messages(&app.settings.nats_url, &app.settings.nats_stream).await).unwrap();
    for form in marker_forms(marker) {
        assert!(!stream.contains(form.as_str()), "{form} found on NATS");
    }
}
