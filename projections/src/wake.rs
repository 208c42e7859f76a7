//! One LISTEN connection per process. Every `pg_notify` on the wake channel (sent by any instance
//! after a commit) bumps a counter that all followers watch; a watch never loses a bump the way a
//! bare notification to a busy task would. The same connection hears revocations on the
//! credentials channel and drops the process's cached principals.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

use harden_commands::bus::WAKE_CHANNEL;
use harden_commands::credentials::{AuthCache, CREDENTIALS_CHANNEL};

pub fn spawn(pool: PgPool) -> watch::Receiver<u64> {
    spawn_with(pool, None)
}

/// [`spawn`], also dropping `credentials`' entries on every revocation any instance announces.
pub fn spawn_with(pool: PgPool, credentials: Option<Arc<AuthCache>>) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            match listen(&pool, &tx, credentials.as_deref()).await {
                Ok(()) => return, // every follower is gone
                Err(e) => {
                    tracing::warn!(error = %e, "event wake-up listener lost its connection; followers poll until it is back");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    rx
}

async fn listen(pool: &PgPool, tx: &watch::Sender<u64>, credentials: Option<&AuthCache>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([WAKE_CHANNEL, CREDENTIALS_CHANNEL]).await?;
    // Anything committed while we were not listening is picked up by this bump, and any revocation
    // missed by this clear (the lease bounds the entries anyway).
    tx.send_modify(|n| *n += 1);
    if let Some(cache) = credentials {
        cache.clear();
    }
    loop {
        let notification = listener.recv().await?;
        if notification.channel() == CREDENTIALS_CHANNEL {
            if let Some(cache) = credentials {
                cache.clear();
            }
            continue;
        }
        tx.send_modify(|n| *n += 1);
        if tx.is_closed() {
            return Ok(());
        }
    }
}

/// Waits for the next wake-up, or `poll` at the longest (the fallback for a lost notification).
pub async fn wait(wake: &mut watch::Receiver<u64>, poll: Duration) {
    tokio::select! {
        changed = wake.changed() => {
            if changed.is_err() {
                tokio::time::sleep(poll).await;
            }
        }
        _ = tokio::time::sleep(poll) => {}
    }
}
