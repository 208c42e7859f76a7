use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{expect_error, expect_json, spawn_app};

#[tokio::test]
async fn global_admin_creates_the_first_org_admin_whose_key_works() {
    let app = spawn_app().await;
    let org = app.create_org("acme").await;
    let res = app
        .post(&format!("/admin/orgs/{org}/users"), &app.global_admin_key, json!({ "name": "Jane", "isAdmin": true }))
        .await;
    let body = expect_json(res, StatusCode::CREATED).await;
    let key = body["apiKey"].as_str().unwrap();
    assert!(key.starts_with("hk_") && key.len() == 46, "{key}");
    assert_eq!(body["apiKeyHash"], key, "the spec returns the plaintext key in apiKeyHash");
    assert_eq!(body["orgId"], org.to_string());
    assert_eq!(body["isAdmin"], true);
    assert_eq!(body["role"], "org_admin");
    let me = expect_json(app.get("/users/me", key).await, StatusCode::OK).await;
    assert_eq!(me["id"], body["id"]);
    assert_eq!(me["name"], "Jane");
    // Only the hash is stored.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'")
        .bind(key)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "the plaintext key is in no event");
}

#[tokio::test]
async fn global_admin_can_create_only_the_first_org_admin() {
    let app = spawn_app().await;
    let org = app.create_org("acme").await;
    let path = format!("/admin/orgs/{org}/users");
    let msg = expect_error(
        app.post(&path, &app.global_admin_key, json!({ "name": "svc", "isAdmin": false })).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(msg.contains("only the first org admin"), "{msg}");
    app.create_first_admin(org).await;
    let msg = expect_error(
        app.post(&path, &app.global_admin_key, json!({ "name": "second", "isAdmin": true })).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(msg.contains("already has its first admin"), "{msg}");
    let missing = Uuid::new_v4();
    expect_error(
        app.post(
            &format!("/admin/orgs/{missing}/users"),
            &app.global_admin_key,
            json!({ "name": "x", "isAdmin": true }),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn racing_first_admin_requests_create_exactly_one() {
    let app = spawn_app().await;
    let org = app.create_org("acme").await;
    let path = format!("/admin/orgs/{org}/users");
    let attempts = (0..8)
        .map(|i| app.post(&path, &app.global_admin_key, json!({ "name": format!("admin {i}"), "isAdmin": true })));
    let statuses: Vec<_> = join_all(attempts).await.iter().map(|r| r.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::FORBIDDEN), "{statuses:?}");
    let users = expect_json(app.get(&path, &app.global_admin_key).await, StatusCode::OK).await;
    assert_eq!(users.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn org_admins_create_admins_and_members_in_their_org_and_members_cannot() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let path = format!("/admin/orgs/{}/users", fx.org);
    let res = app.post(&path, &fx.admin_key, json!({ "name": "second admin", "isAdmin": true })).await;
    let second = expect_json(res, StatusCode::CREATED).await;
    assert_eq!(second["role"], "org_admin");
    // The new admin can create users in turn.
    let second_key = second["apiKey"].as_str().unwrap();
    let res = app.post(&path, second_key, json!({ "name": "svc" })).await;
    assert_eq!(expect_json(res, StatusCode::CREATED).await["isAdmin"], false);
    expect_error(app.post(&path, &fx.member_key, json!({ "name": "nope" })).await, StatusCode::FORBIDDEN).await;
    let users = expect_json(app.get(&path, &fx.admin_key).await, StatusCode::OK).await;
    let names: Vec<_> = users.as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["first admin", "member", "second admin", "svc"]);
    assert!(users.as_array().unwrap().iter().all(|u| u["apiKeyHash"] == ""), "hashes are blanked in lists");
}

#[tokio::test]
async fn users_can_be_created_with_public_keys() {
    use base64::Engine;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let res = app
        .post(
            &format!("/admin/orgs/{}/users", fx.org),
            &fx.admin_key,
            json!({ "name": "svc", "publicKeyEccB64": b64(32), "publicKeyKyberB64": b64(1184) }),
        )
        .await;
    let body = expect_json(res, StatusCode::CREATED).await;
    assert_eq!(body["publicKeyEccB64"], b64(32));
    let profile = expect_json(
        app.get(&format!("/users/org/{}", body["id"].as_str().unwrap()), &fx.member_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["publicKeyKyberB64"], b64(1184));
}

#[tokio::test]
async fn list_users_is_for_admins_of_that_org_and_the_global_admin() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let path = format!("/admin/orgs/{}/users", fx.org);
    assert_eq!(
        expect_json(app.get(&path, &app.global_admin_key).await, StatusCode::OK).await.as_array().unwrap().len(),
        2
    );
    expect_error(app.get(&path, &fx.member_key).await, StatusCode::FORBIDDEN).await;
    expect_error(
        app.get(&format!("/admin/orgs/{}/users", Uuid::new_v4()), &app.global_admin_key).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn rotation_kills_the_old_key_before_answering() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let res = app
        .post(&format!("/admin/orgs/{}/users/{}/apikey/rotate", fx.org, fx.member_id), &fx.admin_key, json!({}))
        .await;
    let new_key = expect_json(res, StatusCode::OK).await["apiKey"].as_str().unwrap().to_owned();
    assert_ne!(new_key, fx.member_key);
    expect_error(app.get("/users/me", &fx.member_key).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(expect_json(app.get("/users/me", &new_key).await, StatusCode::OK).await["id"], fx.member_id.to_string());
}

#[tokio::test]
async fn org_admins_rotate_their_own_key_and_members_rotate_nothing() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let own = format!("/admin/orgs/{}/users/{}/apikey/rotate", fx.org, fx.admin_id);
    let new_key = expect_json(app.post(&own, &fx.admin_key, json!({})).await, StatusCode::OK).await["apiKey"]
        .as_str()
        .unwrap()
        .to_owned();
    expect_error(app.get("/users/me", &fx.admin_key).await, StatusCode::UNAUTHORIZED).await;
    let theirs = format!("/admin/orgs/{}/users/{}/apikey/rotate", fx.org, fx.member_id);
    expect_error(app.post(&own, &fx.member_key, json!({})).await, StatusCode::FORBIDDEN).await;
    expect_error(app.post(&theirs, &fx.member_key, json!({})).await, StatusCode::FORBIDDEN).await;
    let unknown = format!("/admin/orgs/{}/users/{}/apikey/rotate", fx.org, Uuid::new_v4());
    expect_error(app.post(&unknown, &new_key, json!({})).await, StatusCode::NOT_FOUND).await;
    // The global admin may rotate too (an org that lost its admin's key).
    expect_json(app.post(&theirs, &app.global_admin_key, json!({})).await, StatusCode::OK).await;
    expect_error(app.get("/users/me", &fx.member_key).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn offboarding_deactivates_the_user_and_every_key_at_once() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let user_path = format!("/admin/orgs/{}/users/{}", fx.org, fx.member_id);
    let res = app.delete(&user_path, &fx.admin_key).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(app.get("/users/me", &fx.member_key).await, StatusCode::UNAUTHORIZED).await;
    let users =
        expect_json(app.get(&format!("/admin/orgs/{}/users", fx.org), &fx.admin_key).await, StatusCode::OK).await;
    let member = users.as_array().unwrap().iter().find(|u| u["id"] == fx.member_id.to_string()).unwrap();
    assert_eq!(member["isActive"], false, "admins still see who was offboarded");
    let peers = expect_json(app.get("/users/org", &fx.admin_key).await, StatusCode::OK).await;
    assert_eq!(peers.as_array().unwrap().len(), 1, "the directory no longer lists them");
    expect_error(app.get(&format!("/users/org/{}", fx.member_id), &fx.admin_key).await, StatusCode::NOT_FOUND).await;
    // Their events stay.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(fx.member_id.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 4, "created, key issued, key revoked, deactivated");
    // A deactivated user gets no new key, and offboarding twice is offboarding once.
    expect_error(app.post(&format!("{user_path}/apikey/rotate"), &fx.admin_key, json!({})).await, StatusCode::CONFLICT)
        .await;
    assert_eq!(app.delete(&user_path, &fx.admin_key).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn offboarding_refuses_members_and_self() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    expect_error(
        app.delete(&format!("/admin/orgs/{}/users/{}", fx.org, fx.admin_id), &fx.member_key).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let msg = expect_error(
        app.delete(&format!("/admin/orgs/{}/users/{}", fx.org, fx.admin_id), &fx.admin_key).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("yourself"), "{msg}");
    expect_error(
        app.delete(&format!("/admin/orgs/{}/users/{}", fx.org, Uuid::new_v4()), &fx.admin_key).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
