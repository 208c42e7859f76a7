//! `/admin/orgs`: the global admin's view of tenants.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;

use harden_commands::access;
use harden_domain::OrgId;

use crate::dto::{ChangePlanRequest, Consistency, CreateOrgRequest, OrgResponse};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, Caller};
use crate::state::AppState;

/// Creates an organization (global admin only). `plan` defaults to `free`.
#[utoipa::path(post, path = "/admin/orgs", tag = "admin", request_body = CreateOrgRequest,
    security(("apiKey" = [])),
    responses((status = 201, body = OrgResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn create_org(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(req): AppJson<CreateOrgRequest>,
) -> Result<(StatusCode, Consistency, Json<OrgResponse>), ApiError> {
    let created = state.harden.create_org(&caller, &req.name, req.plan.as_deref(), caller.meta()).await?;
    let freshness = state.read_models.wait_for(created.committed.position).await;
    let body = OrgResponse {
        id: *created.org_id.as_uuid(),
        name: created.name.as_str().to_owned(),
        plan: created.plan.key().to_owned(),
        created_utc: created.committed.recorded_at.unwrap_or_else(Utc::now),
    };
    Ok((StatusCode::CREATED, Consistency(freshness), Json(body)))
}

/// Lists organizations (global admin only), oldest first.
#[utoipa::path(get, path = "/admin/orgs", tag = "admin", security(("apiKey" = [])),
    responses((status = 200, body = Vec<OrgResponse>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_orgs(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<OrgResponse>>, ApiError> {
    access::require_global_admin(&caller)?;
    let orgs = state.directory.orgs().await?;
    Ok(Json(orgs.into_iter().map(OrgResponse::from).collect()))
}

/// Moves an org to another plan (global admin only); the new limits apply from the next command.
#[utoipa::path(put, path = "/admin/orgs/{orgId}/plan", tag = "admin", request_body = ChangePlanRequest,
    params(("orgId" = uuid::Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = OrgResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn change_plan(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(org): AppPath<OrgId>,
    AppJson(req): AppJson<ChangePlanRequest>,
) -> Result<(Consistency, Json<OrgResponse>), ApiError> {
    let committed = state.harden.change_plan(&caller, org, &req.plan, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    let row = state.directory.org(org).await?.ok_or_else(|| ApiError::not_found(access::ORG_NOT_FOUND))?;
    Ok((Consistency(freshness), Json(row.into())))
}

/// One limit of the org's plan and what the org uses of it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gauge {
    pub used: i64,
    pub max: i64,
}

/// How far one read model trails the event store (seconds; 0 when caught up).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowerLag {
    pub name: String,
    pub lag_seconds: f64,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageResponse {
    pub plan: String,
    /// Live records of all the org's users.
    pub records: Gauge,
    /// Key plus value bytes of the largest live record, against the per-record limit.
    pub largest_record_bytes: Gauge,
    /// Live files.
    pub files: Gauge,
    /// The largest live file, against the per-file limit.
    pub largest_file_bytes: Gauge,
    /// All live files' bytes (plaintext sizes as uploaded).
    pub stored_file_bytes: i64,
    /// Every read model's lag behind the event store.
    pub followers: Vec<FollowerLag>,
}

/// The org's plan, each limit with what the org uses of it, and the read models' lag (org admins
/// of that org, and the global admin).
#[utoipa::path(get, path = "/admin/orgs/{orgId}/usage", tag = "admin", params(("orgId" = Uuid, Path)),
    security(("apiKey" = [])),
    responses((status = 200, body = UsageResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(org): AppPath<uuid::Uuid>,
) -> Result<Json<UsageResponse>, ApiError> {
    let org = OrgId::from_uuid(org);
    access::require_admin_of(&caller, org)?;
    let row = state.directory.usage(org).await?.ok_or_else(|| ApiError::not_found("org not found"))?;
    let lags = harden_projections::follower::follower_lag(state.harden.pool(), &state.read_models.names())
        .await
        .map_err(ApiError::from)?;
    Ok(Json(UsageResponse {
        plan: row.plan,
        records: Gauge { used: row.records_used, max: row.max_records },
        largest_record_bytes: Gauge { used: row.largest_record_bytes, max: row.max_kv_bytes },
        files: Gauge { used: row.files_used, max: row.max_files },
        largest_file_bytes: Gauge { used: row.largest_file_bytes, max: row.max_file_bytes },
        stored_file_bytes: row.stored_file_bytes,
        followers: lags.into_iter().map(|(name, lag_seconds)| FollowerLag { name, lag_seconds }).collect(),
    }))
}
