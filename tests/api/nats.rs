//! The NATS relay against real JetStream: every committed event on the stream exactly once, through
//! a burst of concurrent writes, a NATS outage, and two relays running at once.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::helpers::{eventually, expect_json, expected_msg_ids, spawn_app_with, stream_messages, TestApp, NATS};

/// Waits until the stream holds exactly the event store's events, then checks nothing is doubled.
async fn assert_stream_matches_events(app: &TestApp) {
    let url = app.settings.nats_url.clone();
    let stream = app.settings.nats_stream.clone();
    eventually("the stream holds every committed event", || async {
        expected_msg_ids(&app.pool).await.len() == stream_messages(&url, &stream).await.len()
    })
    .await;
    let messages = stream_messages(&url, &stream).await;
    let ids: Vec<_> = messages.iter().map(|(id, _, _)| id.clone()).collect();
    let unique: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no event published twice");
    let expected: HashSet<_> = expected_msg_ids(&app.pool).await.into_iter().collect();
    assert_eq!(unique, expected, "exactly the committed events");
    // Published in the event store's commit-safe order.
    assert_eq!(ids, expected_msg_ids(&app.pool).await);
}

#[tokio::test]
async fn every_committed_event_reaches_the_stream_exactly_once_after_a_burst() {
    let app = spawn_app_with(|_| {}).await;
    let fx = app.org_with_users("acme").await;
    let app_ref = &app;
    let writes = (0..60).map(|i| {
        let key = if i % 2 == 0 { fx.member_key.clone() } else { fx.admin_key.clone() };
        async move { app_ref.put_kv(&format!("burst-{}", i % 20), &key, 8).await.status() }
    });
    let statuses: Vec<_> = futures::stream::iter(writes).buffer_unordered(16).collect().await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    assert_stream_matches_events(&app).await;
}

#[tokio::test]
async fn notices_carry_ids_and_context_but_no_secret_material() {
    let app = spawn_app_with(|_| {}).await;
    let fx = app.org_with_users("acme").await;
    expect_json(app.put_kv("very-private-key-name", &fx.member_key, 16).await, StatusCode::CREATED).await;
    assert_stream_matches_events(&app).await;
    let messages = stream_messages(&app.settings.nats_url, &app.settings.nats_stream).await;
    let (_, subject, notice) = messages.iter().find(|(_, _, n)| n["eventType"] == "SecretCreated").unwrap();
    assert_eq!(subject, &format!("{}.{}.secret.SecretCreated", app.settings.nats_subject_prefix, fx.org));
    assert_eq!(notice["orgId"], fx.org.to_string());
    assert_eq!(notice["actorUserId"], fx.member_id.to_string());
    assert_eq!(notice["recordVersion"], 1);
    assert_eq!(notice["aggregateType"], "Secret");
    for field in ["eventId", "aggregateId", "sequence", "eventVersion", "requestId", "recordedAt"] {
        assert!(!notice[field].is_null(), "{field} in {notice}");
    }
    let everything = serde_json::to_string(&messages).unwrap();
    let ciphertext = crate::helpers::kv_body(16, 7)["ciphertextB64"].as_str().unwrap().to_owned();
    assert!(!everything.contains("very-private-key-name"), "key names stay out of NATS");
    assert!(!everything.contains(&ciphertext[..40]), "ciphertext stays out of NATS");
    assert!(!everything.contains("key_hash") && !everything.contains("sealed"), "no key material");
}

/// A NATS server of this test's own, which the test can stop and start.
struct PrivateNats {
    child: Option<Child>,
    port: u16,
    store: TempDir,
}

impl PrivateNats {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut nats = Self { child: None, port, store: TempDir::new().unwrap() };
        nats.resume();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let child = spawn_nats(self.port, self.store.path());
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "private nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_nats(port: u16, store: &Path) -> Child {
    Command::new("/usr/sbin/nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nats-server")
}

#[tokio::test]
async fn events_written_while_nats_is_down_arrive_once_it_is_back() {
    let mut nats = PrivateNats::start();
    let url = nats.url();
    let app = spawn_app_with(|s| s.nats_url = url).await;
    let fx = app.org_with_users("acme").await;
    expect_json(app.put_kv("before", &fx.member_key, 1).await, StatusCode::CREATED).await;
    assert_stream_matches_events(&app).await;

    // NATS goes away in the middle of a burst (while batches are being published), ...
    let app_ref = &app;
    let burst = futures::stream::iter((0..60).map(|i| {
        let key = fx.member_key.clone();
        async move { app_ref.put_kv(&format!("burst-{i}"), &key, 1).await.status() }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>();
    let stop = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        nats.stop();
    };
    let (statuses, ()) = tokio::join!(burst, stop);
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "serving does not depend on NATS: {statuses:?}");
    for i in 0..10 {
        expect_json(app.put_kv(&format!("during-{i}"), &fx.member_key, 1).await, StatusCode::CREATED).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ... and comes back: every event arrives once, in order.
    nats.resume();
    expect_json(app.put_kv("after", &fx.member_key, 1).await, StatusCode::CREATED).await;
    assert_stream_matches_events(&app).await;
}

#[tokio::test]
async fn two_instances_relay_each_event_once() {
    let app = spawn_app_with(|_| {}).await;
    let second = app.restart().await;
    let fx = app.org_with_users("acme").await;
    let (app_ref, second_ref) = (&app, &second);
    let writes = (0..40).map(|i| {
        let key = fx.member_key.clone();
        async move {
            let instance = if i % 2 == 0 { app_ref } else { second_ref };
            instance.put_kv(&format!("k{i}"), &key, 4).await.status()
        }
    });
    let statuses: Vec<_> = futures::stream::iter(writes).buffer_unordered(8).collect().await;
    assert!(statuses.iter().all(|s| s.is_success()));
    assert_stream_matches_events(&app).await;
    // Whichever instance led, the other one carries on alone: stop the first instance entirely
    // (its relay, if it was the leader, releases the lock with its connection).
    drop(app);
    let fx2 = second.org_with_users("after the first instance stopped").await;
    expect_json(second.put_kv("late", &fx2.member_key, 1).await, StatusCode::CREATED).await;
    assert_stream_matches_events(&second).await;
    assert_eq!(second.settings.nats_url, NATS);
}

#[tokio::test]
async fn events_tail_prints_the_org_s_events_from_the_stream() {
    let app = spawn_app_with(|_| {}).await;
    let a = app.org_with_users("a").await;
    let b = app.org_with_users("b").await;
    expect_json(app.put_kv("k", &a.member_key, 1).await, StatusCode::CREATED).await;
    expect_json(app.put_kv("k", &b.member_key, 1).await, StatusCode::CREATED).await;
    assert_stream_matches_events(&app).await;
    let a_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE metadata ->> 'org_id' = $1")
        .bind(a.org.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_harden"))
        .args(["events", "tail", "--from-start", "--org", &a.org.to_string(), "--limit", &a_events.to_string()])
        .env("HARDEN_NATS_STREAM", &app.settings.nats_stream)
        .env("HARDEN_NATS_SUBJECT_PREFIX", &app.settings.nats_subject_prefix)
        .env("HARDEN_LOG", "warn")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out).await.expect("tail stops after --limit").unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as i64, a_events);
    assert!(lines.iter().all(|l| l["event"]["orgId"] == a.org.to_string()), "only org a's events");
    assert_eq!(lines[0]["event"]["eventType"], "OrgCreated");
    assert!(lines.iter().any(|l| l["subject"].as_str().unwrap().ends_with(".secret.SecretCreated")));
}
