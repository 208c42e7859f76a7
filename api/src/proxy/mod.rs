//! The Proxy: the crypto edge under `/v1`. It takes the user secret per request, unlocks the
//! user's X25519 + ML-KEM-768 private keys, encrypts and decrypts values, and passes every Backend
//! route (`/admin/*`, `/auth/*`, `/users/*`, `/kv*`, `/files*`, `/audit`, `/cloud/*`) through to the
//! Backend unchanged, so it can be the single public edge. It is an HTTP
//! client of the Backend like any other: the Backend never receives the user secret, a private key,
//! a data key or a plaintext.

use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::backend::health;
use crate::error::ApiError;
use crate::layers;

pub mod files;
pub mod forward;
pub mod keys;
pub mod kv;
pub mod recovery;
pub mod shares;

// The crypto flows and the Backend client live in the client library, which the command-line
// client shares; the handlers here parse, call and render.
pub use harden_client::backend as client;
pub use harden_client::{pins, random, unlock};
pub use harden_client::{ApiCredential, Backend, Unlocker, Vault};

pub const USER_SECRET_HEADER: &str = "x-user-secret";
pub const NEW_USER_SECRET_HEADER: &str = "x-new-user-secret";
/// The temporary secret a trustee seals restored keys under, and the owner completes recovery with.
pub const RECOVERY_SECRET_HEADER: &str = "x-recovery-secret";

#[derive(Clone)]
pub struct ProxyState {
    pub vault: Vault,
    pub min_secret_chars: usize,
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
    /// How long a dashboard session lasts.
    pub ui_session_ttl: std::time::Duration,
    /// The Cloud API is configured: the dashboard offers the identity-provider sign-in.
    pub ui_cloud: bool,
}

impl ProxyState {
    /// The caller's API key, forwarded to the Backend (which checks it).
    pub fn api_key(headers: &HeaderMap) -> Result<ApiCredential<'_>, ApiError> {
        Ok(ApiCredential::from_headers(headers)?)
    }

    /// A user secret header; required, and (for new secrets) at least the configured length.
    pub fn secret<'h>(
        &self,
        headers: &'h HeaderMap,
        name: &str,
        display: &str,
        check_length: bool,
    ) -> Result<&'h str, ApiError> {
        let secret = headers
            .get(name)
            .ok_or_else(|| ApiError::status(StatusCode::BAD_REQUEST, format!("missing {display} header")))?
            .to_str()
            .map_err(|_| ApiError::status(StatusCode::BAD_REQUEST, format!("{display} must be visible ASCII")))?;
        if check_length && secret.chars().count() < self.min_secret_chars {
            return Err(ApiError::status(
                StatusCode::BAD_REQUEST,
                format!("{display} must be at least {} characters", self.min_secret_chars),
            ));
        }
        Ok(secret)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "harden Proxy API", description = "The crypto edge: encrypts and decrypts with the user's keys. Every Backend route (/admin/*, /auth/*, /users/*, /kv*, /files*, /audit, /cloud/*, the webhooks) is passed through to the Backend unchanged at its own path."),
    modifiers(&ProxyAuth),
    tags((name = "health"), (name = "keys", description = "The user's key pairs"), (name = "kv", description = "Encrypted KV values"), (name = "files", description = "Encrypted files"), (name = "shares", description = "Sharing values with users of the org"), (name = "recovery", description = "Trusted-user recovery"), (name = "users", description = "The caller's org"))
)]
struct ProxyDoc;

struct ProxyAuth;

impl Modify for ProxyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "userSecret",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-User-Secret"))),
        );
    }
}

pub fn openapi_router() -> OpenApiRouter<ProxyState> {
    OpenApiRouter::with_openapi(ProxyDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(forward::ready))
        .routes(routes!(keys::generate))
        .routes(routes!(keys::rekey))
        .routes(routes!(kv::list_kv))
        .routes(routes!(kv::put_kv, kv::get_kv, kv::delete_kv))
        .routes(routes!(files::upload_file, files::list_files))
        .routes(routes!(files::get_file, files::delete_file))
        .routes(routes!(files::create_share, files::list_shares))
        .routes(routes!(files::revoke_share))
        .routes(routes!(files::inbox))
        .routes(routes!(files::read_shared, files::remove_shared))
        .routes(routes!(recovery::set_trustee))
        .routes(routes!(recovery::restore))
        .routes(routes!(recovery::complete))
        .routes(routes!(shares::create_share, shares::list_shares))
        .routes(routes!(shares::revoke_share))
        .routes(routes!(shares::inbox))
        .routes(routes!(shares::read_shared, shares::remove_shared))
        .routes(routes!(forward::org_directory))
        .routes(routes!(forward::org_profile))
}

pub fn router(state: ProxyState, edge: &layers::Edge) -> Router {
    let (router, mut doc) = openapi_router().split_for_parts();
    crate::extract::document_api_keys(&mut doc);
    crate::rate_limit::document(&mut doc);
    let mut anonymous = layers::with_documents(crate::rate_limit::anonymous_paths(&doc));
    // Passed through to the Backend, which limits them again per client address.
    anonymous.extend(PASSED_THROUGH_ANONYMOUS.iter().map(|p| (*p).to_owned()));
    anonymous.extend(crate::ui::ANONYMOUS.iter().map(|p| (*p).to_owned()));
    let ui = crate::ui::router(state.vault.clone(), state.ui_session_ttl, state.ui_cloud);
    // Every Backend route at its own path, so the Proxy can be the only public edge: the admin and
    // account routes, the caller's own routes (`/users/me`, recovery, the org directory), the
    // Backend's ciphertext routes for clients doing their own crypto, the audit, and the Cloud API
    // (whose callers sign in with the identity provider's tokens). The Backend checks every
    // credential; `/v1/*` keeps its meaning.
    let router = PASSED_THROUGH.iter().fold(router, |router, (root, subtree)| {
        let router = if *root { router.route(&format!("/{subtree}"), any(forward::pass_through)) } else { router };
        router.route(&format!("/{subtree}/{{*rest}}"), any(forward::pass_through))
    });
    let router = router
        // Stripe's and the identity provider's webhooks, so the Proxy can be the only public host
        // (the Backend checks their signatures).
        .route("/webhooks/stripe", axum::routing::post(forward::pass_through))
        .route("/webhooks/clerk", axum::routing::post(forward::pass_through));
    layers::apply(layers::documented(router.with_state(state), doc).merge(ui), edge, anonymous)
}

/// The Backend's subtrees passed through, each with whether its root is a route too.
const PASSED_THROUGH: [(bool, &str); 7] = [
    (false, "admin"),
    (false, "auth"),
    (false, "users"),
    (true, "kv"),
    (true, "files"),
    (true, "audit"),
    (false, "cloud"),
];

/// The pass-through routes that take no credentials.
const PASSED_THROUGH_ANONYMOUS: [&str; 3] = ["/auth/{*rest}", "/webhooks/stripe", "/webhooks/clerk"];
