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
use harden_projections::cloud::IdentityProfile;

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

/// What one delivery asks of harden.
#[derive(Debug, PartialEq)]
pub enum ClerkChange {
    /// `user.created` or `user.updated`: the identity cache's row for this user.
    Upsert(IdentityId, IdentityProfile),
    /// `user.deleted`: forget the profile and end the user's memberships.
    Delete(IdentityId),
    /// Any other type: acknowledged and ignored.
    Ignore,
}

/// A parsed delivery: its `type` (recorded with the delivery id) and what it asks.
#[derive(Debug, PartialEq)]
pub struct ClerkDelivery {
    pub kind: String,
    pub change: ClerkChange,
}

/// Reads a delivery's body (already authenticated by its signature). Anything malformed is a 400;
/// this touches nothing, so it can be fuzzed on its own (`fuzz/`).
pub fn parse_delivery(body: &[u8]) -> Result<ClerkDelivery, ApiError> {
    let delivery: Delivery = serde_json::from_slice(body).map_err(|e| bad_payload(&e.to_string()))?;
    let change = match delivery.kind.as_str() {
        "user.created" | "user.updated" => {
            let user: ClerkUser = serde_json::from_value(delivery.data).map_err(|e| bad_payload(&e.to_string()))?;
            let identity = IdentityId::parse(&user.id).map_err(|e| bad_payload(&e.0))?;
            let (email, verified) = user.primary_email();
            let profile = IdentityProfile {
                email,
                email_verified: verified,
                first_name: user.first_name,
                last_name: user.last_name,
                image_url: user.image_url,
            };
            ClerkChange::Upsert(identity, profile)
        }
        "user.deleted" => {
            let id =
                delivery.data.get("id").and_then(|v| v.as_str()).ok_or_else(|| bad_payload("data.id is missing"))?;
            ClerkChange::Delete(IdentityId::parse(id).map_err(|e| bad_payload(&e.0))?)
        }
        _ => ClerkChange::Ignore,
    };
    Ok(ClerkDelivery { kind: delivery.kind, change })
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
    let delivery = parse_delivery(&body)?;
    match &delivery.change {
        ClerkChange::Upsert(identity, profile) => state.cloud.upsert_identity(identity.as_str(), profile).await?,
        ClerkChange::Delete(identity) => {
            state.cloud.forget_identity(identity.as_str()).await?;
            let orgs = state.cloud.memberships_of(identity.as_str()).await?;
            let request_id = Some(format!("svix:{}", message.id));
            let last = state.harden.end_memberships(identity, &orgs, request_id).await?;
            state.read_models.wait_for(last).await;
        }
        ClerkChange::Ignore => {}
    }
    state.cloud.mark_applied(&message.id, &delivery.kind).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: serde_json::Value) -> Result<ClerkDelivery, ApiError> {
        parse_delivery(body.to_string().as_bytes())
    }

    #[test]
    fn user_created_takes_the_primary_email_lower_cased_and_its_verification() {
        let body = json!({ "type": "user.created", "data": {
            "id": "user_2abc", "first_name": "Ada", "primary_email_address_id": "idn_2",
            "email_addresses": [
                { "id": "idn_1", "email_address": "old@example.test" },
                { "id": "idn_2", "email_address": " Ada@Example.TEST ", "verification": { "status": "verified" } }
            ] } });

        let delivery = parse(body).unwrap();

        let ClerkChange::Upsert(identity, profile) = delivery.change else { panic!("{delivery:?}") };
        assert_eq!((delivery.kind.as_str(), identity.as_str()), ("user.created", "user_2abc"));
        assert_eq!(profile.email.as_deref(), Some("ada@example.test"));
        assert!(profile.email_verified);
        assert_eq!(profile.first_name.as_deref(), Some("Ada"));
    }

    #[test]
    fn malformed_deliveries_are_400_and_other_types_are_ignored() {
        let cases = [
            ("not JSON", json!("nope")),
            ("no type", json!({ "data": {} })),
            ("deleted without an id", json!({ "type": "user.deleted", "data": {} })),
            ("id not of the user_ form", json!({ "type": "user.updated", "data": { "id": "org_1" } })),
        ];
        for (case, body) in cases {
            assert!(matches!(parse(body), Err(ApiError::Status(StatusCode::BAD_REQUEST, _))), "{case}");
        }
        let other = parse(json!({ "type": "session.created", "data": { "id": 7 } })).unwrap();
        assert_eq!(other, ClerkDelivery { kind: "session.created".into(), change: ClerkChange::Ignore });
    }
}
