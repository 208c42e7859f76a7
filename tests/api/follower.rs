//! The generic follower, proved on raw appends to the event store:
//! - a transaction that takes its ids first but commits last is neither skipped nor overtaken;
//! - a follower killed between the commit of events and their projection catches up, nothing lost
//!   or doubled;
//! - two instances of one follower apply each event once;
//! - a group of read models gets each event once per member, two instances of the group too, and a
//!   failing member stalls none of the others and catches up once it recovers.
//!
//! The open-transaction test holds a transaction open, which holds back the snapshot horizon of its
//! whole PostgreSQL cluster; it runs on a private throwaway cluster so no other test stalls.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use harden_commands::db::{self, DbConfig};
use harden_projections::{wake, Follower, FollowerConfig, Projector, StoredEvent};
use sqlx::{PgConnection, PgPool};
use tempfile::TempDir;
use tokio::sync::Notify;

use crate::helpers::{eventually, TestDb};

/// Records every event it is given, in the order given, with no uniqueness: a doubled event shows.
struct Recorder {
    /// When set, the follower "dies" inside the batch on the Nth event: the row is written, then
    /// the projector hangs until the task is aborted.
    hang_on: Option<(usize, Arc<Notify>)>,
    seen: AtomicUsize,
    name: &'static str,
    /// While set, every apply fails (a read model whose table is broken, say).
    failing: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Recorder {
    fn new() -> Self {
        Self::named("test-recorder")
    }
    fn named(name: &'static str) -> Self {
        Self { hang_on: None, seen: AtomicUsize::new(0), name, failing: None }
    }
}

#[async_trait]
impl Projector for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if self.failing.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
            anyhow::bail!("{} is failing", self.name);
        }
        sqlx::query("INSERT INTO recorded (follower, aggregate_id, global_id) VALUES ($1, $2, $3)")
            .bind(self.name)
            .bind(&event.aggregate_id)
            .bind(event.position.global_id)
            .execute(conn)
            .await?;
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((at, reached)) = &self.hang_on {
            if n == *at {
                reached.notify_one();
                std::future::pending::<()>().await;
            }
        }
        Ok(())
    }
}

