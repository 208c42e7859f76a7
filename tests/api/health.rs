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
