//! A database outage is answered 503 with a JSON error and `Retry-After`, on the Backend and through
//! the Proxy, never 500; once the database is back, requests succeed again and nothing committed is
//! lost. Runs on a private PostgreSQL cluster, which the test stops and starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use harden::{Application, Surfaces};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::follower::PrivateCluster;
use crate::helpers::{eventually, expect_json, kv_body, test_settings, TestDb};

/// The answer must be a 503 with a JSON `error` and `Retry-After`.
async fn expect_unavailable(what: &str, res: reqwest::Response) {
    let status = res.status();
    let retry_after = res.headers().get("retry-after").cloned();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("database is unavailable")), "{what}: {body}");
    assert!(retry_after.is_some(), "{what}: Retry-After");
}

#[tokio::test]
async fn a_database_outage_is_answered_503_and_service_resumes_when_it_is_back() {
    let cluster = PrivateCluster::start();
    // The database lives on the private cluster; the TestDb only names the test's NATS stream.
    let db = Arc::new(TestDb::new());
    let data_dir = Arc::new(TempDir::new().unwrap());
    let mut settings = test_settings(&db, data_dir.path().join("data"));
    settings.database_url = SecretString::from(cluster.url("harden"));
    harden::telemetry::init(&settings);
    let app = Application::build(&settings, Surfaces::Both).await.expect("application builds");
    let backend = format!("http://127.0.0.1:{}", app.backend_port().unwrap());
    let proxy = format!("http://127.0.0.1:{}", app.proxy_port().unwrap());
    let server = tokio::spawn(async move { app.run_until(std::future::pending()).await.unwrap() });
    let admin_key = std::fs::read_to_string(settings.data_dir.join("global-admin.key")).unwrap();
    let http = reqwest::Client::new();

    let org = expect_json(
        http.post(format!("{backend}/admin/orgs"))
            .header("X-Api-Key", &admin_key)
            .json(&json!({ "name": "acme" }))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let user = expect_json(
        http.post(format!("{backend}/admin/orgs/{}/users", org["id"].as_str().unwrap()))
            .header("X-Api-Key", &admin_key)
            .json(&json!({ "name": "Jane", "isAdmin": true }))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let key = user["apiKey"].as_str().unwrap().to_owned();
    let put = |name: &str| http.put(format!("{backend}/kv/{name}")).header("X-Api-Key", &key).json(&kv_body(16, 7));
    let get = |name: &str| http.get(format!("{backend}/kv/{name}")).header("X-Api-Key", &key);
    expect_json(put("before").send().await.unwrap(), StatusCode::CREATED).await;

    cluster.stop();
    let started = Instant::now();
    let (read, write, listing) = tokio::join!(
        get("before").send(),
        put("during").send(),
        http.get(format!("{proxy}/v1/kv")).header("X-Api-Key", &key).send(),
    );
    expect_unavailable("Backend read", read.unwrap()).await;
    expect_unavailable("Backend write", write.unwrap()).await;
    expect_unavailable("Proxy listing", listing.unwrap()).await;
    // Within the pool's acquire timeout, far inside the request timeout.
    assert!(started.elapsed() < Duration::from_secs(20), "answered after {:?}", started.elapsed());

    cluster.start_again();
    eventually("writes succeed again", || async { put("after").send().await.unwrap().status() == StatusCode::CREATED })
        .await;
    let before = expect_json(get("before").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(before["version"], 1, "the write committed before the outage is there");
    expect_json(get("after").send().await.unwrap(), StatusCode::OK).await;
    server.abort();
}
