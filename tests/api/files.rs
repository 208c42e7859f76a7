//! Encrypted files through the Proxy and the Backend against a real S3 server (s3s-fs, started by
//! `scripts/services`; some tests start their own to stop it): byte-for-byte round trips at the
//! plan's edges, ciphertext only in the bucket, the plan and storage refusals, the file count
//! limit under a race, 413 for oversized bodies, and S3 failing during upload and delete.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_nowhere_in_the_database, assert_nowhere_on_the_stream, eventually, expect_error, expect_json,
    spawn_app_with, TestApp,
};
use crate::storage::{new_bucket, new_bucket_at, S3_ACCESS_KEY, S3_SECRET_KEY};

pub const SECRET: &str = "a file owner's secret";
const MIB: usize = 1024 * 1024;

pub fn s3_data_dir() -> PathBuf {
    std::env::var_os("HARDEN_TEST_S3_DATA").map(PathBuf::from).unwrap_or_else(|| "/var/tmp/harden-s3".into())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The objects in a bucket of the shared test server (s3s-fs keeps each as a file; its own
/// metadata lives beside them in hidden files).
fn objects(root: &Path, bucket: &str) -> Vec<PathBuf> {
    files_under(&root.join(bucket))
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

pub struct FileTeam {
    pub org: Uuid,
    pub owner: String,
    pub owner_id: Uuid,
    pub member: String,
    pub member_id: Uuid,
    pub bucket: String,
}

pub async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.storage_allow_private_networks = true;
        s.file_reaper_interval_ms = 200;
    })
    .await
}

/// An org on `plan` with storage on the S3 server at `port`, and two users with keys.
pub async fn file_team_at(app: &TestApp, plan: &str, port: u16) -> FileTeam {
    let fx = app.org_with_users("acme").await;
    let res = app.put(&format!("/admin/orgs/{}/plan", fx.org), &app.global_admin_key, json!({ "plan": plan })).await;
    expect_json(res, StatusCode::OK).await;
    let bucket = new_bucket_at(port).await;
    let mut storage = crate::storage::body(&bucket);
    storage["serviceUrl"] = json!(format!("http://127.0.0.1:{port}"));
    let res = app.put(&format!("/admin/orgs/{}/storage", fx.org), &fx.admin_key, storage).await;
    expect_json(res, StatusCode::OK).await;
    for key in [&fx.admin_key, &fx.member_key] {
        let res = with_secret(app, Method::POST, "/v1/keys/generate", key, None).await;
        expect_json(res, StatusCode::CREATED).await;
    }
    FileTeam {
        org: fx.org,
        owner: fx.admin_key,
        owner_id: fx.admin_id,
        member: fx.member_key,
        member_id: fx.member_id,
        bucket,
    }
}

pub async fn file_team(app: &TestApp, plan: &str) -> FileTeam {
    file_team_at(app, plan, 8014).await
}

pub async fn with_secret(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> reqwest::Response {
    app.proxy(method, path, &[("X-Api-Key", key), ("X-User-Secret", SECRET)], body).await
}

pub async fn upload(app: &TestApp, key: &str, name: &str, content: &[u8]) -> reqwest::Response {
    let body =
        json!({ "fileName": name, "contentB64": STANDARD.encode(content), "contentType": "application/octet-stream" });
    with_secret(app, Method::POST, "/v1/files", key, Some(body)).await
}

/// A user's private keys, opened from `GET /users/me` with their secret as a client opens them.
pub async fn private_keys(app: &TestApp, key: &str, secret: &str) -> harden_domain::crypto::PrivateKeys {
    use harden_domain::crypto;
    let me = expect_json(app.get("/users/me", key).await, StatusCode::OK).await;
    let b64 = |field: &str| STANDARD.decode(me[field].as_str().unwrap()).unwrap();
    let (ecc, kyber) = (b64("encryptedPrivateKeyEccB64"), b64("encryptedPrivateKeyKyberB64"));
    let (params, salt) = crypto::seal_header(&ecc).unwrap();
    let kek = crypto::derive_kek(secret.as_bytes(), salt, params).unwrap();
    crypto::open_private_keys(&kek, me["id"].as_str().unwrap().parse().unwrap(), &ecc, &kyber).unwrap()
}

/// Content of `n` bytes that carries `marker` (when there is room) among varied bytes.
fn content(n: usize, marker: &str) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
    if n >= marker.len() {
        bytes[..marker.len()].copy_from_slice(marker.as_bytes());
        let at = n - marker.len();
        bytes[at..].copy_from_slice(marker.as_bytes());
    }
    bytes
}

