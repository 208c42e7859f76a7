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

#[tokio::test]
async fn an_offboarded_users_records_stop_counting_against_the_org() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let (leaver, leaver_key) = app.create_user(fx.org, &fx.admin_key, "leaver", false).await;
    for i in 0..3 {
        expect_json(app.put_kv(&format!("k{i}"), &leaver_key, 1).await, StatusCode::CREATED).await;
    }
    app.delete("/kv/k0", &leaver_key).await;
    expect_json(app.put_kv("mine", &fx.member_key, 1).await, StatusCode::CREATED).await;
    let used = || async {
        sqlx::query_scalar::<_, i64>("SELECT records_used FROM org_limits WHERE org_id = $1")
            .bind(fx.org)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert_eq!(used().await, 3);
    assert_eq!(
        app.delete(&format!("/admin/orgs/{}/users/{leaver}", fx.org), &fx.admin_key).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(used().await, 1, "the leaver's two live records are released; the member's stays");
    // Their records and events stay.
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Secret' AND aggregate_id LIKE $1 || ':%'",
    )
    .bind(leaver.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 4);
}

#[tokio::test]
async fn a_write_in_flight_when_its_user_is_offboarded_does_not_commit() {
    use harden_commands::{bootstrap, Harden, Principal};
    use harden_domain::secret::{KeyName, SecretEnvelope};
    use harden_domain::{ApiKeyId, OrgId, Role, UserId};
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    // The request authenticated (this principal) before its user was offboarded ...
    let authenticated = Principal {
        user_id: UserId::from_uuid(fx.member_id),
        org_id: Some(OrgId::from_uuid(fx.org)),
        role: Role::Member,
        key_id: ApiKeyId::from_uuid(uuid::Uuid::new_v4()),
    };
    assert_eq!(
        app.delete(&format!("/admin/orgs/{}/users/{}", fx.org, fx.member_id), &fx.admin_key).await.status(),
        StatusCode::NO_CONTENT
    );
    // ... and reaches the append afterwards.
    let master = bootstrap::master_key(None, false, &app.settings.data_dir).unwrap();
    let harden = Harden::new(app.pool.clone(), &master);
    let body = crate::helpers::kv_body(4, 1);
    let envelope = SecretEnvelope::parse(
        body["ciphertextB64"].as_str().unwrap(),
        body["encryptedAesKeyEccB64"].as_str().unwrap(),
        body["encryptedAesKeyKyberB64"].as_str().unwrap(),
    )
    .unwrap();
    let meta = harden_commands::Meta {
        org_id: authenticated.org_id,
        actor: Some(authenticated.user_id),
        request_id: None,
        ..Default::default()
    };
    let outcome = harden
        .write_secret(
            &authenticated,
            &KeyName::parse("late").unwrap(),
            envelope,
            harden_domain::secret::VersionCheck::default(),
            harden_domain::secret::KeyUse::Unspecified,
            meta,
        )
        .await;
    assert!(matches!(outcome, Err(harden_commands::Error::Unauthorized(_))), "{:?}", outcome.err());
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Secret'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(written, 0);
}

#[tokio::test]
async fn offboarding_and_a_write_in_flight_take_their_locks_in_one_order() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    expect_json(app.put_kv("first", &fx.member_key, 1).await, StatusCode::CREATED).await;
    let deadlocks = || async {
        sqlx::query_scalar::<_, i64>("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let before = deadlocks().await;
    // A create of the member is in flight: its append has taken the member's principal row, as the
    // first trigger does ...
    let mut write = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM principals WHERE user_id = $1 AND active FOR SHARE")
        .bind(fx.member_id)
        .execute(&mut *write)
        .await
        .unwrap();
    // ... when an org admin offboards the member.
    let offboard = {
        let url = format!("{}/admin/orgs/{}/users/{}", app.backend, fx.org, fx.member_id);
        let (client, key) = (app.client.clone(), fx.admin_key.clone());
        tokio::spawn(async move { client.delete(url).header("X-Api-Key", key).send().await.unwrap().status() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The create goes on to the member's usage row. Had the offboarding taken that row before the
    // principal, each would wait for the other until PostgreSQL broke the deadlock.
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sqlx::query("UPDATE user_usage SET records_used = records_used + 1 WHERE user_id = $1")
            .bind(fx.member_id)
            .execute(&mut *write),
    )
    .await
    .expect("the write's next lock is not held by the offboarding");
    assert!(next.is_ok(), "the write in flight was chosen as a deadlock victim: {:?}", next.err());
    write.rollback().await.unwrap();
    assert_eq!(offboard.await.unwrap(), StatusCode::NO_CONTENT);
    assert_eq!(deadlocks().await, before, "no deadlock was detected");
}