async fn prepare(url: &str) -> PgPool {
    let pool = db::connect(&DbConfig { url, max_connections: 8, idle_in_transaction_timeout: Duration::from_secs(60) })
        .await
        .unwrap();
    db::migrate(&pool).await.unwrap();
    sqlx::query(
        "CREATE TABLE recorded (n bigserial PRIMARY KEY, follower text NOT NULL, aggregate_id text NOT NULL,
                               global_id bigint NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

const APPEND: &str =
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                      VALUES ('Test', $1, 1, 'Tested', '1', '{}', '{}')";

async fn append(pool: &PgPool, id: &str) {
    sqlx::query(APPEND).bind(id).execute(pool).await.unwrap();
    sqlx::query("SELECT pg_notify('harden_events', '')").execute(pool).await.unwrap();
}

async fn recorded(pool: &PgPool) -> Vec<String> {
    recorded_by(pool, "test-recorder").await
}

async fn recorded_by(pool: &PgPool, follower: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT aggregate_id FROM recorded WHERE follower = $1 ORDER BY n")
        .bind(follower)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn follower(pool: &PgPool, projector: Recorder) -> Follower {
    let config = FollowerConfig { batch_size: 7, poll_interval: Duration::from_millis(100) };
    Follower::new(pool.clone(), projector, config, wake::spawn(pool.clone()))
}

/// A PostgreSQL cluster of this test's own, stopped and deleted on drop.
pub(crate) struct PrivateCluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivateCluster {
    pub(crate) fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = TempDir::new().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = dir.path().join("data");
        let as_root = unsafe { libc_geteuid() } == 0;
        if as_root {
            // initdb refuses to run as root; the cluster belongs to the postgres user.
            std::os::unix::fs::chown(dir.path(), Some(uid_of("postgres")), None).unwrap();
        }
        let run = |args: &[&str]| {
            let mut cmd = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]);
                c.arg(bin.join(args[0]));
                c
            } else {
                Command::new(bin.join(args[0]))
            };
            let out = cmd.args(&args[1..]).output().expect("run a PostgreSQL tool");
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["initdb", "-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres"]);
        let cluster = Self { dir, bin, port };
        cluster.start_again();
        cluster
    }

    pub(crate) fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// `pg_ctl -D <data dir>` for the cluster, as the postgres user when the suite runs as root.
    fn pg_ctl_command(&self) -> Command {
        let mut cmd = if unsafe { libc_geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        cmd.arg("-D").arg(self.dir.path().join("data"));
        cmd
    }

    fn pg_ctl(&self, args: &[&str]) {
        let out = self.pg_ctl_command().args(args).output().expect("run pg_ctl");
        assert!(out.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts the cluster (again) and waits until it accepts connections.
    pub(crate) fn start_again(&self) {
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        let log = self.dir.path().join("log");
        self.pg_ctl(&["-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"]);
    }

    /// A fast shutdown, as an operator's restart does: sessions are ended, then the server stops.
    pub(crate) fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Quietly: the cluster may be stopped already.
        let _ = self.pg_ctl_command().args(["-m", "immediate", "stop"]).output();
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_delivered_in_order_and_not_skipped() {
    let cluster = PrivateCluster::start();
    let pool = prepare(&cluster.url("follow")).await;
    let f = follower(&pool, Recorder::new());
    f.register().await.unwrap();
    let task = tokio::spawn(f.run());

    // Transaction A appends first (it takes the lower global_id and tx_id) and stays open.
    let mut a = pool.begin().await.unwrap();
    sqlx::query(APPEND).bind("a").execute(&mut *a).await.unwrap();
    // Transaction B appends later and commits at once.
    append(&pool, "b").await;
    // While A is open, B must not be delivered: delivering it would move the checkpoint past A.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(recorded(&pool).await.is_empty(), "nothing may overtake the open transaction");

    a.commit().await.unwrap();
    sqlx::query("SELECT pg_notify('harden_events', '')").execute(&pool).await.unwrap();
    eventually("both events delivered", || async { recorded(&pool).await.len() >= 2 }).await;
    append(&pool, "c").await;
    eventually("a later event delivered", || async { recorded(&pool).await.len() >= 3 }).await;
    assert_eq!(recorded(&pool).await, ["a", "b", "c"], "in commit-safe order, once each");
    task.abort();
}

#[tokio::test]
async fn a_follower_killed_mid_batch_catches_up_with_nothing_lost_or_doubled() {
    let db = TestDb::new();
    let pool = prepare(&db.url()).await;
    for i in 0..20 {
        append(&pool, &format!("e{i:02}")).await;
    }
    // The first follower dies inside its second batch, after writing read-model rows but before
    // its checkpoint commits.
    let reached = Arc::new(Notify::new());
    let dying = follower(&pool, Recorder { hang_on: Some((10, reached.clone())), ..Recorder::new() });
    dying.register().await.unwrap();
    let task = tokio::spawn(dying.run());
    reached.notified().await;
    task.abort();
    let _ = task.await;
    // The hung batch rolled back: what is visible is exactly what the checkpoint covers, a prefix
    // that stops before the 10th event. (How long that prefix is depends on how the cluster-wide
    // snapshot horizon cut the batches, which other tests' transactions influence.)
    let visible = recorded(&pool).await;
    let covered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e, follower_checkpoints c
         WHERE c.name = 'test-recorder' AND (e.tx_id, e.global_id) <= (c.tx_id, c.global_id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(visible.len() < 10, "the rows of the batch that died are not visible: {visible:?}");
    assert_eq!(visible.len() as i64, covered, "read model and checkpoint moved together");
    let prefix: Vec<_> = (0..visible.len()).map(|i| format!("e{i:02}")).collect();
    assert_eq!(visible, prefix);

    // More events are committed while no follower runs.
    for i in 20..30 {
        append(&pool, &format!("e{i:02}")).await;
    }
    let revived = follower(&pool, Recorder::new());
    let task = tokio::spawn(revived.run());
    eventually("the follower catches up", || async { recorded(&pool).await.len() >= 30 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<_> = (0..30).map(|i| format!("e{i:02}")).collect();
    assert_eq!(recorded(&pool).await, expected, "every event exactly once, in order");
    task.abort();
}

#[tokio::test]
async fn two_instances_of_one_follower_apply_each_event_once() {
    let db = TestDb::new();
    let pool = prepare(&db.url()).await;
    let first = follower(&pool, Recorder::new());
    let second = follower(&pool, Recorder::new());
    first.register().await.unwrap();
    let tasks = [tokio::spawn(first.run()), tokio::spawn(second.run())];
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    append(&pool, &format!("w{w}-{i:02}")).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    eventually("all 100 events applied", || async { recorded(&pool).await.len() >= 100 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = recorded(&pool).await;
    assert_eq!(got.len(), 100, "no event applied twice");
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 100, "no event lost");
    for t in tasks {
        t.abort();
    }
}

fn group(pool: &PgPool, members: Vec<Recorder>) -> Follower {
    let config = FollowerConfig { batch_size: 7, poll_interval: Duration::from_millis(100) };
    let projectors = members.into_iter().map(|m| Arc::new(m) as Arc<dyn Projector>).collect();
    Follower::group(pool.clone(), projectors, config, wake::spawn(pool.clone()))
}

/// `writers` concurrent writers appending `each` events, ids prefixed with `batch`.
async fn append_many(pool: &PgPool, batch: &str, writers: usize, each: usize) {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = pool.clone();
            let batch = batch.to_owned();
            tokio::spawn(async move {
                for i in 0..each {
                    append(&pool, &format!("{batch}-w{w}-{i:02}")).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_group_applies_each_event_once_per_member_in_two_instances() {
    let db = TestDb::new();
    let pool = prepare(&db.url()).await;
    // One member starts behind the other: it joined later, so its checkpoint is older.
    append_many(&pool, "first", 1, 5).await;
    let early = group(&pool, vec![Recorder::named("test-early")]);
    early.register().await.unwrap();
    let task = tokio::spawn(early.run());
    eventually("the early member has the first events", || async { recorded_by(&pool, "test-early").await.len() >= 5 })
        .await;
    task.abort();
    let _ = task.await;

    let members = || vec![Recorder::named("test-early"), Recorder::named("test-late")];
    let (first, second) = (group(&pool, members()), group(&pool, members()));
    first.register().await.unwrap();
    let tasks = [tokio::spawn(first.run()), tokio::spawn(second.run())];
    append_many(&pool, "second", 4, 25).await;
    for name in ["test-early", "test-late"] {
        eventually("all 105 events applied", || async { recorded_by(&pool, name).await.len() >= 105 }).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in ["test-early", "test-late"] {
        let mut got = recorded_by(&pool, name).await;
        assert_eq!(got.len(), 105, "{name}: no event applied twice");
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 105, "{name}: no event lost");
    }
    let checkpoints: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_id FROM follower_checkpoints WHERE name IN ('test-early', 'test-late')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(checkpoints.len(), 2);
    assert_eq!(checkpoints[0], checkpoints[1], "both members reached the same position");
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn a_failing_member_stalls_no_other_and_catches_up_when_it_recovers() {
    let db = TestDb::new();
    let pool = prepare(&db.url()).await;
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let broken = Recorder { failing: Some(failing.clone()), ..Recorder::named("test-broken") };
    let follower = group(&pool, vec![Recorder::named("test-healthy"), broken]);
    follower.register().await.unwrap();
    let positions = follower.positions();
    let task = tokio::spawn(follower.run());
    append_many(&pool, "first", 2, 10).await;
    eventually("the healthy member applies everything", || async {
        recorded_by(&pool, "test-healthy").await.len() >= 20
    })
    .await;
    assert!(recorded_by(&pool, "test-broken").await.is_empty(), "the failing member applied nothing");
    let (healthy, broken) = (
        &positions.iter().find(|(n, _)| *n == "test-healthy").unwrap().1,
        &positions.iter().find(|(n, _)| *n == "test-broken").unwrap().1,
    );
    assert!(*healthy.borrow() > *broken.borrow(), "only the healthy member's position moved");

    failing.store(false, Ordering::SeqCst);
    append_many(&pool, "second", 1, 5).await;
    eventually("the recovered member catches up", || async { recorded_by(&pool, "test-broken").await.len() >= 25 })
        .await;
    eventually("the healthy member has the later events", || async {
        recorded_by(&pool, "test-healthy").await.len() >= 25
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in ["test-healthy", "test-broken"] {
        let mut got = recorded_by(&pool, name).await;
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 25, "{name}: every event once");
        assert_eq!(recorded_by(&pool, name).await.len(), 25, "{name}: none twice");
    }
    task.abort();
}
