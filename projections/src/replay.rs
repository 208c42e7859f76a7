//! `harden replay`: rebuild read models from the event store.
//!
//! A projection is rebuilt from zero into a shadow schema (`replay_<name>`) holding empty copies of
//! its tables; its projector's unqualified table names resolve there through `search_path`, so the
//! same code that feeds the live tables feeds the shadow. The live tables keep answering meanwhile.
//! To swap, one transaction takes the projection's follower lock (pausing its live follower, in
//! this or any instance), applies the events committed since, replaces the live rows with the
//! shadow's (readers see the old rows until the commit, then the new), moves the checkpoint to the
//! shadow's position, and drops the shadow. The live tables keep their identity: indexes, names and
//! grants are untouched.
//!
//! Trigger-maintained tables (credentials, plan limits) are not projections and are not replayed:
//! a replay never recounts usage from zero.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};

use harden_commands::Position;

use crate::audit::AuditProjector;
use crate::cloud::CloudProjector;
use crate::directory::DirectoryProjector;
use crate::files::FilesProjector;
use crate::follower::{lock_follower, read_batch, register_checkpoint, save_checkpoint, Projector, StoredEvent};
use crate::kv::KvProjector;
use crate::recovery::RecoveryProjector;
use crate::shares::SharesProjector;

/// A projection: its follower and the tables it owns.
#[derive(Clone)]
pub struct Projection {
    pub projector: Arc<dyn Projector>,
    pub tables: &'static [&'static str],
}

impl Projection {
    pub fn name(&self) -> &'static str {
        self.projector.name()
    }
}

#[async_trait]
impl Projector for Arc<dyn Projector> {
    fn name(&self) -> &'static str {
        self.as_ref().name()
    }
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.as_ref().apply(conn, event).await
    }
}

/// Every read model harden serves, in the order they are started.
pub fn catalog() -> Vec<Projection> {
    vec![
        Projection { projector: Arc::new(DirectoryProjector), tables: &["directory_orgs", "directory_users"] },
        Projection { projector: Arc::new(KvProjector), tables: &["kv_records", "kv_versions"] },
        Projection { projector: Arc::new(FilesProjector), tables: &["files"] },
        Projection { projector: Arc::new(SharesProjector), tables: &["kv_shares", "file_shares"] },
        Projection { projector: Arc::new(RecoveryProjector), tables: &["recovery_trustees"] },
        Projection {
            projector: Arc::new(CloudProjector),
            tables: &["cloud_orgs", "cloud_members", "cloud_invites", "cloud_api_keys"],
        },
        Projection { projector: Arc::new(AuditProjector), tables: &["audit_entries"] },
    ]
}

#[derive(Debug)]
pub struct Replayed {
    pub projection: &'static str,
    pub events: u64,
    pub rows: Vec<(&'static str, i64)>,
}

const BATCH: i64 = 1000;

pub async fn replay(pool: &PgPool, projection: &Projection) -> anyhow::Result<Replayed> {
    let name = projection.name();
    let shadow = format!("replay_{}", name.replace('-', "_"));
    register_checkpoint(pool, name).await?;
    let mut conn = pool.acquire().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE")).execute(&mut *conn).await?;
    sqlx::query(&format!("CREATE SCHEMA {shadow}")).execute(&mut *conn).await?;
    for table in projection.tables {
        sqlx::query(&format!("CREATE TABLE {shadow}.{table} (LIKE public.{table} INCLUDING ALL)"))
            .execute(&mut *conn)
            .await?;
    }
    drop(conn);

    // Rebuild while the live tables keep serving.
    let mut position = Position::default();
    let mut events = 0u64;
    loop {
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("SET LOCAL search_path = {shadow}, public")).execute(&mut *tx).await?;
        let n = apply_batch(&mut tx, projection, &mut position).await?;
        tx.commit().await?;
        events += n as u64;
        if (n as i64) < BATCH {
            break;
        }
    }

    // Swap, with the live follower paused on its checkpoint row.
    let mut tx = pool.begin().await?;
    lock_follower(&mut tx, name).await?;
    sqlx::query(&format!("SET LOCAL search_path = {shadow}, public")).execute(&mut *tx).await?;
    loop {
        let n = apply_batch(&mut tx, projection, &mut position).await?;
        events += n as u64;
        if (n as i64) < BATCH {
            break;
        }
    }
    sqlx::query("SET LOCAL search_path = public").execute(&mut *tx).await?;
    let mut rows = Vec::new();
    for table in projection.tables {
        sqlx::query(&format!("DELETE FROM public.{table}")).execute(&mut *tx).await?;
        let copied = sqlx::query(&format!("INSERT INTO public.{table} SELECT * FROM {shadow}.{table}"))
            .execute(&mut *tx)
            .await?;
        rows.push((*table, copied.rows_affected() as i64));
    }
    save_checkpoint(&mut tx, name, position).await?;
    sqlx::query(&format!("DROP SCHEMA {shadow} CASCADE")).execute(&mut *tx).await?;
    tx.commit().await.with_context(|| format!("Failed to swap the rebuilt {name} projection in"))?;
    Ok(Replayed { projection: name, events, rows })
}

async fn apply_batch(
    conn: &mut PgConnection,
    projection: &Projection,
    position: &mut Position,
) -> anyhow::Result<usize> {
    let events = read_batch(conn, *position, BATCH).await?;
    for event in &events {
        projection.projector.apply(conn, event).await?;
        *position = event.position;
    }
    Ok(events.len())
}
