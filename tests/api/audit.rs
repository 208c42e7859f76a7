//! The audit view: KV history for org admins, the wider history with `?scope=all`, and a hash
//! chain that `harden audit verify` checks against the event store.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{expect_error, expect_json, spawn_app, TestApp};

async fn entries(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let body = expect_json(app.get(&format!("/audit{query}"), key).await, StatusCode::OK).await;
    body["entries"].as_array().unwrap().clone()
}

fn summary(entries: &[Value]) -> Vec<(String, String, i64)> {
    entries
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["version"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn row(key: &str, action: &str, version: i64) -> (String, String, i64) {
    (key.to_owned(), action.to_owned(), version)
}

#[tokio::test]
async fn kv_writes_and_deletes_are_audited_oldest_first_with_versions_and_writers() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    app.put_kv("a", &fx.member_key, 1).await;
    app.put_kv("a", &fx.member_key, 1).await;
    app.put_kv("b", &fx.admin_key, 1).await;
    app.delete("/kv/a", &fx.member_key).await;
    let all = entries(&app, &fx.admin_key, "").await;
    assert_eq!(
        summary(&all),
        vec![row("a", "create", 1), row("a", "update", 2), row("b", "create", 1), row("a", "delete", 2)]
    );
    assert_eq!(all[0]["userId"], fx.member_id.to_string());
    assert_eq!(all[2]["userId"], fx.admin_id.to_string());
    assert!(all.iter().all(|e| e["timestampUtc"].as_str().unwrap().ends_with('Z')));

    assert_eq!(summary(&entries(&app, &fx.admin_key, "?key=a").await).len(), 3);
    assert_eq!(
        summary(&entries(&app, &fx.admin_key, &format!("?userId={}", fx.admin_id)).await),
        vec![row("b", "create", 1)]
    );
    let third = all[2]["timestampUtc"].as_str().unwrap().replace('+', "%2B");
    assert_eq!(entries(&app, &fx.admin_key, &format!("?since={third}")).await.len(), 2);
    assert_eq!(entries(&app, &fx.admin_key, &format!("?until={third}")).await.len(), 2);
}

#[tokio::test]
async fn audit_pages_with_a_cursor_and_refuses_bad_queries() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    for i in 0..5 {
        app.put_kv(&format!("k{i}"), &fx.member_key, 1).await;
    }
    let first = expect_json(app.get("/audit?limit=2", &fx.admin_key).await, StatusCode::OK).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let rest =
        expect_json(app.get(&format!("/audit?limit=10&cursor={cursor}"), &fx.admin_key).await, StatusCode::OK).await;
    let keys: Vec<_> =
        rest["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys, ["k2", "k3", "k4"]);
    assert!(rest["nextCursor"].is_null());
    for bad in ["?scope=everything", "?since=yesterday", "?userId=me", "?cursor=abc", "?limit=0", "?colour=red"] {
        expect_error(app.get(&format!("/audit{bad}"), &fx.admin_key).await, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn only_org_admins_see_the_audit_and_only_their_orgs() {
    let app = spawn_app().await;
    let a = app.org_with_users("a").await;
    let b = app.org_with_users("b").await;
    app.put_kv("a-secret", &a.member_key, 1).await;
    app.put_kv("b-secret", &b.member_key, 1).await;
    expect_error(app.get("/audit", &a.member_key).await, StatusCode::FORBIDDEN).await;
    expect_error(app.get("/audit", &app.global_admin_key).await, StatusCode::FORBIDDEN).await;
    let seen = entries(&app, &a.admin_key, "?scope=all").await;
    assert!(!seen.is_empty());
    let text = serde_json::to_string(&seen).unwrap();
    assert!(
        !text.contains("b-secret") && !text.contains(&b.member_id.to_string()) && !text.contains(&b.org.to_string())
    );
}

#[tokio::test]
async fn scope_all_adds_org_user_and_key_actions() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    app.post(
        &format!("/admin/orgs/{}/users/{}/apikey/rotate", fx.org, fx.member_id),
        &fx.admin_key,
        serde_json::json!({}),
    )
    .await;
    app.put(&format!("/admin/orgs/{}/plan", fx.org), &app.global_admin_key, serde_json::json!({ "plan": "smb" })).await;
    app.put_kv("k", &fx.admin_key, 1).await;
    let actions: Vec<_> = entries(&app, &fx.admin_key, "?scope=all")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "org.create",
            "user.create",
            "apikey.issue",
            "user.create",
            "apikey.issue",
            "apikey.revoke",
            "apikey.issue",
            "org.plan_change",
            "create"
        ]
    );
    assert_eq!(
        summary(&entries(&app, &fx.admin_key, "").await),
        vec![row("k", "create", 1)],
        "the default scope is KV only"
    );
}

fn harden_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_harden"))
        .args(args)
        .env("HARDEN_DATABASE_URL", app.db.url())
        .env("HARDEN_DATA_DIR", &app.settings.data_dir)
        .env("HARDEN_LOG", "warn")
        .output()
        .expect("run the harden binary")
}

#[tokio::test]
async fn audit_verify_passes_on_an_honest_store_and_names_the_entry_after_an_event_is_edited() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    for i in 0..3 {
        app.put_kv(&format!("k{i}"), &fx.member_key, 1).await;
    }
    let org = fx.org.to_string();
    let export = harden_cli(&app, &["audit", "export", "--org", &org]);
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let lines: Vec<Value> =
        String::from_utf8(export.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8, "org, 2 users, 2 keys, 3 KV writes");
    for pair in lines.windows(2) {
        assert_eq!(pair[1]["prevHash"], pair[0]["hash"], "each entry chains to the previous one");
    }
    let head = lines.last().unwrap()["hash"].as_str().unwrap().to_owned();

    let ok = harden_cli(&app, &["audit", "verify", "--org", &org, "--head", &head]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("8 entries match"));

    // Someone edits the key name inside the second KV write's event.
    let edited = sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload, '{SecretCreated,key_name}', '\"forged\"')
         WHERE event_type = 'SecretCreated' AND payload -> 'SecretCreated' ->> 'key_name' = 'k1'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(edited.rows_affected(), 1);
    let broken = harden_cli(&app, &["audit", "verify", "--org", &org]);
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("BROKEN at entry 7") && stderr.contains("key"), "{stderr}");
}

#[tokio::test]
async fn audit_verify_detects_an_edited_entry_and_an_unknown_head() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    app.put_kv("k", &fx.member_key, 1).await;
    let org = fx.org.to_string();
    let unknown = harden_cli(&app, &["audit", "verify", "--org", &org, "--head", &"ab".repeat(32)]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("does not pass through head"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    sqlx::query("UPDATE audit_entries SET user_id = NULL WHERE org_id = $1 AND action = 'create'")
        .bind(fx.org)
        .execute(&app.pool)
        .await
        .unwrap();
    let broken = harden_cli(&app, &["audit", "verify", "--org", &org]);
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("userId"));
}
