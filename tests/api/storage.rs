//! Org storage settings against a real S3 server (s3s-fs on 127.0.0.1:8014, started by
//! `scripts/services`): validation, the network policy, reachability checks that say what failed,
//! and a secret key that is sealed and never returned.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use harden_commands::storage::Reachable;
use harden_domain::storage::StorageSettings;

use crate::helpers::{expect_error, expect_json, spawn_app, spawn_app_with, TestApp};

pub const S3_URL: &str = "http://127.0.0.1:8014";
pub const S3_ACCESS_KEY: &str = "harden";
pub const S3_SECRET_KEY: &str = "harden-s3-secret";

/// Creates a fresh bucket on the test S3 server with harden's own client.
pub async fn new_bucket() -> String {
    new_bucket_at(8014).await
}

/// Creates a fresh bucket on an S3 server on loopback at `port`.
pub async fn new_bucket_at(port: u16) -> String {
    let bucket = format!("t-{}", Uuid::new_v4().simple());
    let settings = StorageSettings {
        service_url: format!("http://127.0.0.1:{port}"),
        bucket: bucket.clone(),
        access_key: S3_ACCESS_KEY.to_owned(),
        sealed_secret_key: harden_domain::values::KeyBlob::parse("k", "AAAA", 1..=8).unwrap(),
        force_path_style: true,
        region: "us-east-1".to_owned(),
    };
    let reachable = Reachable { settings, secret_key: S3_SECRET_KEY.into(), address: ([127, 0, 0, 1], port).into() };
    let client = harden_commands::object_store::client(&reachable).unwrap();
    client.create_bucket().bucket(&bucket).send().await.expect("the test S3 server is up (scripts/services)");
    bucket
}

pub fn body(bucket: &str) -> Value {
    json!({
        "serviceUrl": S3_URL,
        "bucket": bucket,
        "accessKey": S3_ACCESS_KEY,
        "secretKey": S3_SECRET_KEY,
        "forcePathStyle": true,
        "region": "us-east-1",
    })
}

async fn put_storage(app: &TestApp, org: Uuid, key: &str, body: Value) -> reqwest::Response {
    app.put(&format!("/admin/orgs/{org}/storage"), key, body).await
}

async fn private_allowed() -> TestApp {
    spawn_app_with(|s| s.storage_allow_private_networks = true).await
}

#[tokio::test]
async fn storage_is_saved_checked_and_its_secret_never_returned() {
    let app = private_allowed().await;
    let fx = app.org_with_users("acme").await;
    let bucket = new_bucket().await;
    let path = format!("/admin/orgs/{}/storage", fx.org);
    expect_error(app.get(&path, &fx.admin_key).await, StatusCode::NOT_FOUND).await;

    let saved = expect_json(put_storage(&app, fx.org, &fx.admin_key, body(&bucket)).await, StatusCode::OK).await;
    assert_eq!(saved["bucket"], bucket);
    assert_eq!(saved["hasSecretKey"], true);
    assert!(saved.get("secretKey").is_none());
    let read = expect_json(app.get(&path, &fx.admin_key).await, StatusCode::OK).await;
    assert_eq!(read, saved);
    assert!(!read.to_string().contains(S3_SECRET_KEY));

    // Saved again without the secret key: kept (and the check passes with it).
    let mut again = body(&bucket);
    again.as_object_mut().unwrap().remove("secretKey");
    again["region"] = json!("eu-west-3");
    let saved = expect_json(put_storage(&app, fx.org, &fx.admin_key, again).await, StatusCode::OK).await;
    assert_eq!(saved["region"], "eu-west-3");
    assert_eq!(saved["hasSecretKey"], true);

    // The global admin may; a member may not; another org's admin finds nothing.
    expect_json(app.get(&path, &app.global_admin_key).await, StatusCode::OK).await;
    expect_error(app.get(&path, &fx.member_key).await, StatusCode::FORBIDDEN).await;
    let other = app.org_with_users("other").await;
    expect_error(app.get(&path, &other.admin_key).await, StatusCode::NOT_FOUND).await;
    expect_error(put_storage(&app, fx.org, &other.admin_key, body(&bucket)).await, StatusCode::NOT_FOUND).await;

    // The secret key is stored sealed: nowhere in clear.
    crate::helpers::assert_nowhere_in_the_database(&app, S3_SECRET_KEY, &[]).await;
}

