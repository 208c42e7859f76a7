//! Who calls the Cloud API: an identity-provider session token (`Authorization: Bearer <jwt>`),
//! verified by [`JwtVerifier`]. Without Cloud settings every `/cloud/*` route answers 404, as the
//! spec says of a self-hosted server.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use harden_commands::cloud::CloudCaller;
use harden_domain::cloud::IdentityId;
use harden_domain::values::Email;

use crate::cloud::jwt::{JwtConfig, JwtVerifier};
use crate::cloud::svix::SvixSecret;
use crate::error::ApiError;
use crate::extract::REQUEST_ID_HEADER;
use crate::state::AppState;

pub const BEARER_REQUIRED: &str = "Authorization: Bearer <token> header required";
pub const INVALID_SESSION: &str = "invalid or expired session token";
pub const NOT_ENABLED: &str = "not found";

/// The Cloud API's configuration, when it is enabled.
pub struct CloudAuth {
    pub jwt: JwtVerifier,
    /// `CLERK_WEBHOOK_SECRET`; `/webhooks/clerk` answers 404 without it.
    pub webhook_secret: Option<SvixSecret>,
}

impl CloudAuth {
    /// `webhook_secret` is the Svix signing secret (`whsec_…`), if webhooks are to be received.
    pub fn new(config: JwtConfig, webhook_secret: Option<&str>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        let jwt = JwtVerifier::new(config, http)?;
        let webhook_secret =
            webhook_secret.map(SvixSecret::parse).transpose().map_err(|e| format!("webhook secret: {e}"))?;
        Ok(Self { jwt, webhook_secret })
    }
}

/// The caller, with its verified email from the identity cache (what the provider's webhooks
/// said) when its token carried none.
pub async fn with_cached_email(state: &AppState, mut caller: CloudCaller) -> Result<CloudCaller, ApiError> {
    if caller.verified_email.is_none() {
        caller.verified_email = state
            .cloud
            .identity(caller.identity.as_str())
            .await?
            .filter(|p| p.email_verified)
            .and_then(|p| p.email)
            .and_then(|e| Email::parse(&e).ok());
    }
    Ok(caller)
}

/// The authenticated Cloud API caller.
pub struct Cloud(pub CloudCaller);

impl FromRequestParts<AppState> for Cloud {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = state.cloud_auth.as_ref().ok_or_else(|| ApiError::status(StatusCode::NOT_FOUND, NOT_ENABLED))?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized(BEARER_REQUIRED))?;
        let claims = auth.jwt.verify(token).await.map_err(|e| {
            tracing::debug!(error = %e, "session token refused");
            ApiError::unauthorized(INVALID_SESSION)
        })?;
        // A provider whose subjects are not `user_…` ids cannot name members in the spec's paths.
        let identity = IdentityId::parse(&claims.subject).map_err(|_| ApiError::unauthorized(INVALID_SESSION))?;
        // The verified email the token carries, if any; accepting an invite falls back to the
        // identity cache (`with_cached_email`), the only route that needs it.
        let verified_email = claims.email.filter(|_| claims.email_verified).and_then(|e| Email::parse(&e).ok());
        let request_id = parts.headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Cloud(CloudCaller { identity, verified_email, request_id }))
    }
}
