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
