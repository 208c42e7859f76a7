//! The authentication cache across instances: each process answers a presented key from what it
//! looked up for a lease, and a command that takes access away waits that lease out, so a key
//! revoked through one instance is refused by every other before the revocation answers.

use reqwest::StatusCode;

use crate::helpers::{eventually, expect_json, spawn_app_with, start, OrgFixture, TestApp};

async fn me(app: &TestApp, key: &str) -> StatusCode {
    app.get("/users/me", key).await.status()
}

/// Two instances on one database, both with a lease of `lease_ms`.
async fn two_instances(lease_ms: u64) -> (TestApp, TestApp) {
    let first = spawn_app_with(|s| s.auth_cache_ms = lease_ms).await;
    let second = first.restart().await;
    (first, second)
}

/// The org admin rotates the member's key through `app`; the new key.
async fn rotate_member_key(app: &TestApp, fx: &OrgFixture) -> String {
    let path = format!("/admin/orgs/{}/users/{}/apikey/rotate", fx.org, fx.member_id);
    let rotated = expect_json(app.post(&path, &fx.admin_key, serde_json::json!({})).await, StatusCode::OK).await;
    rotated["apiKey"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_instance_answers_a_key_from_its_cache_for_the_lease() {
    let (first, second) = two_instances(60_000).await;
    let fx = first.org_with_users("acme").await;
    assert_eq!(me(&second, &fx.member_key).await, StatusCode::OK);
    // A database writer removes the key behind harden's back: no event, no notification. The
    // instance that looked the key up keeps answering it until its lease ends; the other, which
    // never did, refuses it at once.
    sqlx::query("DELETE FROM api_keys WHERE user_id = $1").bind(fx.member_id).execute(&first.pool).await.unwrap();
    assert_eq!(me(&second, &fx.member_key).await, StatusCode::OK, "the second instance answered from its cache");
    assert_eq!(me(&first, &fx.member_key).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_rotated_or_a_user_offboarded_through_one_instance_is_refused_by_the_other_before_the_answer() {
    let (first, second) = two_instances(1_500).await;
    let fx = first.org_with_users("acme").await;
    // The second instance has both keys cached ...
    assert_eq!(me(&second, &fx.member_key).await, StatusCode::OK);
    assert_eq!(me(&second, &fx.admin_key).await, StatusCode::OK);
    // ... when the first rotates the member's key: once the rotation has answered, the second
    // refuses the old key and takes the new one.
    let new_key = rotate_member_key(&first, &fx).await;
    assert_eq!(me(&second, &fx.member_key).await, StatusCode::UNAUTHORIZED, "the rotated key is dead everywhere");
    assert_eq!(me(&second, &new_key).await, StatusCode::OK);
    // Offboarding through the first: the second refuses the member's new key, cached a moment ago.
    assert_eq!(
        first.delete(&format!("/admin/orgs/{}/users/{}", fx.org, fx.member_id), &fx.admin_key).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(me(&second, &new_key).await, StatusCode::UNAUTHORIZED, "the offboarded user is refused everywhere");
}

#[tokio::test]
async fn a_revocation_announced_by_another_instance_empties_the_cache_at_once() {
    // The second instance keeps entries for a minute; the first does not cache (and so does not
    // wait). Only the announcement can make the second refuse the rotated key soon.
    let first = spawn_app_with(|s| s.auth_cache_ms = 0).await;
    let mut settings = first.settings.clone();
    settings.auth_cache_ms = 60_000;
    let second = start(settings, first.db.clone(), first.data_dir.clone()).await;
    let fx = first.org_with_users("acme").await;
    assert_eq!(me(&second, &fx.member_key).await, StatusCode::OK);
    rotate_member_key(&first, &fx).await;
    eventually("the second instance drops the rotated key", || async {
        me(&second, &fx.member_key).await == StatusCode::UNAUTHORIZED
    })
    .await;
}
