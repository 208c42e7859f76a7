use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{expect_error, expect_json, spawn_app};

#[tokio::test]
async fn global_admin_creates_an_org_on_the_free_plan_by_default() {
    let app = spawn_app().await;
    let res = app.post("/admin/orgs", &app.global_admin_key, json!({ "name": "acme" })).await;
    let body = expect_json(res, StatusCode::CREATED).await;
    assert_eq!(body["name"], "acme");
    assert_eq!(body["plan"], "free");
    assert!(body["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    assert!(body["createdUtc"].is_string());
}

#[tokio::test]
async fn global_admin_may_choose_the_plan_when_creating() {
    let app = spawn_app().await;
    let res = app.post("/admin/orgs", &app.global_admin_key, json!({ "name": "acme", "plan": "business" })).await;
    assert_eq!(expect_json(res, StatusCode::CREATED).await["plan"], "business");
}

#[tokio::test]
async fn created_orgs_are_listed_at_once_oldest_first() {
    let app = spawn_app().await;
    let a = app.create_org("alpha").await;
    let b = app.create_org("beta").await;
    let body = expect_json(app.get("/admin/orgs", &app.global_admin_key).await, StatusCode::OK).await;
    let ids: Vec<_> = body.as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, vec![a.to_string(), b.to_string()]);
    assert_eq!(body[0]["name"], "alpha");
}

#[tokio::test]
async fn org_routes_refuse_bad_plans_and_names() {
    let app = spawn_app().await;
    let cases = [
        (json!({ "name": "x", "plan": "platinum" }), "unknown plan"),
        (json!({ "name": "x", "plan": "enterprise" }), "enquiry@hardencloud.com"),
        (json!({ "name": "   " }), "must not be empty"),
        (json!({ "name": "x".repeat(101) }), "at most 100"),
        (json!({ "plan": "free" }), "missing field `name`"),
    ];
    for (body, expected) in cases {
        let before = app.event_count().await;
        let msg =
            expect_error(app.post("/admin/orgs", &app.global_admin_key, body.clone()).await, StatusCode::BAD_REQUEST)
                .await;
        assert!(msg.contains(expected), "case {body}: got {msg}");
        assert_eq!(app.event_count().await, before, "case {body}: nothing is written");
    }
}

#[tokio::test]
async fn org_routes_need_a_valid_key_and_the_global_admin_role() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let res = app.request(reqwest::Method::GET, "/admin/orgs", None, None).await;
    assert_eq!(expect_error(res, StatusCode::UNAUTHORIZED).await, "missing X-Api-Key header");
    for bogus in ["nonsense", "hk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        assert_eq!(
            expect_error(app.get("/admin/orgs", bogus).await, StatusCode::UNAUTHORIZED).await,
            "invalid API key"
        );
    }
    for key in [&fx.admin_key, &fx.member_key] {
        expect_error(app.get("/admin/orgs", key).await, StatusCode::FORBIDDEN).await;
        expect_error(app.post("/admin/orgs", key, json!({ "name": "mine" })).await, StatusCode::FORBIDDEN).await;
        expect_error(
            app.put(&format!("/admin/orgs/{}/plan", fx.org), key, json!({ "plan": "business" })).await,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
}

#[tokio::test]
async fn plan_change_is_recorded_and_shown() {
    let app = spawn_app().await;
    let org = app.create_org("acme").await;
    let res = app.put(&format!("/admin/orgs/{org}/plan"), &app.global_admin_key, json!({ "plan": "smb" })).await;
    assert_eq!(expect_json(res, StatusCode::OK).await["plan"], "smb");
    let list = expect_json(app.get("/admin/orgs", &app.global_admin_key).await, StatusCode::OK).await;
    assert_eq!(list[0]["plan"], "smb");
    let changes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrgPlanChanged' AND aggregate_id = $1")
            .bind(org.to_string())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(changes, 1);
    // The same plan again changes nothing and records nothing.
    let res = app.put(&format!("/admin/orgs/{org}/plan"), &app.global_admin_key, json!({ "plan": "smb" })).await;
    expect_json(res, StatusCode::OK).await;
    let again: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrgPlanChanged'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(again, 1);
}

#[tokio::test]
async fn plan_change_refuses_unknown_orgs_and_plans() {
    let app = spawn_app().await;
    let org = app.create_org("acme").await;
    let missing = Uuid::new_v4();
    expect_error(
        app.put(&format!("/admin/orgs/{missing}/plan"), &app.global_admin_key, json!({ "plan": "smb" })).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_error(
        app.put(&format!("/admin/orgs/{org}/plan"), &app.global_admin_key, json!({ "plan": "gold" })).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_error(
        app.put(&format!("/admin/orgs/{org}/plan"), &app.global_admin_key, json!({ "plan": "enterprise" })).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn a_write_answers_success_with_a_header_when_read_models_lag_past_the_bound() {
    let app = crate::helpers::spawn_app_with(|s| s.read_model_wait_ms = 300).await;
    // Stall the directory projection: hold a lock that blocks its INSERT. LOCK TABLE takes no
    // transaction id, so the cluster's snapshot horizon (and other tests' followers) move on.
    let mut stall = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE directory_orgs IN EXCLUSIVE MODE").execute(&mut *stall).await.unwrap();
    let res = app.post("/admin/orgs", &app.global_admin_key, json!({ "name": "lagging" })).await;
    assert_eq!(res.headers().get("x-harden-read-models").map(|v| v.to_str().unwrap()), Some("catching-up"));
    let id = expect_json(res, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    stall.rollback().await.unwrap();
    crate::helpers::eventually("the org appears once the projection catches up", || async {
        let orgs = expect_json(app.get("/admin/orgs", &app.global_admin_key).await, StatusCode::OK).await;
        orgs.as_array().unwrap().iter().any(|o| o["id"] == id)
    })
    .await;
    // Without a lag, no header.
    let res = app.post("/admin/orgs", &app.global_admin_key, json!({ "name": "current" })).await;
    assert!(res.headers().get("x-harden-read-models").is_none());
}

#[tokio::test]
async fn harden_connections_carry_an_idle_in_transaction_timeout() {
    let db = crate::helpers::TestDb::new();
    let pool = harden_commands::db::connect(&harden_commands::db::DbConfig {
        url: &db.url(),
        max_connections: 1,
        idle_in_transaction_timeout: std::time::Duration::from_millis(1500),
    })
    .await
    .unwrap();
    let timeout: String =
        sqlx::query_scalar("SHOW idle_in_transaction_session_timeout").fetch_one(&pool).await.unwrap();
    assert_eq!(timeout, "1500ms");
}
