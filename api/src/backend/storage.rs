//! `/admin/orgs/{orgId}/storage`: the org's S3-compatible file storage. The secret key is stored
//! sealed under the server's master key and never returned; a save is checked against the bucket
//! first (on the resolved address, under the network policy).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use harden_commands::object_store;
use harden_commands::storage::StorageRequest;
use harden_domain::storage::StorageSettings;
use harden_domain::OrgId;

use crate::dto::Consistency;
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, Caller};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageRequestDto {
    /// Absolute http(s) URL of the S3-compatible service.
    pub service_url: String,
    pub bucket: String,
    pub access_key: String,
    /// Required the first time; kept when omitted later.
    pub secret_key: Option<String>,
    #[serde(default)]
    pub force_path_style: bool,
    /// Default `us-east-1`.
    pub region: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageResponse {
    pub service_url: String,
    pub bucket: String,
    pub access_key: String,
    /// The secret key itself is never returned.
    pub has_secret_key: bool,
    pub force_path_style: bool,
    pub region: String,
}

impl From<StorageSettings> for StorageResponse {
    fn from(s: StorageSettings) -> Self {
        StorageResponse {
            service_url: s.service_url,
            bucket: s.bucket,
            access_key: s.access_key,
            has_secret_key: true,
            force_path_style: s.force_path_style,
            region: s.region,
        }
    }
}

/// The org's storage settings (its org admins and the global admin); 404 until configured.
#[utoipa::path(get, path = "/admin/orgs/{orgId}/storage", tag = "admin", params(("orgId" = Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = StorageResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_storage(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
) -> Result<Json<StorageResponse>, ApiError> {
    let settings = state.harden.storage_settings(&caller, OrgId::from_uuid(org)).await?;
    Ok(Json(settings.ok_or_else(|| ApiError::not_found("file storage is not configured for this org"))?.into()))
}

/// Saves the org's storage settings after checking the bucket can be reached with them: a clear
/// 400 names what failed (DNS, connection, credentials, missing bucket, a private address).
#[utoipa::path(put, path = "/admin/orgs/{orgId}/storage", tag = "admin", params(("orgId" = Uuid, Path)), request_body = StorageRequestDto,
    security(("apiKey" = [])),
    responses((status = 200, body = StorageResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_storage(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    AppJson(req): AppJson<StorageRequestDto>,
) -> Result<(Consistency, Json<StorageResponse>), ApiError> {
    let org = OrgId::from_uuid(org);
    let request = StorageRequest {
        service_url: &req.service_url,
        bucket: &req.bucket,
        access_key: &req.access_key,
        secret_key: req.secret_key.as_deref(),
        force_path_style: req.force_path_style,
        region: req.region.as_deref(),
    };
    let reachable = state.harden.prepare_storage(&caller, org, request, &state.storage_policy).await?;
    object_store::check(&reachable).await?;
    let settings = reachable.settings;
    let committed = state.harden.store_storage(org, settings.clone(), caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(settings.into())))
}
