//! The Cloud API (dashboard surface): identity-provider sign-in ([`jwt`], [`auth`]), the routes on
//! orgs, members, invites and API keys ([`routes`]), and the provider's webhooks ([`webhooks`],
//! verified by [`svix`]). It is served by the Backend listener.

pub mod auth;
pub mod jwt;
pub mod routes;
pub mod svix;
pub mod webhooks;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::Modify;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Declares the `Authorization: Bearer <session token>` scheme the Cloud routes refer to as `bearer`.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

pub fn openapi_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::onboarding))
        .routes(routes!(routes::list_organizations))
        .routes(routes!(routes::get_organization, routes::update_organization, routes::delete_organization))
        .routes(routes!(routes::list_members))
        .routes(routes!(routes::update_member, routes::remove_member))
        .routes(routes!(routes::create_invite, routes::list_invites))
        .routes(routes!(routes::revoke_invite))
        .routes(routes!(routes::accept_invite))
        .routes(routes!(routes::create_api_key, routes::list_api_keys))
        .routes(routes!(routes::revoke_api_key))
        .routes(routes!(webhooks::clerk_webhook))
}
