//! Read-your-writes. After a write, a request waits, for a bounded time, until every read model has
//! passed the position of its event; a client that writes and then reads sees its write. If the
//! bound passes, the write still succeeded: the response says the read models are catching up
//! (header [`CATCHING_UP_HEADER`]) instead of failing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use harden_commands::Position;

pub const CATCHING_UP_HEADER: &str = "x-harden-read-models";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Every read model has applied the write.
    Current,
    /// The bound passed first; reads may not show the write yet.
    CatchingUp,
}

#[derive(Clone)]
pub struct ReadModels {
    followers: Arc<Vec<(&'static str, watch::Receiver<Position>)>>,
    bound: Duration,
}

impl ReadModels {
    pub fn new(followers: Vec<(&'static str, watch::Receiver<Position>)>, bound: Duration) -> Self {
        Self { followers: Arc::new(followers), bound }
    }

    /// The followers requests wait on, by name.
    pub fn names(&self) -> Vec<&'static str> {
        self.followers.iter().map(|(name, _)| *name).collect()
    }

    pub async fn wait_for(&self, position: Option<Position>) -> Freshness {
        let Some(target) = position else {
            return Freshness::Current;
        };
        let all = async {
            for (_, rx) in self.followers.iter() {
                let mut rx = rx.clone();
                if rx.wait_for(|p| *p >= target).await.is_err() {
                    return Freshness::CatchingUp;
                }
            }
            Freshness::Current
        };
        match tokio::time::timeout(self.bound, all).await {
            Ok(freshness) => freshness,
            Err(_) => {
                let lagging: Vec<_> =
                    self.followers.iter().filter(|(_, rx)| *rx.borrow() < target).map(|(n, _)| *n).collect();
                tracing::warn!(?lagging, "read models still catching up after the read-your-writes bound");
                Freshness::CatchingUp
            }
        }
    }
}
