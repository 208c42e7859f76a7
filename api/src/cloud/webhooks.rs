//! `POST /webhooks/clerk`: the identity provider's user lifecycle, delivered by Svix.
//!
//! A delivery is verified (signature over id, timestamp and body; at most five minutes old), then
//! applied, then recorded as applied. A delivery already recorded is acknowledged and ignored; one
//! that failed half-way is not recorded, so Svix's retry applies it again, and every step is
//! idempotent (an upsert, memberships that end once).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use harden_domain::cloud::IdentityId;

use crate::cloud::svix;
use crate::error::{ApiError, ErrorBody};
use crate::extract::AppBytes;
use crate::state::AppState;

pub const INVALID_SIGNATURE: &str = "invalid webhook signature";

#[derive(Deserialize)]
struct Delivery {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// Clerk's user object, the parts harden keeps.
#[derive(Deserialize)]
struct ClerkUser {
    id: String,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    image_url: Option<String>,
    #[serde(default)]
    primary_email_address_id: Option<String>,
    #[serde(default)]
    email_addresses: Vec<ClerkEmail>,
}

#[derive(Deserialize)]
struct ClerkEmail {
    id: String,
    email_address: String,
    #[serde(default)]
    verification: Option<ClerkVerification>,
}

#[derive(Deserialize)]
struct ClerkVerification {
    #[serde(default)]
    status: Option<String>,
}

impl ClerkUser {
    /// The primary email address, and whether the provider verified it.
    fn primary_email(&self) -> (Option<String>, bool) {
        let primary = self
            .email_addresses
            .iter()
            .find(|e| Some(&e.id) == self.primary_email_address_id.as_ref())
            .or_else(|| self.email_addresses.first());
        match primary {
            None => (None, false),
            Some(e) => {
                let verified = e.verification.as_ref().and_then(|v| v.status.as_deref()) == Some("verified");
                (Some(e.email_address.trim().to_lowercase()), verified)
            }
        }
    }
}

fn bad_payload(what: &str) -> ApiError {
    ApiError::status(StatusCode::BAD_REQUEST, format!("invalid webhook payload: {what}"))
}

/// Receives a Clerk user event (`user.created`, `user.updated`, `user.deleted`; others are
/// acknowledged and ignored). Authenticated by its Svix signature, not by a token.
#[utoipa::path(post, path = "/webhooks/clerk", tag = "cloud", request_body(content = String, content_type = "application/json"),
    params(("svix-id" = String, Header), ("svix-timestamp" = String, Header), ("svix-signature" = String, Header)),
    responses((status = 204, description = "Applied, ignored, or already applied"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub async fn clerk_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppBytes(body): AppBytes,
) -> Result<StatusCode, ApiError> {
    let secret = state
        .cloud_auth
        .as_ref()
        .and_then(|auth| auth.webhook_secret.as_ref())
        .ok_or_else(|| ApiError::status(StatusCode::NOT_FOUND, "not found"))?;
    let message = svix::verify(secret, &headers, &body, chrono::Utc::now().timestamp()).map_err(|e| {
        tracing::debug!(error = %e, "webhook refused");
        ApiError::unauthorized(INVALID_SIGNATURE)
    })?;
    if state.cloud.delivery_applied(&message.id).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    let delivery: Delivery = serde_json::from_slice(&body).map_err(|e| bad_payload(&e.to_string()))?;
    match delivery.kind.as_str() {
        "user.created" | "user.updated" => {
            let user: ClerkUser = serde_json::from_value(delivery.data).map_err(|e| bad_payload(&e.to_string()))?;
            let identity = IdentityId::parse(&user.id).map_err(|e| bad_payload(&e.0))?;
            let (email, verified) = user.primary_email();
            let profile = harden_projections::cloud::IdentityProfile {
                email,
                email_verified: verified,
                first_name: user.first_name,
                last_name: user.last_name,
                image_url: user.image_url,
            };
            state.cloud.upsert_identity(identity.as_str(), &profile).await?;
        }
        "user.deleted" => {
            let id =
                delivery.data.get("id").and_then(|v| v.as_str()).ok_or_else(|| bad_payload("data.id is missing"))?;
            let identity = IdentityId::parse(id).map_err(|e| bad_payload(&e.0))?;
            state.cloud.forget_identity(identity.as_str()).await?;
            let orgs = state.cloud.memberships_of(identity.as_str()).await?;
            let request_id = Some(format!("svix:{}", message.id));
            let last = state.harden.end_memberships(&identity, &orgs, request_id).await?;
            state.read_models.wait_for(last).await;
        }
        _ => {}
    }
    state.cloud.mark_applied(&message.id, &delivery.kind).await?;
    Ok(StatusCode::NO_CONTENT)
}
