use futures::StreamExt;
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
    let app = crate::helpers::spawn_app_with(|s| {
        s.follower_stall_secs = 1;
        // The write below cannot be applied while the lock is held: it answers after this bound.
        s.read_model_wait_ms = 300;
    })
    .await;
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

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_503_with_its_request_id() {
    let app = crate::helpers::spawn_app_with(|s| s.request_timeout_secs = 1).await;
    // A body that trickles in slower than the time limit.
    let slow = futures::stream::unfold(0, |n| async move {
        if n == 3 {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        Some((Ok::<_, std::io::Error>(bytes_of(if n == 0 { "{\"name\":" } else { " " })), n + 1))
    });
    let res = app
        .client
        .post(format!("{}/admin/orgs", app.backend))
        .header("X-Api-Key", &app.global_admin_key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(slow))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    let body = expect_json(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"], "the request took too long and was stopped; retry");
}

fn bytes_of(s: &'static str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[tokio::test]
async fn cors_is_off_by_default_and_allows_only_the_configured_origins_on_the_proxy() {
    let preflight = |app: &crate::helpers::TestApp, origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/v1/kv", app.proxy))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-api-key, x-user-secret")
            .send()
    };
    let closed = crate::helpers::spawn_app().await;
    let res = preflight(&closed, "https://app.example.test").await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let open = crate::helpers::spawn_app_with(|s| s.cors_allowed_origins = "https://app.example.test".into()).await;
    let res = preflight(&open, "https://app.example.test").await.unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.test");
    let allowed = res.headers()["access-control-allow-headers"].to_str().unwrap().to_owned();
    assert!(allowed.contains("x-user-secret") && allowed.contains("x-api-key"), "{allowed}");
    let res = preflight(&open, "https://evil.example.test").await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    // A simple request from the allowed origin can read the request id.
    let res = open
        .client
        .get(format!("{}/health", open.proxy))
        .header("origin", "https://app.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.test");
    assert!(res.headers()["access-control-expose-headers"].to_str().unwrap().contains("x-request-id"));
}

#[tokio::test]
async fn shutdown_finishes_the_requests_in_flight_within_its_grace_period() {
    let db = std::sync::Arc::new(crate::helpers::TestDb::new());
    let dir = tempfile::TempDir::new().unwrap();
    let settings = crate::helpers::test_settings(&db, dir.path().join("data"));
    let app = harden::Application::build(&settings, harden::Surfaces::Backend).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.backend_port().unwrap());
    let admin_key = std::fs::read_to_string(settings.data_dir.join("global-admin.key")).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    // A request whose body is still arriving when the shutdown begins.
    let parts = ["{\"name\":", " \"late\"", "}"];
    let slow = futures::stream::iter(parts).then(|part| async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        Ok::<_, std::io::Error>(part.as_bytes().to_vec())
    });
    let client = reqwest::Client::new();
    let request = tokio::spawn(
        client
            .post(format!("{base}/admin/orgs"))
            .header("X-Api-Key", admin_key.trim())
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(slow))
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    stop.send(()).unwrap();
    let res = request.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "the request in flight is finished");
    tokio::time::timeout(std::time::Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    assert!(client.get(format!("{base}/health")).send().await.is_err(), "no new connections after the shutdown");
}
