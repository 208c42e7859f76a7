//! # harden domain
//!
//! The pure heart of harden: aggregates, their commands, events and errors, and the validated value
//! types they are built from, and the envelope crypto. Nothing in this crate does IO, knows HTTP or
//! SQL, reads a clock or draws randomness: outside data (ids, key hashes, the time) is looked up before a command is built and
//! travels inside it.
//!
//! # Layout
//! - [`ids`] — typed ids (`OrgId`, `UserId`, `ApiKeyId`) and the fixed id of the global admin.
//! - [`values`] — validated newtypes (`OrgName`, `UserName`, `KeyBlob`, `PublicKeys`, ...).
//! - [`plan`] — the plan catalog, limits and prices.
//! - [`role`] — who a user is allowed to be.
//! - [`org`] — the Org aggregate; [`cloud`] — what the Cloud API adds to it (members, roles, invites).
//! - [`user`] — the User aggregate (profile, role, API keys, key material).
//! - [`secret`] — the Secret aggregate: one encrypted KV record.
//! - [`file`] — the File aggregate: one encrypted file (its content is ciphertext in the org's bucket).
//! - [`storage`] — an org's S3 storage settings and their validation.
//! - [`share`] — the Share aggregate: a recipient's read access to one KV record.
//! - [`recovery`] — the Recovery aggregate: trustees' recovery shares and a pending restore;
//!   [`recovery_crypto`] its envelope formats.
//! - [`registration`] — a self-service sign-up, from request to org; [`email_claim`] — who holds an
//!   email address (one org admin per address) and its password hash.
//! - [`crypto`] — the envelope crypto (values, the X-Wing hybrid wrap, sealed private keys), pure.
//! - [`envelope`] — the value ciphertext format the Backend relies on (its overhead).

pub mod audit_chain;
pub mod bundle;
pub mod cloud;
pub mod crypto;
pub mod email_claim;
pub mod envelope;
pub mod file;
pub mod ids;
pub mod org;
pub mod password;
pub mod plan;
pub mod recovery;
pub mod recovery_crypto;
pub mod registration;
pub mod role;
pub mod secret;
pub mod share;
pub mod storage;
pub mod user;
pub mod values;

pub use ids::{ApiKeyId, OrgId, UserId};
pub use plan::{Plan, PlanLimits};
pub use role::Role;
