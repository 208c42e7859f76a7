//! What every handler can reach.

use std::sync::Arc;

use harden_commands::clock::Clock;
use harden_commands::credentials::KeyUsage;
use harden_commands::onboarding::Onboarding;
use harden_commands::Harden;
use harden_projections::audit::Audit;
use harden_projections::cloud::Cloud;
use harden_projections::directory::Directory;
use harden_projections::files::Files;
use harden_projections::kv::Kv;
use harden_projections::recovery::RecoveryShares;
use harden_projections::shares::Shares;
use harden_projections::ReadModels;

use crate::cloud::auth::CloudAuth;
use crate::extract::TrustedProxies;

#[derive(Clone)]
pub struct AppState {
    pub harden: Arc<Harden>,
    pub directory: Directory,
    pub kv: Kv,
    pub files: Files,
    pub shares: Shares,
    pub recovery: RecoveryShares,
    pub audit: Audit,
    pub read_models: ReadModels,
    pub onboarding: Arc<Onboarding>,
    pub trusted_proxies: Arc<TrustedProxies>,
    /// Which storage addresses an org may point harden at.
    pub storage_policy: harden_commands::storage::NetworkPolicy,
    pub cloud: Cloud,
    /// None: the Cloud API is not configured and `/cloud/*` answers 404.
    pub cloud_auth: Option<Arc<CloudAuth>>,
    pub clock: Clock,
    /// API key uses, batched into `api_key_usage`.
    pub key_usage: KeyUsage,
    /// A read-model follower behind by more than this makes `/ready` answer 503.
    pub follower_stall: std::time::Duration,
}
