//! Bad input is a clear 4xx with `{ "error": ... }`, never a 500, and nothing is written.

use reqwest::StatusCode;

use crate::helpers::{expect_error, spawn_app};

#[tokio::test]
async fn malformed_bodies_are_refused_with_clear_messages_and_nothing_written() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let users = format!("/admin/orgs/{}/users", fx.org);
    let huge = format!("{{\"name\":\"{}\"}}", "a".repeat(70 * 1024));
    // (case, path, body, content type, expected status, expected message fragment)
    type Case<'a> = (&'a str, String, String, Option<&'a str>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "truncated JSON",
            "/admin/orgs".into(),
            "{\"name\":".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            "not JSON",
            "/admin/orgs".into(),
            "name=acme".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            "wrong type",
            "/admin/orgs".into(),
            "{\"name\":42}".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "expected a string",
        ),
        (
            "unknown field",
            "/admin/orgs".into(),
            "{\"name\":\"x\",\"owner\":\"me\"}".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "unknown field `owner`",
        ),
        (
            "array body",
            "/admin/orgs".into(),
            "[]".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        (
            "no content type",
            "/admin/orgs".into(),
            "{\"name\":\"x\"}".into(),
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: application/json",
        ),
        (
            "oversize body",
            "/admin/orgs".into(),
            huge,
            Some("application/json"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
        ),
        (
            "isAdmin as string",
            users.clone(),
            "{\"name\":\"x\",\"isAdmin\":\"yes\"}".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "expected a boolean",
        ),
        (
            "half a key pair",
            users.clone(),
            "{\"name\":\"x\",\"publicKeyEccB64\":\"AAAA\"}".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "must be given together",
        ),
        (
            "invalid base64 key",
            users.clone(),
            "{\"name\":\"x\",\"publicKeyEccB64\":\"@@\",\"publicKeyKyberB64\":\"@@\"}".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "not valid base64",
        ),
        (
            "control characters in a name",
            users.clone(),
            "{\"name\":\"a\\u0000b\"}".into(),
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "control characters",
        ),
    ];
    let before = app.event_count().await;
    for (case, path, body, content_type, status, expected) in cases {
        let key = if path == "/admin/orgs" { &app.global_admin_key } else { &fx.admin_key };
        let mut req = app.client.post(format!("{}{path}", app.backend)).header("X-Api-Key", key.as_str()).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let msg = expect_error(req.send().await.unwrap(), status).await;
        assert!(msg.contains(expected), "{case}: expected {expected:?} in {msg:?}");
    }
    assert_eq!(app.event_count().await, before, "nothing was written");
}

#[tokio::test]
async fn non_uuid_ids_in_paths_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let cases = [
        (reqwest::Method::GET, "/admin/orgs/acme/users".to_owned(), "orgId"),
        (reqwest::Method::POST, format!("/admin/orgs/{}/users/42/apikey/rotate", fx.org), "userId"),
        (reqwest::Method::DELETE, format!("/admin/orgs/{}/users/not-a-user", fx.org), "userId"),
        (reqwest::Method::PUT, "/admin/orgs/1234/plan".to_owned(), "orgId"),
        (reqwest::Method::GET, "/users/org/%27%3B%20DROP%20TABLE%20events".to_owned(), "userId"),
    ];
    for (method, path, param) in cases {
        let key = if method == reqwest::Method::PUT { &app.global_admin_key } else { &fx.admin_key };
        let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE)
            .then(|| serde_json::json!({ "plan": "free" }));
        let msg =
            expect_error(app.request(method.clone(), &path, Some(key), body).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains(param) && msg.contains("expected a UUID"), "{method} {path}: {msg}");
    }
}

#[tokio::test]
async fn nul_bytes_and_bad_cursors_in_query_parameters_are_400() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    for path in ["/audit?key=%00", "/audit?key=a%00b", "/kv?cursor=AA", "/kv?cursor=YQBi", "/kv/x?version=abc"] {
        let key = if path.starts_with("/audit") { &fx.admin_key } else { &fx.member_key };
        expect_error(app.get(path, key).await, StatusCode::BAD_REQUEST).await;
    }
}

/// The routes that read a raw body (the webhooks, whose signatures cover its exact bytes, and the
/// Proxy's restore, whose body is optional) answered a body over the limit with axum's plain-text
/// 413; found while documenting the answers schemathesis checks.
#[tokio::test]
async fn raw_bodies_over_the_limit_are_413_with_a_json_error() {
    let app = spawn_app().await;
    let huge = format!("{{\"data\":\"{}\"}}", "a".repeat(70 * 1024));
    let urls = [
        format!("{}/webhooks/clerk", app.backend),
        format!("{}/webhooks/stripe", app.backend),
        format!("{}/v1/recovery/restore/{}", app.proxy, uuid::Uuid::new_v4()),
    ];
    for url in urls {
        let res = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("X-Api-Key", app.global_admin_key.as_str())
            .header("X-User-Secret", "a user secret")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(res, StatusCode::PAYLOAD_TOO_LARGE).await, "request body too large", "{url}");
    }
}
