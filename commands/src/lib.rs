//! # harden command side
//!
//! Wires the domain aggregates to the event store (cqrs-es over postgres-es, plain event store) and
//! runs every command harden accepts. It decides who may do what, draws the randomness and ids the
//! aggregates must not draw themselves, and never renders HTTP.
//!
//! # Layout
//! - [`db`] — connecting, creating the database if missing, migrations.
//! - [`bus`] — executing a command on an aggregate with request metadata, bounded retry on
//!   concurrency conflicts, and the post-commit wake-up of followers.
//! - [`ids`] — aggregate ids derived from names, as keyed HMACs.
//! - [`keys`] — drawing and hashing API keys.
//! - [`credentials`] — resolving a presented API key to a principal (the trigger-maintained index).
//! - [`bootstrap`] — the server's master key and the global admin.
//! - [`access`] — the tenant and role rules every route applies.
//! - [`service`] — the operations the API calls (create an org, create a user, rotate a key, ...).
//! - [`onboarding`] — self-service registration, verification (with [`billing`], Stripe, and
//!   [`mail`], SMTP) and org-admin sign-in, with [`passwords`] and the sign-in [`throttle`].
//! - [`files`] — encrypted files: the object in the org's bucket (with [`object_store`]) and its
//!   record, and the reaper that removes deleted files' objects.
//! - [`cloud`] — the Cloud API's operations (onboarding, members and roles, invites, org API keys),
//!   decided at the time of a [`clock`].
//! - [`error`] — what a command can answer besides success.

pub mod access;
pub mod billing;
pub mod bootstrap;
pub mod bus;
pub mod clock;
pub mod cloud;
pub mod credentials;
pub mod db;
pub mod error;
pub mod files;
pub mod ids;
pub mod keys;
pub mod mail;
pub mod object_store;
pub mod onboarding;
pub mod passwords;
pub mod recovery;
pub mod service;
pub mod sharing;
pub mod storage;
pub mod throttle;

pub use bus::{Committed, Meta, Position};
pub use credentials::{Presented, Principal};
pub use error::Error;
pub use service::Harden;

/// One rustls crypto provider for the process (ring). The Stripe client and lettre build TLS
/// configurations from the process default; with two providers compiled in and none chosen, the
/// first TLS connection would panic.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
