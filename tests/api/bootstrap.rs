//! The global admin and the master key on first start, and across restarts.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use harden::{Application, Surfaces};
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::helpers::{expect_json, spawn_app, test_settings, TestDb};

async fn bootstrapped_admins(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'GlobalAdminBootstrapped'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn first_start_writes_a_private_global_admin_key_that_works() {
    let app = spawn_app().await;
    for file in ["global-admin.key", "master.key"] {
        let mode = std::fs::metadata(app.settings.data_dir.join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is readable by its owner only");
    }
    assert!(app.global_admin_key.starts_with("hk_"));
    let me = expect_json(app.get("/users/me", &app.global_admin_key).await, StatusCode::OK).await;
    assert_eq!(me["role"], "global_admin");
    assert_eq!(bootstrapped_admins(&app.pool).await, 1);
}

#[tokio::test]
async fn the_key_file_survives_a_restart_and_keeps_working() {
    let app = spawn_app().await;
    let org = app.create_org("before restart").await;
    let restarted = app.restart().await;
    assert_eq!(restarted.global_admin_key, app.global_admin_key, "the key file is kept");
    let orgs = expect_json(restarted.get("/admin/orgs", &app.global_admin_key).await, StatusCode::OK).await;
    assert_eq!(orgs[0]["id"], org.to_string());
    assert_eq!(bootstrapped_admins(&app.pool).await, 1);
    let master_before = std::fs::read(app.settings.data_dir.join("master.key")).unwrap();
    assert_eq!(std::fs::read(restarted.settings.data_dir.join("master.key")).unwrap(), master_before);
}

#[tokio::test]
async fn two_instances_starting_at_once_on_an_empty_database_make_one_global_admin() {
    let db = Arc::new(TestDb::new());
    let dirs = [TempDir::new().unwrap(), TempDir::new().unwrap()];
    let settings: Vec<_> = dirs.iter().map(|d| test_settings(&db, d.path().join("data"))).collect();
    let (a, b) = tokio::join!(
        Application::build(&settings[0], Surfaces::Backend),
        Application::build(&settings[1], Surfaces::Backend)
    );
    let (a, b) = (a.expect("first instance starts"), b.expect("second instance starts"));
    let key_files: Vec<_> =
        settings.iter().map(|s| s.data_dir.join("global-admin.key")).filter(|p| p.exists()).collect();
    assert_eq!(key_files.len(), 1, "exactly one instance won and wrote the key");
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    assert_eq!(bootstrapped_admins(&pool).await, 1);
    let key = std::fs::read_to_string(&key_files[0]).unwrap();
    let port = a.backend_port().unwrap();
    tokio::spawn(a.run_until(std::future::pending()));
    drop(b);
    let res = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/users/me"))
        .header("X-Api-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(res, StatusCode::OK).await["role"], "global_admin");
    // No temporary secret files are left behind by the loser.
    for dir in &dirs {
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
