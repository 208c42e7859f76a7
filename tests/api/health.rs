use reqwest::StatusCode;

use crate::helpers::{expect_json, spawn_app};

#[tokio::test]
async fn health_answers_ok_on_both_listeners() {
    let app = spawn_app().await;
    for base in [&app.backend, &app.proxy] {
        let res = app.client.get(format!("{base}/health")).send().await.unwrap();
        assert!(res.headers().contains_key("x-request-id"), "{base}: every response carries a request id");
        let body = expect_json(res, StatusCode::OK).await;
        assert_eq!(body, serde_json::json!({ "status": "ok" }), "{base}");
    }
}

#[tokio::test]
async fn a_client_request_id_is_echoed() {
    let app = spawn_app().await;
    let res =
        app.client.get(format!("{}/health", app.backend)).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let res = app.client.get(format!("{}/no/such/route", app.backend)).send().await.unwrap();
    let body = expect_json(res, StatusCode::NOT_FOUND).await;
    assert_eq!(body["error"], "no such route");
    let res = app.client.delete(format!("{}/auth/plans", app.backend)).send().await.unwrap();
    let body = expect_json(res, StatusCode::METHOD_NOT_ALLOWED).await;
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn ready_checks_the_database_migrations_and_followers_on_both_listeners() {
    let app = crate::helpers::spawn_app_with(|s| s.follower_stall_secs = 1).await;
    for base in [&app.backend, &app.proxy] {
        let body = expect_json(app.client.get(format!("{base}/ready")).send().await.unwrap(), StatusCode::OK).await;
        assert_eq!(body["status"], "ready", "{base}");
        let followers: Vec<&str> =
            body["followers"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert!(followers.contains(&"kv") && followers.contains(&"audit"), "{followers:?}");
    }

    // Hold the kv follower's lock: a write it cannot apply stalls it, and /ready says so.
    let org = app.org_with_users("ready").await;
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('kv', 0))").execute(&mut *tx).await.unwrap();
    app.put_kv("stalled", &org.member_key, 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for base in [&app.backend, &app.proxy] {
        let res = app.client.get(format!("{base}/ready")).send().await.unwrap();
        let body = expect_json(res, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(body["error"], "not ready: followers stalled: kv", "{base}");
    }
    tx.rollback().await.unwrap();
    crate::helpers::eventually("the follower catches up and /ready is 200 again", || async {
        app.client.get(format!("{}/ready", app.backend)).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn a_proxy_whose_backend_is_unreachable_is_not_ready() {
    let db = crate::helpers::TestDb::new();
    let dir = tempfile::TempDir::new().unwrap();
    let mut settings = crate::helpers::test_settings(&db, dir.path().join("data"));
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    settings.proxy_backend_url = format!("http://{closed}");
    let proxy = harden::Application::build(&settings, harden::Surfaces::Proxy).await.unwrap();
    let base = format!("http://127.0.0.1:{}", proxy.proxy_port().unwrap());
    let server = tokio::spawn(async move { proxy.run_until(std::future::pending()).await });
    let client = reqwest::Client::new();
    expect_json(client.get(format!("{base}/health")).send().await.unwrap(), StatusCode::OK).await;
    let body =
        expect_json(client.get(format!("{base}/ready")).send().await.unwrap(), StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"], "not ready: the Backend is unreachable");
    server.abort();
}
