//! The Backend API: anonymous account-lifecycle routes, admin routes and user routes. It stores
//! only ciphertext and wrapped keys; it never receives a user secret or a plaintext value.

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cloud::BearerAuth;
use crate::layers;
use crate::state::AppState;

pub mod audit;
pub mod auth;
pub mod files;
pub mod health;
pub mod in_process;
pub mod kv;
pub mod me;
pub mod orgs;
pub mod plans;
pub mod recovery;
pub mod shares;
pub mod storage;
pub mod users;

#[derive(OpenApi)]
#[openapi(
    info(title = "harden Backend API", description = "Orgs, plans, users and API keys, encrypted records. Stores only ciphertext and wrapped keys."),
    modifiers(&BearerAuth),
    tags(
        (name = "health"), (name = "auth", description = "Anonymous account lifecycle"),
        (name = "admin", description = "Global admin and org admin routes"), (name = "users", description = "The caller and their org"),
        (name = "kv", description = "Encrypted KV records (ciphertext only)"),
        (name = "files", description = "Encrypted files (ciphertext in the org's bucket)"),
        (name = "recovery", description = "Trusted-user recovery (ciphertext only)"),
        (name = "shares", description = "Shares of KV records (wrapped keys and encrypted aliases only)"), (name = "audit", description = "The org's hash-chained audit history"),
        (name = "cloud", description = "The Cloud (dashboard) API: identity-provider sign-in, org members and roles, invites, org API keys; 404 unless configured")
    )
)]
struct BackendDoc;

pub fn openapi_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(BackendDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(plans::list_plans))
        .routes(routes!(auth::register))
        .routes(routes!(auth::verify))
        .routes(routes!(auth::login))
        .routes(routes!(auth::stripe_webhook))
        .routes(routes!(orgs::create_org, orgs::list_orgs))
        .routes(routes!(orgs::change_plan))
        .routes(routes!(orgs::usage))
        .routes(routes!(storage::get_storage, storage::put_storage))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::deactivate_user))
        .routes(routes!(users::rotate_key))
        .routes(routes!(me::me))
        .routes(routes!(me::store_keys))
        .routes(routes!(me::publish_bundle))
        .routes(routes!(me::store_pins))
        .routes(routes!(me::org_directory))
        .routes(routes!(me::org_profile))
        .routes(routes!(recovery::list_trustees))
        .routes(routes!(recovery::set_trustee, recovery::get_trustee, recovery::remove_trustee))
        .routes(routes!(recovery::list_owners))
        .routes(routes!(recovery::owner_share))
        .routes(routes!(recovery::restore))
        .routes(routes!(recovery::pending))
        .routes(routes!(recovery::complete))
        .routes(routes!(kv::list_kv))
        .routes(routes!(kv::put_kv, kv::get_kv, kv::delete_kv))
        .routes(routes!(kv::kv_versions))
        .routes(routes!(shares::create_share, shares::list_shares))
        .routes(routes!(shares::revoke_share))
        .routes(routes!(shares::rotate))
        .routes(routes!(shares::inbox))
        .routes(routes!(shares::read_shared, shares::remove_shared))
        .routes(routes!(files::upload_file, files::list_files))
        .routes(routes!(files::get_file, files::delete_file))
        .routes(routes!(files::create_file_share, files::list_file_shares))
        .routes(routes!(files::revoke_file_share))
        .routes(routes!(files::file_inbox))
        .routes(routes!(files::read_shared_file, files::remove_shared_file))
        .routes(routes!(audit::audit))
        .merge(crate::cloud::openapi_router())
}

/// The Backend's router, with its OpenAPI document at `/openapi.json` and a browsable page at `/docs`.
pub fn router(state: AppState, edge: &layers::Edge) -> Router {
    let (router, mut doc) = openapi_router().split_for_parts();
    crate::extract::document_api_keys(&mut doc);
    crate::rate_limit::document(&mut doc);
    let anonymous = layers::with_documents(crate::rate_limit::anonymous_paths(&doc));
    layers::apply(layers::documented(router.with_state(state), doc), edge, anonymous)
}
