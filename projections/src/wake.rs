//! One LISTEN connection per process. Every `pg_notify` on the wake channel (sent by any instance
//! after a commit) bumps a counter that all followers watch; a watch never loses a bump the way a
//! bare notification to a busy task would.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

use harden_commands::bus::WAKE_CHANNEL;

pub fn spawn(pool: PgPool) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            match listen(&pool, &tx).await {
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

async fn listen(pool: &PgPool, tx: &watch::Sender<u64>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(WAKE_CHANNEL).await?;
    // Anything committed while we were not listening is picked up by this bump.
    tx.send_modify(|n| *n += 1);
    loop {
        listener.recv().await?;
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
