//! # harden read side
//!
//! Read models as SQL tables, the followers that feed them from the event store, and the queries
//! the API's GET routes run. Nothing here writes an event.
//!
//! # Layout
//! - [`follower`] — the generic follower every projection (and the NATS relay) runs on: checkpoint
//!   row, xmin-safe batch read, LISTEN wake-up with a poll fallback.
//! - [`wake`] — the one LISTEN connection per process that wakes all followers.
//! - [`read_models`] — the positions the followers have reached, and the bounded read-your-writes
//!   wait a request does after a write.
//! - [`cloud`] — the Cloud API's orgs, members, invites and API keys, and the identity cache.
//! - [`directory`] — the org directory (orgs, users, public profiles) projection and its queries.
//! - [`kv`] — the KV listing and version history.
//! - [`files`] — each user's files, and deleted files whose objects are still to be removed.
//! - [`shares`] — shares of KV records and files: inboxes and outgoing shares.
//! - [`audit`] — the hash-chained audit view, its verification and export.
//! - [`replay`] — the catalog of projections, and rebuilding them from zero behind a live server.

pub mod audit;
pub mod cloud;
pub mod directory;
pub mod files;
pub mod follower;
pub mod kv;
pub mod read_models;
pub mod recovery;
pub mod replay;
pub mod shares;
pub mod wake;

pub use follower::{Follower, FollowerConfig, Projector, StoredEvent};
pub use read_models::ReadModels;
