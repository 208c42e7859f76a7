//! Request and response bodies. Field names are camelCase, as the spec writes them; request bodies
//! refuse unknown fields, so a misspelt field is a 400 rather than silently ignored.

use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponseParts, ResponseParts};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use harden_domain::plan::ENTERPRISE_CONTACT;
use harden_domain::Plan;
use harden_projections::directory::{OrgRow, UserRow};
use harden_projections::read_models::{Freshness, CATCHING_UP_HEADER};

/// Marks a write's response when the read models had not caught up within the read-your-writes
/// bound: `X-Harden-Read-Models: catching-up`.
pub struct Consistency(pub Freshness);

impl IntoResponseParts for Consistency {
    type Error = std::convert::Infallible;
    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if self.0 == Freshness::CatchingUp {
            res.headers_mut()
                .insert(HeaderName::from_static(CATCHING_UP_HEADER), HeaderValue::from_static("catching-up"));
        }
        Ok(res)
    }
}

/// For PATCH bodies (with `#[serde(default, deserialize_with = "present")]`): a field left out is
/// `None` (keep the value), an explicit `null` is `Some(None)` (clear it).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanLimitsDto {
    pub max_records: u64,
    pub max_key_plus_value_bytes: u64,
    pub max_files: u64,
    pub max_file_size_bytes: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanPricingDto {
    pub annual_total_usd: u32,
    pub monthly_usd: f64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanDto {
    pub key: &'static str,
    pub name: &'static str,
    pub is_paid: bool,
    pub limits: PlanLimitsDto,
    pub pricing: PlanPricingDto,
}

impl From<Plan> for PlanDto {
    fn from(plan: Plan) -> Self {
        let limits = plan.limits();
        let pricing = plan.pricing();
        PlanDto {
            key: plan.key(),
            name: plan.name(),
            is_paid: plan.is_paid(),
            limits: PlanLimitsDto {
                max_records: limits.max_records,
                max_key_plus_value_bytes: limits.max_key_plus_value_bytes,
                max_files: limits.max_files,
                max_file_size_bytes: limits.max_file_size_bytes,
            },
            pricing: PlanPricingDto { annual_total_usd: pricing.annual_total_usd, monthly_usd: pricing.monthly_usd },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EnterpriseDto {
    pub key: &'static str,
    pub label: &'static str,
    pub contact: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct PlansResponse {
    pub plans: Vec<PlanDto>,
    pub enterprise: EnterpriseDto,
}

impl PlansResponse {
    pub fn catalog() -> Self {
        PlansResponse {
            plans: Plan::ALL.into_iter().map(PlanDto::from).collect(),
            enterprise: EnterpriseDto { key: "enterprise", label: "Enterprise", contact: ENTERPRISE_CONTACT },
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrgRequest {
    pub name: String,
    /// free (default), starter, smb or business.
    pub plan: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangePlanRequest {
    pub plan: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgResponse {
    pub id: Uuid,
    pub name: String,
    pub plan: String,
    pub created_utc: DateTime<Utc>,
}

impl From<OrgRow> for OrgResponse {
    fn from(row: OrgRow) -> Self {
        OrgResponse { id: row.org_id, name: row.name, plan: row.plan, created_utc: row.created_at }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRequest {
    pub name: String,
    #[serde(default)]
    pub is_admin: bool,
    pub public_key_ecc_b64: Option<String>,
    pub public_key_kyber_b64: Option<String>,
}

/// A user as org admins see it. `apiKeyHash` is always blank except in the response that creates
/// the user, where (as the spec documents) it carries the plaintext key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub name: String,
    /// global_admin, org_admin or member.
    pub role: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub api_key_hash: String,
    pub public_key_ecc_b64: Option<String>,
    pub public_key_kyber_b64: Option<String>,
    pub created_utc: DateTime<Utc>,
}

impl From<&UserRow> for UserRecord {
    fn from(row: &UserRow) -> Self {
        UserRecord {
            id: row.user_id,
            org_id: row.org_id,
            name: row.name.clone(),
            role: row.role.clone(),
            is_admin: row.role == "org_admin",
            is_active: row.active,
            api_key_hash: String::new(),
            public_key_ecc_b64: row.public_key_ecc.clone(),
            public_key_kyber_b64: row.public_key_kyber.clone(),
            created_utc: row.created_at,
        }
    }
}

/// The response that creates a user: the only time its API key is shown.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedUserResponse {
    #[serde(flatten)]
    pub user: UserRecord,
    pub api_key: String,
}

/// `GET /users/me`: the caller's record, with their sealed private keys (which only the Proxy,
/// holding the user secret, can open).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeResponse {
    #[serde(flatten)]
    pub user: UserRecord,
    pub encrypted_private_key_ecc_b64: Option<String>,
    pub encrypted_private_key_kyber_b64: Option<String>,
    /// A trustee restored this user's keys: complete recovery with `POST /v1/recovery/complete`
    /// (temporary secret, answer, new secret). The current secret keeps working until then.
    pub requires_rekey: bool,
    /// The caller's self-signed key bundle, once published.
    pub key_bundle_b64: Option<String>,
    /// The caller's pins (the bundles they encrypted to before), sealed under their keys.
    pub pins_b64: Option<String>,
}

impl From<&UserRow> for MeResponse {
    fn from(row: &UserRow) -> Self {
        MeResponse {
            user: row.into(),
            encrypted_private_key_ecc_b64: row.sealed_key_ecc.clone(),
            encrypted_private_key_kyber_b64: row.sealed_key_kyber.clone(),
            requires_rekey: false,
            key_bundle_b64: row.key_bundle.clone(),
            pins_b64: row.pins.clone(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishBundleRequest {
    /// The self-signed key bundle (format in the README's "Envelope crypto"), base64.
    pub key_bundle_b64: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorePinsRequest {
    /// The caller's pins sealed under their own keys, base64 (at most 64 KiB).
    pub pins_b64: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreKeysRequest {
    pub public_key_ecc_b64: String,
    pub public_key_kyber_b64: String,
    pub encrypted_private_key_ecc_b64: String,
    pub encrypted_private_key_kyber_b64: String,
    /// 32 bytes the Proxy derives from the new seal's key-encryption key; the Backend keeps only
    /// its hash, and asks for it back before it accepts a later re-seal. Optional (the spec's body
    /// has the four key fields only): keys stored without it can never be re-sealed through this
    /// route, by anyone (recovery still can).
    #[serde(default)]
    pub seal_proof_b64: Option<String>,
    /// The proof of the seal being replaced; required once the user has sealed keys.
    #[serde(default)]
    pub current_seal_proof_b64: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyResponse {
    pub api_key: String,
}

pub use harden_client::wire::PublicProfile;

/// What users of one org may see of each other, from the directory's row.
pub fn public_profile(row: &UserRow) -> PublicProfile {
    PublicProfile {
        id: row.user_id,
        org_id: row.org_id,
        name: row.name.clone(),
        is_admin: row.role == "org_admin",
        public_key_ecc_b64: row.public_key_ecc.clone(),
        public_key_kyber_b64: row.public_key_kyber.clone(),
        key_bundle_b64: row.key_bundle.clone(),
    }
}

/// Cuts one page from `rows`, fetched with `limit + 1`: the extra row only says a next page exists,
/// whose cursor is made from the page's last row.
pub fn page<T>(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(cursor_of);
        (rows, next)
    } else {
        (rows, None)
    }
}