#[tokio::test]
async fn virtual_host_style_works_where_the_server_supports_it() {
    let app = private_allowed().await;
    let fx = app.org_with_users("acme").await;
    let bucket = new_bucket().await;
    let mut vhost = body(&bucket);
    vhost["serviceUrl"] = json!("http://localhost:8014");
    vhost["forcePathStyle"] = json!(false);
    let saved = expect_json(put_storage(&app, fx.org, &fx.admin_key, vhost).await, StatusCode::OK).await;
    assert_eq!(saved["forcePathStyle"], false);
}

#[tokio::test]
async fn every_storage_rule_and_failure_is_a_clear_400() {
    let app = private_allowed().await;
    let fx = app.org_with_users("acme").await;
    let bucket = new_bucket().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cases: Vec<(Value, &str)> = vec![];
    for (field, value, expected) in [
        ("serviceUrl", json!("s3.example.com"), "serviceUrl must be an absolute http or https URL"),
        ("serviceUrl", json!("ftp://s3.example.com"), "serviceUrl must be an absolute http or https URL"),
        ("serviceUrl", json!("https://user:pw@s3.example.com"), "serviceUrl must be an absolute http or https URL"),
        ("bucket", json!("Bad_Bucket"), "bucket must be 3 to 63"),
        ("accessKey", json!(""), "accessKey must be 1 to 128"),
        ("secretKey", json!("has space"), "secretKey must be 1 to 256"),
        ("region", json!("EU WEST"), "region must be"),
        ("serviceUrl", json!("http://no-such-host.invalid"), "does not resolve (DNS)"),
        ("serviceUrl", json!(format!("http://127.0.0.1:{closed}")), "could not connect"),
        ("secretKey", json!("not-the-secret"), "refused the credentials"),
        ("bucket", json!("no-such-bucket-here"), "the bucket does not exist"),
    ] {
        let mut b = body(&bucket);
        b[field] = value;
        cases.push((b, expected));
    }
    let mut no_secret = body(&bucket);
    no_secret.as_object_mut().unwrap().remove("secretKey");
    cases.push((no_secret, "secretKey is required the first time"));
    for (b, expected) in cases {
        let msg =
            expect_error(put_storage(&app, fx.org, &fx.admin_key, b.clone()).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains(expected), "{b}: expected {expected:?}, got {msg:?}");
        assert!(!msg.contains("<?xml") && !msg.contains("<Error>"), "the store's raw answer is not echoed: {msg}");
    }
    let org_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrgStorageConfigured'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(org_events, 0, "nothing was stored");
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowed() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let bucket = new_bucket().await;
    for url in ["http://127.0.0.1:8014", "http://localhost:8014", "http://169.254.169.254", "http://[::1]:8014"] {
        let mut b = body(&bucket);
        b["serviceUrl"] = json!(url);
        let msg = expect_error(put_storage(&app, fx.org, &fx.admin_key, b).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains("loopback, private or link-local"), "{url}: {msg}");
    }
}

#[tokio::test]
async fn an_allowed_host_is_reachable_and_nothing_else_of_the_internal_network_is() {
    // The compose stack's policy: exactly the stack's object store, no switch for every address.
    let app = spawn_app_with(|s| s.storage_allowed_hosts = "127.0.0.1:8014".to_owned()).await;
    let fx = app.org_with_users("acme").await;
    let bucket = new_bucket().await;
    expect_json(put_storage(&app, fx.org, &fx.admin_key, body(&bucket)).await, StatusCode::OK).await;
    // The database, NATS, the Backend itself, another port of the listed host, the same address
    // under another name, the cloud metadata service, an IPv4-mapped or NAT64 form of a listed address.
    let backend_port = app.backend.rsplit(':').next().unwrap().to_owned();
    for url in [
        "http://127.0.0.1:5432".to_owned(),
        "http://127.0.0.1:4222".to_owned(),
        format!("http://127.0.0.1:{backend_port}"),
        "http://127.0.0.1:8015".to_owned(),
        "http://localhost:8014".to_owned(),
        "http://169.254.169.254".to_owned(),
        "http://[::ffff:127.0.0.1]:8014".to_owned(),
        "http://[64:ff9b::7f00:1]:8014".to_owned(),
    ] {
        let mut b = body(&bucket);
        b["serviceUrl"] = json!(url);
        let msg = expect_error(put_storage(&app, fx.org, &fx.admin_key, b).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains("HARDEN_STORAGE_ALLOWED_HOSTS"), "{url}: {msg}");
    }
}