#[tokio::test]
async fn files_round_trip_byte_for_byte_at_the_plans_edges_and_the_bucket_holds_only_ciphertext() {
    let app = app().await;
    let team = file_team(&app, "starter").await;
    let marker = format!("file-marker-{}", Uuid::new_v4().simple());
    let name_marker = format!("name-marker-{}", Uuid::new_v4().simple());

    let mut stored = Vec::new();
    for (n, name) in [(0, "empty.bin"), (1, "one.bin"), (MIB, "at-the-limit.bin")] {
        let bytes = content(n, &marker);
        let name = format!("{name_marker}-{name}");
        let created = expect_json(upload(&app, &team.owner, &name, &bytes).await, StatusCode::CREATED).await;
        assert_eq!(created["sizeBytes"], n as u64);
        stored.push((created["id"].as_str().unwrap().to_owned(), name, bytes));
    }
    // One byte over the starter plan's 1 MiB: refused, nothing stored.
    let msg =
        expect_error(upload(&app, &team.owner, "over.bin", &content(MIB + 1, &marker)).await, StatusCode::BAD_REQUEST)
            .await;
    assert_eq!(msg, "plan limit reached: maxFileSizeBytes is 1048576 on the starter plan");

    // Listed with names decrypted.
    let list = expect_json(with_secret(&app, Method::GET, "/v1/files", &team.owner, None).await, StatusCode::OK).await;
    let names: Vec<&str> = list["files"].as_array().unwrap().iter().map(|f| f["fileName"].as_str().unwrap()).collect();
    assert_eq!(names, stored.iter().map(|(_, n, _)| n.as_str()).collect::<Vec<_>>());
    // Downloaded byte for byte.
    for (id, name, bytes) in &stored {
        let file = expect_json(
            with_secret(&app, Method::GET, &format!("/v1/files/{id}"), &team.owner, None).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(file["fileName"], name.as_str());
        assert_eq!(file["sizeBytes"], bytes.len() as u64);
        assert_eq!(STANDARD.decode(file["contentB64"].as_str().unwrap()).unwrap(), *bytes, "{name}");
    }

    // The bucket holds three objects under opaque names, and only ciphertext.
    let root = s3_data_dir();
    let objects_now = objects(&root, &team.bucket);
    assert_eq!(objects_now.len(), 3, "{objects_now:?}");
    for object in &objects_now {
        let object_name = object.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!object_name.contains("marker") && !object_name.contains(".bin"), "{object_name}");
        let bytes = std::fs::read(object).unwrap();
        for form in [marker.as_bytes().to_vec(), name_marker.as_bytes().to_vec(), STANDARD.encode(&marker).into_bytes()]
        {
            assert!(!bytes.windows(form.len()).any(|w| w == form.as_slice()), "plaintext in {object:?}");
        }
    }
    assert_nowhere_in_the_database(&app, &marker, &[&name_marker]).await;
    assert_nowhere_on_the_stream(&app, &marker).await;
    assert_nowhere_on_the_stream(&app, &name_marker).await;

    // The Backend alone returns only ciphertext; another user of the org finds nothing.
    let (id, _, _) = &stored[2];
    let raw = expect_json(app.get(&format!("/files/{id}"), &team.owner).await, StatusCode::OK).await;
    assert_eq!(STANDARD.decode(raw["ciphertextB64"].as_str().unwrap()).unwrap().len(), MIB + 29);
    expect_error(app.get(&format!("/files/{id}"), &team.member).await, StatusCode::NOT_FOUND).await;
    expect_error(app.delete(&format!("/files/{id}"), &team.member).await, StatusCode::NOT_FOUND).await;

    // Deleted: gone from reads and listings, and its object is gone from the bucket.
    let res = with_secret(&app, Method::DELETE, &format!("/v1/files/{id}"), &team.owner, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(
        with_secret(&app, Method::GET, &format!("/v1/files/{id}"), &team.owner, None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_error(app.delete(&format!("/files/{id}"), &team.owner).await, StatusCode::NOT_FOUND).await;
    let list = expect_json(app.get("/files", &team.owner).await, StatusCode::OK).await;
    assert_eq!(list["files"].as_array().unwrap().len(), 2);
    assert_eq!(objects(&root, &team.bucket).len(), 2);
}

#[tokio::test]
async fn the_free_plan_and_an_org_without_storage_cannot_store_files() {
    let app = app().await;
    let fx = app.org_with_users("free").await;
    let res = with_secret(&app, Method::POST, "/v1/keys/generate", &fx.admin_key, None).await;
    expect_json(res, StatusCode::CREATED).await;
    let msg = expect_error(upload(&app, &fx.admin_key, "a.txt", b"hello").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(msg, "file storage is not available on the free plan");

    let res = app.put(&format!("/admin/orgs/{}/plan", fx.org), &app.global_admin_key, json!({ "plan": "smb" })).await;
    expect_json(res, StatusCode::OK).await;
    let msg = expect_error(upload(&app, &fx.admin_key, "a.txt", b"hello").await, StatusCode::BAD_REQUEST).await;
    assert!(msg.starts_with("file storage is not configured for this organization"), "{msg}");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'File'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 0);
}

#[tokio::test]
async fn the_org_file_count_holds_at_its_edge_even_when_uploads_race() {
    let app = app().await;
    let team = file_team(&app, "starter").await;
    // The starter plan's 1,000 files, lowered for the test where the trigger keeps them.
    sqlx::query("UPDATE org_limits SET max_files = 3 WHERE org_id = $1")
        .bind(team.org)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..2 {
        let created = expect_json(upload(&app, &team.owner, &format!("f{i}"), b"x").await, StatusCode::CREATED).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // Two uploads race for the last file: exactly one wins, the loser's object is removed again.
    let (a, b) = tokio::join!(upload(&app, &team.owner, "a", b"a"), upload(&app, &team.member, "b", b"b"));
    let statuses = [a.status(), b.status()];
    assert!(statuses.contains(&StatusCode::CREATED), "{statuses:?}");
    let loser = if a.status() == StatusCode::CREATED { b } else { a };
    let msg = expect_error(loser, StatusCode::BAD_REQUEST).await;
    assert_eq!(msg, "plan limit reached: maxFiles is 3 on the starter plan");
    assert_eq!(objects(&s3_data_dir(), &team.bucket).len(), 3, "no orphan object");

    // Deleting one frees its place.
    let res = app.delete(&format!("/files/{}", ids[0]), &team.owner).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_json(upload(&app, &team.owner, "again", b"x").await, StatusCode::CREATED).await;
    expect_error(upload(&app, &team.owner, "one too many", b"x").await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn bad_uploads_are_clear_4xx_and_oversized_bodies_are_refused_before_they_are_read() {
    let app = app().await;
    let team = file_team(&app, "business").await;
    let wrap = STANDARD.encode([1u8; 33]);
    let good = json!({
        "encryptedFileNameB64": STANDARD.encode([2u8; 40]),
        "ciphertextB64": STANDARD.encode([3u8; 100]),
        "encryptedAesKeyEccB64": wrap,
        "encryptedAesKeyKyberB64": wrap,
        "contentType": "application/json",
    });
    expect_json(app.post("/files", &team.owner, good.clone()).await, StatusCode::CREATED).await;
    for (field, value, expected) in [
        ("ciphertextB64", json!("not base64!"), "ciphertextB64 is not valid base64"),
        ("ciphertextB64", json!(STANDARD.encode([3u8; 28])), "at least 29 bytes"),
        ("encryptedFileNameB64", json!("%%"), "encryptedFileNameB64 is not valid base64"),
        ("contentType", json!("not a mime type"), "contentType must be a MIME type"),
        ("extra", json!(1), "unknown field"),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let msg = expect_error(app.post("/files", &team.owner, body).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains(expected), "{field}: {msg}");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("ciphertextB64");
    let msg = expect_error(app.post("/files", &team.owner, missing).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("missing field `ciphertextB64`"), "{msg}");
    expect_error(app.post("/files", &app.global_admin_key, good.clone()).await, StatusCode::FORBIDDEN).await;
    let res = app
        .client
        .post(format!("{}/files", app.backend))
        .header("X-Api-Key", &team.owner)
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    expect_error(app.get("/files/not-a-uuid", &team.owner).await, StatusCode::BAD_REQUEST).await;
    expect_error(app.get(&format!("/files/{}", Uuid::new_v4()), &team.owner).await, StatusCode::NOT_FOUND).await;

    // The business plan's 8 MiB file fits through the Proxy; a body larger than any plan allows is
    // refused with 413, on both surfaces, by its declared length.
    let big = content(8 * MIB, "big");
    let created = expect_json(upload(&app, &team.owner, "big.bin", &big).await, StatusCode::CREATED).await;
    let id = created["id"].as_str().unwrap();
    let file = expect_json(
        with_secret(&app, Method::GET, &format!("/v1/files/{id}"), &team.owner, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(STANDARD.decode(file["contentB64"].as_str().unwrap()).unwrap(), big);
    let huge = vec![b' '; 12 * MIB];
    for url in [format!("{}/files", app.backend), format!("{}/v1/files", app.proxy)] {
        let res = app
            .client
            .post(&url)
            .header("X-Api-Key", &team.owner)
            .header("X-User-Secret", SECRET)
            .header("Content-Type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        let msg = expect_error(res, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert!(msg.starts_with("request body too large"), "{url}: {msg}");
    }
}

/// An s3s-fs of the test's own, to stop and start.
struct OwnS3 {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnS3 {
    fn binary() -> PathBuf {
        let installed = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/s3s-fs");
        if installed.exists() {
            installed
        } else {
            "s3s-fs".into()
        }
    }

    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut s3 = OwnS3 { port, dir: tempfile::tempdir().unwrap(), child: None };
        s3.up().await;
        s3
    }

    async fn up(&mut self) {
        let child = std::process::Command::new(Self::binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("s3s-fs is installed (scripts/services)");
        self.child = Some(child);
        let port = self.port;
        eventually("the test's own S3 server listening", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test]
async fn s3_down_during_upload_leaves_nothing_and_during_delete_the_object_goes_once_it_is_back() {
    let app = app().await;
    let mut s3 = OwnS3::start().await;
    let team = file_team_at(&app, "starter", s3.port).await;
    let kept = expect_json(upload(&app, &team.owner, "kept.txt", b"kept").await, StatusCode::CREATED).await;
    let kept_id = kept["id"].as_str().unwrap().to_owned();
    assert_eq!(objects(s3.dir.path(), &team.bucket).len(), 1);

    s3.down();
    let msg = expect_error(upload(&app, &team.owner, "lost.txt", b"lost").await, StatusCode::BAD_GATEWAY).await;
    assert!(msg.starts_with("file storage failed"), "{msg}");
    assert_eq!(app.events_of_type("FileStored").await, 1, "no record of the failed upload");
    let list = expect_json(app.get("/files", &team.owner).await, StatusCode::OK).await;
    assert_eq!(list["files"].as_array().unwrap().len(), 1);
    expect_error(app.get(&format!("/files/{kept_id}"), &team.owner).await, StatusCode::BAD_GATEWAY).await;

    // Deleted while the store is down: the record goes at once, the object stays for now.
    let res = app.delete(&format!("/files/{kept_id}"), &team.owner).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(app.get(&format!("/files/{kept_id}"), &team.owner).await, StatusCode::NOT_FOUND).await;
    assert_eq!(objects(s3.dir.path(), &team.bucket).len(), 1);
    assert_eq!(app.events_of_type("FileObjectRemoved").await, 0);

    // Back: the reaper removes the object and records it once.
    s3.up().await;
    let dir = s3.dir.path().to_owned();
    let bucket = team.bucket.clone();
    eventually("the deleted file's object removed", || {
        let (dir, bucket) = (dir.clone(), bucket.clone());
        async move { objects(&dir, &bucket).is_empty() }
    })
    .await;
    eventually("the removal recorded", || async { app.events_of_type("FileObjectRemoved").await == 1 }).await;
    // And uploads work again, with nothing of the failed one anywhere.
    expect_json(upload(&app, &team.owner, "after.txt", b"after").await, StatusCode::CREATED).await;
    assert_eq!(objects(s3.dir.path(), &team.bucket).len(), 1);
    let _ = new_bucket; // the shared server's helper, used by the other tests
}

#[tokio::test]
async fn files_are_shared_like_records_and_a_revocation_removal_or_deletion_refuses_the_recipient_at_once() {
    let app = app().await;
    let team = file_team(&app, "starter").await;
    let (third_id, third) = app.create_user(team.org, &team.owner, "third", false).await;
    expect_json(with_secret(&app, Method::POST, "/v1/keys/generate", &third, None).await, StatusCode::CREATED).await;
    let marker = format!("shared-file-{}", Uuid::new_v4().simple());
    let bytes = content(5000, &marker);
    let created =
        expect_json(upload(&app, &team.owner, &format!("{marker}.txt"), &bytes).await, StatusCode::CREATED).await;
    let file_id = created["id"].as_str().unwrap().to_owned();
    let share = |recipient: Uuid, expires: Value| {
        let body = json!({ "recipientUserId": recipient, "permission": "read", "expiresUtc": expires });
        let path = format!("/v1/files/{file_id}/shares");
        let app = &app;
        let owner = team.owner.clone();
        async move { with_secret(app, Method::POST, &path, &owner, Some(body)).await }
    };
    let future = json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());

    // Granted, listed in the inbox with the name, opened byte for byte.
    let granted = expect_json(share(team.member_id, future.clone()).await, StatusCode::CREATED).await;
    let share_id = granted["shareId"].as_str().unwrap().to_owned();
    let inbox =
        expect_json(with_secret(&app, Method::GET, "/v1/files/shared", &team.member, None).await, StatusCode::OK).await;
    assert_eq!(inbox.as_array().unwrap().len(), 1);
    assert_eq!(inbox[0]["fileName"], format!("{marker}.txt"));
    assert_eq!(inbox[0]["fileId"], file_id.as_str());
    assert_eq!(inbox[0]["sizeBytes"], 5000);
    let read_path = format!("/v1/files/shared/{share_id}");
    let opened =
        expect_json(with_secret(&app, Method::GET, &read_path, &team.member, None).await, StatusCode::OK).await;
    assert_eq!(STANDARD.decode(opened["contentB64"].as_str().unwrap()).unwrap(), bytes);
    assert_eq!(opened["fileName"], format!("{marker}.txt"));
    assert_eq!(opened["ownerUserId"], team.owner_id.to_string());

    // The rules: one open share per recipient, a future expiry, a recipient in the org; a stranger finds nothing.
    expect_error(share(team.member_id, future.clone()).await, StatusCode::CONFLICT).await;
    let past = json!((chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339());
    let msg = expect_error(share(third_id, past).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(msg, "expiresUtc must be in the future");
    let other = app.org_with_users("other").await;
    expect_error(share(other.member_id, future.clone()).await, StatusCode::NOT_FOUND).await;
    expect_error(with_secret(&app, Method::GET, &read_path, &third, None).await, StatusCode::NOT_FOUND).await;
    let listed = expect_json(app.get(&format!("/files/{file_id}/shares"), &team.owner).await, StatusCode::OK).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Revoked by the owner (API key alone): refused at once.
    let res = app
        .proxy(Method::DELETE, &format!("/v1/files/{file_id}/shares/{share_id}"), &[("X-Api-Key", &team.owner)], None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(with_secret(&app, Method::GET, &read_path, &team.member, None).await, StatusCode::NOT_FOUND).await;
    let inbox =
        expect_json(with_secret(&app, Method::GET, "/v1/files/shared", &team.member, None).await, StatusCode::OK).await;
    assert!(inbox.as_array().unwrap().is_empty());

    // Removed by the recipient.
    let granted = expect_json(share(team.member_id, json!(null)).await, StatusCode::CREATED).await;
    let second = granted["shareId"].as_str().unwrap().to_owned();
    let res =
        app.proxy(Method::DELETE, &format!("/v1/files/shared/{second}"), &[("X-Api-Key", &team.member)], None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let path = format!("/v1/files/shared/{second}");
    expect_error(with_secret(&app, Method::GET, &path, &team.member, None).await, StatusCode::NOT_FOUND).await;
    // A KV share route does not end a file share, nor the other way round.
    expect_error(app.delete(&format!("/kv/shared/{second}"), &team.member).await, StatusCode::NOT_FOUND).await;

    // Racing grants to one recipient: one share (its id is derived from owner, file and recipient,
    // so the others conflict at append), held open on the File aggregate.
    let raced = futures::future::join_all((0..4).map(|_| share(third_id, future.clone()))).await;
    let statuses: Vec<StatusCode> = raced.iter().map(|r| r.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT), "{statuses:?}");
    let created = raced.into_iter().find(|r| r.status() == StatusCode::CREATED).unwrap();
    let third_share = expect_json(created, StatusCode::CREATED).await["shareId"].as_str().unwrap().to_owned();
    let opened_on_file: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'File' AND event_type = 'FileShareOpened'
           AND payload -> 'FileShareOpened' ->> 'share_id' = $1",
    )
    .bind(&third_share)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(opened_on_file, 1);

    // Deleted by the owner: the share ends with the file.
    let res = app.delete(&format!("/files/{file_id}"), &team.owner).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let path = format!("/v1/files/shared/{third_share}");
    expect_error(with_secret(&app, Method::GET, &path, &third, None).await, StatusCode::NOT_FOUND).await;
    let inbox =
        expect_json(with_secret(&app, Method::GET, "/v1/files/shared", &third, None).await, StatusCode::OK).await;
    assert!(inbox.as_array().unwrap().is_empty());

    // Audited, and nothing in clear on the Backend or the stream.
    let audit = expect_json(app.get("/audit?scope=all", &team.owner).await, StatusCode::OK).await;
    let actions: Vec<String> = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    for action in ["file.upload", "share.grant", "share.revoke", "share.remove", "file.delete"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    assert_nowhere_in_the_database(&app, &marker, &[]).await;
    assert_nowhere_on_the_stream(&app, &marker).await;
}

/// A write-only service with the owner's API key alone (proxy-api-use-cases 1): `POST /v1/files`
/// without `X-User-Secret` encrypts to the owner's public keys with a fresh key. The key's holder
/// cannot read the file back (no secret, or a wrong one, opens nothing); the owner reads it byte
/// for byte, and the bucket holds only ciphertext.
#[tokio::test]
async fn a_file_uploaded_with_the_api_key_alone_is_stored_for_the_owner_who_alone_reads_it() {
    let app = app().await;
    let team = file_team(&app, "starter").await;
    let marker = format!("key-only-file-{}", Uuid::new_v4().simple());
    let bytes = content(3000, &marker);
    let body = json!({ "fileName": format!("{marker}.bin"), "contentB64": STANDARD.encode(&bytes) });
    let res = app.proxy(Method::POST, "/v1/files", &[("X-Api-Key", &team.owner)], Some(body)).await;
    let created = expect_json(res, StatusCode::CREATED).await;
    let file_id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/files/{file_id}");

    // The key alone reads nothing: no secret is 400, a guessed one 401.
    expect_error(app.proxy(Method::GET, &path, &[("X-Api-Key", &team.owner)], None).await, StatusCode::BAD_REQUEST)
        .await;
    let guessed = [("X-Api-Key", team.owner.as_str()), ("X-User-Secret", "a guess at the owner's secret")];
    expect_error(app.proxy(Method::GET, &path, &guessed, None).await, StatusCode::UNAUTHORIZED).await;
    // The owner, with their secret, reads it back, name and all.
    let opened = expect_json(with_secret(&app, Method::GET, &path, &team.owner, None).await, StatusCode::OK).await;
    assert_eq!(STANDARD.decode(opened["contentB64"].as_str().unwrap()).unwrap(), bytes);
    assert_eq!(opened["fileName"], format!("{marker}.bin"));
    // The key alone cannot seal the file's key: it reads back flagged.
    assert_eq!(opened["ownerSealed"], false, "a key-only upload passed as sealed by its owner");
    let listed =
        expect_json(with_secret(&app, Method::GET, "/v1/files", &team.owner, None).await, StatusCode::OK).await;
    assert_eq!(listed["files"][0]["fileName"], format!("{marker}.bin"));
    assert_eq!(listed["files"][0]["ownerSealed"], false);
    assert_nowhere_in_the_database(&app, &marker, &[]).await;
    for object in objects(&s3_data_dir(), &team.bucket) {
        let stored = std::fs::read(&object).unwrap();
        assert!(!stored.windows(marker.len()).any(|w| w == marker.as_bytes()), "plaintext in {object:?}");
    }
}

/// A1, a thief of the owner's API key, forges a whole file straight through the Backend's
/// `POST /files` with harden's own crypto functions: a data key of their own, the name and content
/// sealed under it as a real client seals them, the key wrapped to the owner's public keys (anyone
/// can make such a wrap; files stored before files were sealed have the same plain wrap). It opens
/// for the owner, but flagged `ownerSealed: false`, as is one with a made-up owner-seal tag; the
/// owner's own upload through the Proxy reads `ownerSealed: true`.
#[tokio::test]
async fn a_file_forged_with_the_api_key_alone_reads_back_flagged_as_not_sealed_by_its_owner() {
    use harden_domain::crypto::{self, DataKey, PublicKeys, RecordContext};
    let app = app().await;
    let team = file_team(&app, "starter").await;
    let me = expect_json(app.get("/users/me", &team.owner).await, StatusCode::OK).await;
    let b64 = |field: &Value| STANDARD.decode(field.as_str().unwrap()).unwrap();
    let public = PublicKeys::from_bytes(&b64(&me["publicKeyEccB64"]), &b64(&me["publicKeyKyberB64"])).unwrap();
    let (org, owner) = (team.org, team.owner_id);
    let planted = DataKey::from_bytes([0x41; 32]);
    let forge = |name: &str, content: &[u8], fake_tag: bool| {
        let name_context = RecordContext { kind: "file-name", org, owner, name: &[] };
        let encrypted_name = crypto::encrypt_value(&planted, [1; 12], &name_context, name.as_bytes());
        let binding = crypto::file_binding(&encrypted_name);
        let context = RecordContext { kind: "file", org, owner, name: &binding };
        let ciphertext = crypto::encrypt_value(&planted, [2; 12], &context, content);
        let (mut ecc, kyber) = crypto::wrap_data_key(&public, owner, &context, &planted, &[3; 64], [4; 12]);
        if fake_tag {
            ecc[0] = crypto::FORMAT_V2;
            ecc.extend_from_slice(&[0x42; crypto::OWNER_TAG_LEN]);
        }
        json!({
            "encryptedFileNameB64": STANDARD.encode(&encrypted_name),
            "encryptedAesKeyEccB64": STANDARD.encode(ecc),
            "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
            "contentType": "text/plain",
            "ciphertextB64": STANDARD.encode(ciphertext),
        })
    };
    let read = |id: String| {
        let app = &app;
        let key = team.owner.clone();
        async move {
            let res = with_secret(app, Method::GET, &format!("/v1/files/{id}"), &key, None).await;
            expect_json(res, StatusCode::OK).await
        }
    };
    let id_of = |created: &Value| created["id"].as_str().unwrap().to_owned();

    for (name, fake_tag) in [("invoice.pdf", false), ("tagged.pdf", true)] {
        let created = expect_json(
            app.post("/files", &team.owner, forge(name, b"pay to IBAN XX00", fake_tag)).await,
            StatusCode::CREATED,
        )
        .await;
        let opened = read(id_of(&created)).await;
        assert_eq!(
            (opened["fileName"].as_str(), STANDARD.decode(opened["contentB64"].as_str().unwrap()).unwrap()),
            (Some(name), b"pay to IBAN XX00".to_vec())
        );
        assert_eq!(opened["ownerSealed"], false, "a forged file passed as sealed by its owner: {name}");
    }

    // The owner's own upload through the Proxy is sealed, on the file and in the listing.
    let created =
        expect_json(upload(&app, &team.owner, "mine.txt", b"the owner's own file").await, StatusCode::CREATED).await;
    let mine = id_of(&created);
    let opened = read(mine.clone()).await;
    assert_eq!((opened["fileName"].as_str(), opened["ownerSealed"].as_bool()), (Some("mine.txt"), Some(true)));
    let listed =
        expect_json(with_secret(&app, Method::GET, "/v1/files", &team.owner, None).await, StatusCode::OK).await;
    for f in listed["files"].as_array().unwrap() {
        assert_eq!(f["ownerSealed"], f["id"] == mine.as_str(), "{f}");
    }
    // Its wrap is owner-sealed over the file's content context at epoch 0, as the README specifies.
    let stored = expect_json(app.get(&format!("/files/{mine}?content=false"), &team.owner).await, StatusCode::OK).await;
    let binding = crypto::file_binding(&b64(&stored["encryptedFileNameB64"]));
    let context = RecordContext { kind: "file", org, owner, name: &binding };
    let owner_keys = private_keys(&app, &team.owner, SECRET).await;
    let (ecc, kyber) = (b64(&stored["encryptedAesKeyEccB64"]), b64(&stored["encryptedAesKeyKyberB64"]));
    assert!(crypto::owner_sealed(&owner_keys, &context, crypto::FILE_EPOCH, &ecc, &kyber));
    assert!(!crypto::owner_sealed(&owner_keys, &context, 1, &ecc, &kyber), "the tag binds the epoch");
}
