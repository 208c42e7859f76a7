//! Plan limits at their edges, under races, and across plan changes. The limits are enforced as
//! events are appended, so they hold however the writes interleave.

use futures::future::join_all;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{expect_error, expect_json, spawn_app, TestApp};

async fn set_plan(app: &TestApp, org: uuid::Uuid, plan: &str) {
    expect_json(
        app.put(&format!("/admin/orgs/{org}/plan"), &app.global_admin_key, json!({ "plan": plan })).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn key_plus_value_bytes_are_limited_by_plan_at_the_edge() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await; // free: 1024 bytes
    expect_json(app.put_kv("k", &fx.member_key, 1023).await, StatusCode::CREATED).await;
    let msg = expect_error(app.put_kv("k2", &fx.member_key, 1023).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(msg, "plan limit reached: maxKeyPlusValueBytes is 1024 on the free plan");
    // An update over the limit is refused too, and the record keeps its version.
    expect_error(app.put_kv("k", &fx.member_key, 1024).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(expect_json(app.get("/kv/k", &fx.member_key).await, StatusCode::OK).await["version"], 1);
    // A plan change applies to the very next write.
    set_plan(&app, fx.org, "starter").await; // 2048 bytes
    expect_json(app.put_kv("k", &fx.member_key, 2047).await, StatusCode::OK).await;
    expect_error(app.put_kv("k", &fx.member_key, 2048).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn record_count_is_limited_per_org_and_racing_writers_cannot_pass_it() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await; // free: 1000 records
    let (_, second_key) = app.create_user(fx.org, &fx.admin_key, "second", false).await;
    // 999 records, spread over two users of the org: the limit is the org's.
    let app = &app;
    let (member_key, second_key) = (&fx.member_key, &second_key);
    let writes = (0..999).map(|i| {
        let key = if i % 2 == 0 { member_key } else { second_key };
        let name = format!("r{i:04}");
        async move { app.put_kv(&name, key, 1).await.status() }
    });
    let statuses: Vec<_> = futures::stream::iter(writes).buffer_unordered(32).collect().await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "{:?}",
        statuses.iter().find(|s| **s != StatusCode::CREATED)
    );

    // Two writers race for the last free record: exactly one wins.
    let race = join_all([app.put_kv("race-a", &fx.member_key, 1), app.put_kv("race-b", second_key, 1)]).await;
    let mut outcome: Vec<_> = race.iter().map(|r| r.status()).collect();
    outcome.sort();
    assert_eq!(outcome, vec![StatusCode::CREATED, StatusCode::BAD_REQUEST]);
    // The first record that does not fit.
    let msg = expect_error(app.put_kv("one-too-many", &fx.admin_key, 1).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(msg, "plan limit reached: maxRecords is 1000 on the free plan");
    // Updates of existing records still work at the limit; a delete frees a slot.
    expect_json(app.put_kv("r0000", &fx.member_key, 2).await, StatusCode::OK).await;
    assert_eq!(app.delete("/kv/r0000", &fx.member_key).await.status(), StatusCode::NO_CONTENT);
    expect_json(app.put_kv("one-too-many", &fx.admin_key, 1).await, StatusCode::CREATED).await;

    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM kv_records WHERE org_id = $1 AND live")
        .bind(fx.org)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(live, 1000);

    // An upgrade raises the limit at once; a downgrade keeps existing records and blocks new ones.
    set_plan(app, fx.org, "starter").await;
    expect_json(app.put_kv("after-upgrade", &fx.member_key, 1).await, StatusCode::CREATED).await;
    set_plan(app, fx.org, "free").await;
    expect_error(app.put_kv("after-downgrade", &fx.member_key, 1).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(expect_json(app.get("/kv/after-upgrade", &fx.member_key).await, StatusCode::OK).await["version"], 1);
    expect_json(app.put_kv("after-upgrade", &fx.member_key, 1).await, StatusCode::OK).await;
}
