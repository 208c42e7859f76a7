//! `harden replay` rebuilds every projection from the event store behind a live server, and the
//! rows come out the same.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{expect_json, spawn_app, TestApp};

const TABLES: [&str; 7] = [
    "directory_orgs",
    "directory_users",
    "kv_records",
    "kv_versions",
    "kv_shares",
    "recovery_trustees",
    "audit_entries",
];

async fn snapshot(app: &TestApp) -> Vec<(String, Vec<String>)> {
    snapshot_of(app, &TABLES).await
}

/// Every row of `tables`, as JSON text, in a stable order.
pub async fn snapshot_of(app: &TestApp, tables: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1"))
            .fetch_all(&app.pool)
            .await
            .unwrap();
        out.push((table.to_string(), rows));
    }
    out
}

pub fn replay(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_harden"))
        .arg("replay")
        .args(args)
        .env("HARDEN_DATABASE_URL", app.db.url())
        .env("HARDEN_DATA_DIR", &app.settings.data_dir)
        .env("HARDEN_LOG", "warn")
        .output()
        .expect("run harden replay")
}

#[tokio::test]
async fn replaying_every_projection_rebuilds_the_same_rows_while_serving() {
    let app = spawn_app().await;
    let a = app.org_with_users("a").await;
    let b = app.org_with_users("b").await;
    for i in 0..5 {
        app.put_kv(&format!("k{i}"), &a.member_key, 3).await;
        app.put_kv(&format!("k{i}"), &b.admin_key, 3).await;
    }
    app.put_kv("k1", &a.member_key, 9).await;
    app.delete("/kv/k2", &a.member_key).await;
    app.put_kv("k2", &a.member_key, 1).await;
    app.put(&format!("/admin/orgs/{}/plan", b.org), &app.global_admin_key, json!({ "plan": "starter" })).await;
    app.delete(&format!("/admin/orgs/{}/users/{}", b.org, b.member_id), &b.admin_key).await;
    // A share of k1 with the org's admin (the Backend stores wraps as given; their bytes do not matter here).
    use base64::Engine;
    let b64 = |fill: u8, n: usize| base64::engine::general_purpose::STANDARD.encode(vec![fill; n]);
    let keys = json!({
        "publicKeyEccB64": b64(1, 32), "publicKeyKyberB64": b64(1, 1184), "encryptedPrivateKeyEccB64": b64(2, 93),
        "encryptedPrivateKeyKyberB64": b64(2, 2461), "sealProofB64": b64(3, 32)
    });
    expect_json(app.post("/users/me/keys", &a.admin_key, keys).await, StatusCode::OK).await;
    let k1 = expect_json(app.get("/kv/k1", &a.member_key).await, StatusCode::OK).await;
    let share = json!({
        "recipientUserId": a.admin_id, "permission": "read", "encryptedAliasB64": b64(4, 40),
        "encryptedAesKeyEccB64": b64(5, 33), "encryptedAesKeyKyberB64": b64(6, 1149), "keyEpoch": k1["keyEpoch"]
    });
    expect_json(app.post("/kv/k1/shares", &a.member_key, share).await, StatusCode::CREATED).await;
    let trustee = json!({
        "encryptedPrivateKeyEccShareB64": b64(7, 100), "encryptedPrivateKeyKyberShareB64": b64(8, 200),
        "xorApplied": true, "xorSaltHint": "dog-name"
    });
    let path = format!("/users/me/recovery/trustees/{}", a.admin_id);
    expect_json(app.put(&path, &a.member_key, trustee).await, StatusCode::OK).await;
    let before = snapshot(&app).await;
    assert!(before.iter().all(|(_, rows)| !rows.is_empty()));

    let out = replay(&app, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot(&app).await, before, "the rebuilt rows are the same rows");

    // Again, with writes landing while the projections are rebuilt and swapped.
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let (backend, key) = (app.backend.clone(), a.member_key.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while done_rx.try_recv().is_err() {
                let res = client
                    .put(format!("{backend}/kv/during-{n}"))
                    .header("X-Api-Key", &key)
                    .json(&crate::helpers::kv_body(2, 1))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::CREATED);
                n += 1;
            }
            n
        })
    };
    let handle = std::thread::spawn({
        let (url, dir) = (app.db.url(), app.settings.data_dir.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_harden"))
                .arg("replay")
                .env("HARDEN_DATABASE_URL", url)
                .env("HARDEN_DATA_DIR", dir)
                .env("HARDEN_LOG", "warn")
                .output()
                .unwrap()
        }
    });
    let out = tokio::task::spawn_blocking(move || handle.join().unwrap()).await.unwrap();
    done_tx.send(()).unwrap();
    let written = writer.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(written > 0);
    for n in 0..written {
        expect_json(app.get(&format!("/kv/during-{n}"), &a.member_key).await, StatusCode::OK).await;
    }
    let audit_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_entries WHERE key_name LIKE 'during-%'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(audit_rows, written as i64, "every write made during the replay is projected exactly once");
    let before = snapshot(&app).await;
    let out = replay(&app, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    for name in ["directory", "kv", "shares", "recovery", "cloud", "audit"] {
        assert!(report.contains(&format!("replayed {name}")), "{report}");
    }
    assert_eq!(snapshot(&app).await, before, "the rebuilt rows are the same rows");

    // The live follower carries on from the swapped-in state.
    expect_json(app.put_kv("after-replay", &a.member_key, 2).await, StatusCode::CREATED).await;
    expect_json(app.get("/kv/after-replay", &a.member_key).await, StatusCode::OK).await;
    let audit = expect_json(app.get("/audit?key=after-replay", &a.admin_key).await, StatusCode::OK).await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);

    let one = replay(&app, &["--projection", "kv"]);
    assert!(one.status.success());
    assert!(!String::from_utf8_lossy(&one.stdout).contains("replayed audit"));
    let unknown = replay(&app, &["--projection", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("directory, kv, files, shares, recovery, cloud, audit"));
}
