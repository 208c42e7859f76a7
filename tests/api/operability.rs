//! Metrics, the browsable API documents, rate limits on the anonymous routes, and HTTPS on the Proxy.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{expect_error, expect_json, spawn_app, spawn_app_with, TestApp};

const SECRET: &str = "correct horse battery staple";

async fn scrape(app: &TestApp) -> String {
    let res = app.client.get(format!("{}/metrics", app.metrics.as_ref().unwrap())).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    res.text().await.unwrap()
}

/// The value of the sample `name{labels}` (labels in the order they are written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_report_lag_appends_and_unlocks() {
    let app = spawn_app_with(|s| s.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let fx = app.org_with_users("metrics").await;
    assert_eq!(app.put_kv("db-password", &fx.member_key, 8).await.status(), StatusCode::CREATED);
    assert_eq!(app.get("/kv/db-password", &fx.member_key).await.status(), StatusCode::OK);
    assert_eq!(app.get("/kv/missing", &fx.member_key).await.status(), StatusCode::NOT_FOUND);
    app.client.get(format!("{}/no/such/path", app.backend)).send().await.unwrap();
    // Through the Proxy: the first write unlocks the keys (a miss), the next ones find them cached.
    let headers = [("X-Api-Key", fx.admin_key.as_str()), ("X-User-Secret", SECRET)];
    let res = app.proxy(Method::POST, "/v1/keys/generate", &headers, None).await;
    expect_json(res, StatusCode::CREATED).await;
    for name in ["a", "b", "c"] {
        let res =
            app.proxy(Method::PUT, &format!("/v1/kv/{name}"), &headers, Some(json!({ "valueB64": "AAEC" }))).await;
        expect_json(res, StatusCode::CREATED).await;
    }

    let text = scrape(&app).await;
    let count = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"));
    let backend = |method: &str, route: &str, status: u16| {
        format!("harden_http_requests_total{{surface=\"backend\",method=\"{method}\",route=\"{route}\",status=\"{status}\"}}")
    };
    assert!(count(&backend("PUT", "/kv/{key}", 201)) >= 1.0);
    assert!(count(&backend("GET", "/kv/{key}", 200)) >= 1.0);
    assert!(count(&backend("GET", "/kv/{key}", 404)) >= 1.0);
    assert!(count(&backend("GET", "unmatched", 404)) >= 1.0);
    assert_eq!(
        count("harden_http_requests_total{surface=\"proxy\",method=\"PUT\",route=\"/v1/kv/{key}\",status=\"201\"}"),
        3.0
    );
    let latency = "harden_http_request_duration_seconds_count{surface=\"backend\",method=\"PUT\",route=\"/kv/{key}\",status=\"201\"}";
    assert!(count(latency) >= 1.0);
    // Concrete paths never become labels.
    assert!(!text.contains("db-password") && !text.contains("/no/such/path"));

    assert_eq!(count("harden_unlock_cache_misses_total"), 1.0, "one Argon2id run");
    assert_eq!(count("harden_unlock_cache_hits_total"), 2.0, "two requests served from the cache");
    assert!(count("harden_events_appended_total{aggregate=\"Secret\"}") >= 3.0);
    assert!(count("harden_events_appended_total{aggregate=\"User\"}") >= 2.0);
    for follower in ["kv", "audit", "directory", "nats-relay"] {
        let lag = count(&format!("harden_follower_lag_seconds{{follower=\"{follower}\"}}"));
        assert!(lag >= 0.0, "{follower}");
    }
    assert_eq!(count("harden_database_up"), 1.0);
    assert!(count("harden_process_resident_memory_bytes") > 1e6);
    assert!(text.ends_with("# EOF\n"));

    // Only the metrics listener serves them; the API listeners do not.
    for base in [&app.backend, &app.proxy] {
        let res = app.client.get(format!("{base}/metrics")).send().await.unwrap();
        expect_error(res, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn without_a_metrics_address_no_metrics_listener_runs() {
    let app = spawn_app().await;
    assert!(app.metrics.is_none());
}

#[tokio::test]
async fn each_listener_serves_a_browsable_page_over_its_document() {
    let app = spawn_app().await;
    for base in [&app.backend, &app.proxy] {
        let res = app.client.get(format!("{base}/docs/")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{base}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(res.text().await.unwrap().contains("swagger-ui"), "{base}");
        // The page's scripts come from harden itself, not from a CDN, and point at its document.
        let init = app.client.get(format!("{base}/docs/swagger-initializer.js")).send().await.unwrap();
        assert_eq!(init.status(), StatusCode::OK);
        assert!(init.text().await.unwrap().contains("/openapi.json"), "{base}");
        let bundle = app.client.get(format!("{base}/docs/swagger-ui-bundle.js")).send().await.unwrap();
        assert_eq!(bundle.status(), StatusCode::OK);
        assert!(bundle.bytes().await.unwrap().len() > 100_000);
    }
}

#[tokio::test]
async fn anonymous_routes_are_rate_limited_per_client_address() {
    let app = spawn_app_with(|s| {
        s.anonymous_rate_per_sec = 1;
        s.anonymous_burst = 3;
    })
    .await;
    let fx = app.org_with_users("limits").await;
    // A distinct address per listener: what the Proxy passes through also counts at the Backend.
    for (base, limited, other) in
        [(&app.backend, "198.51.100.7", "198.51.100.8"), (&app.proxy, "198.51.100.17", "198.51.100.18")]
    {
        let from = |path: &str, address: &str| {
            app.client.get(format!("{base}{path}")).header("x-forwarded-for", address.to_owned()).send()
        };
        for _ in 0..3 {
            assert_eq!(from("/auth/plans", limited).await.unwrap().status(), StatusCode::OK, "{base}");
        }
        let res = from("/auth/plans", limited).await.unwrap();
        let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "{retry_after}");
        let msg = expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
        assert!(msg.contains("too many requests"), "{msg}");
        // Every anonymous route and unknown paths draw on the same allowance of that address.
        for path in ["/health", "/auth/orgadmin/login", "/openapi.json", "/docs/", "/no/such/path"] {
            assert_eq!(from(path, limited).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS, "{base}{path}");
        }
        // Another address has its own allowance.
        assert_eq!(from("/auth/plans", other).await.unwrap().status(), StatusCode::OK, "{base}");
    }
    // The documents name the 429 on the anonymous operations, and only there.
    for base in [&app.backend, &app.proxy] {
        let res = app.client.get(format!("{base}/openapi.json")).header("x-forwarded-for", "192.0.2.1").send().await;
        let doc = expect_json(res.unwrap(), StatusCode::OK).await;
        assert!(doc["paths"]["/health"]["get"]["responses"]["429"].is_object(), "{base}");
    }
    let res = app.client.get(format!("{}/openapi.json", app.backend)).header("x-forwarded-for", "192.0.2.1").send();
    let doc = expect_json(res.await.unwrap(), StatusCode::OK).await;
    assert!(doc["paths"]["/auth/orgadmin/login"]["post"]["responses"]["429"].is_object());
    assert!(doc["paths"]["/kv"]["get"]["responses"].get("429").is_none());
    // Routes that take credentials are not limited by it.
    for _ in 0..10 {
        let res = app
            .client
            .get(format!("{}/users/me", app.backend))
            .header("x-forwarded-for", "198.51.100.7")
            .header("X-Api-Key", &fx.member_key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // The allowance refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res =
        app.client.get(format!("{}/auth/plans", app.backend)).header("x-forwarded-for", "198.51.100.7").send().await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

#[tokio::test]
async fn the_proxy_serves_https_when_a_certificate_is_configured() {
    let app = spawn_app_with(|s| {
        s.tls_cert_file = Some(fixture("server.pem"));
        s.tls_key_file = Some(fixture("server.key"));
    })
    .await;
    let port = app.proxy.rsplit(':').next().unwrap().to_owned();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();

    // A client that opens a connection and never says anything does not hold up the others.
    let _silent = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap();

    let res = client.get(format!("https://localhost:{port}/health")).send().await.unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(expect_json(res, StatusCode::OK).await, json!({ "status": "ok" }));
    // A pass-through route and the client address reach the Backend through HTTPS too.
    let res = client.get(format!("https://localhost:{port}/auth/plans")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Plain HTTP on the HTTPS port gets no answer, and a client that does not trust the CA refuses it.
    assert!(app.client.get(format!("http://127.0.0.1:{port}/health")).send().await.is_err());
    assert!(reqwest::Client::new().get(format!("https://localhost:{port}/health")).send().await.is_err());
    // The Backend listener is unchanged (it is meant to stay on the private network).
    assert_eq!(app.client.get(format!("{}/health", app.backend)).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_at_start() {
    let db = std::sync::Arc::new(crate::helpers::TestDb::new());
    let dir = tempfile::TempDir::new().unwrap();
    let mut settings = crate::helpers::test_settings(&db, dir.path().join("data"));
    settings.tls_cert_file = Some(fixture("server.pem"));
    let err = harden::Application::build(&settings, harden::Surfaces::Proxy).await.err().expect("refused");
    assert!(err.to_string().contains("HARDEN_TLS_CERT_FILE and HARDEN_TLS_KEY_FILE"), "{err}");
    settings.tls_key_file = Some(fixture("ca.pem"));
    let err = harden::Application::build(&settings, harden::Surfaces::Proxy).await.err().expect("refused");
    assert!(format!("{err:#}").contains("HARDEN_TLS_KEY_FILE"), "{err:#}");
}

/// A TLS 1.3 handshake with the Proxy from a client that offers the given key exchange groups
/// only; answers the group negotiated and the status line of `GET /health`.
async fn handshake_offering(
    port: &str,
    groups: Vec<&'static dyn tokio_rustls::rustls::crypto::SupportedKxGroup>,
) -> Result<(tokio_rustls::rustls::NamedGroup, String), String> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_file(fixture("ca.pem")).unwrap()).unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = groups;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let group = tls.get_ref().1.negotiated_key_exchange_group().map(|g| g.name()).ok_or("no group")?;
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer).await;
    Ok((group, answer.lines().next().unwrap_or_default().to_owned()))
}

#[tokio::test]
async fn the_proxy_negotiates_the_hybrid_post_quantum_group_with_a_client_that_offers_only_it() {
    let app = spawn_app_with(|s| {
        s.tls_cert_file = Some(fixture("server.pem"));
        s.tls_key_file = Some(fixture("server.key"));
    })
    .await;
    let port = app.proxy.rsplit(':').next().unwrap().to_owned();
    let (group, status) = handshake_offering(&port, vec![harden::tls::X25519_MLKEM768]).await.expect("handshake");
    assert_eq!(group, tokio_rustls::rustls::NamedGroup::X25519MLKEM768);
    assert_eq!(status, "HTTP/1.1 200 OK");
    // A client that offers it first among others, as browsers do, gets it ...
    let both = vec![harden::tls::X25519_MLKEM768, tokio_rustls::rustls::crypto::ring::kx_group::X25519];
    assert_eq!(handshake_offering(&port, both).await.unwrap().0, tokio_rustls::rustls::NamedGroup::X25519MLKEM768);
    // ... and a classical-only client still connects, with X25519.
    let classical = vec![tokio_rustls::rustls::crypto::ring::kx_group::X25519];
    assert_eq!(handshake_offering(&port, classical).await.unwrap().0, tokio_rustls::rustls::NamedGroup::X25519);
}
