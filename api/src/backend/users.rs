//! `/admin/orgs/{orgId}/users`: creating, listing, rotating and offboarding an org's users.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;

use harden_commands::access;
use harden_commands::service::NewUser;
use harden_domain::{OrgId, Role, UserId};

use crate::dto::{ApiKeyResponse, Consistency, CreateUserRequest, CreatedUserResponse, UserRecord};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, Caller};
use crate::state::AppState;

/// Creates a user in an org. The global admin may create only the org's first org admin; org admins
/// create admins and users in their own org. The plaintext API key is returned once, in `apiKey`
/// and (as the spec documents) in `apiKeyHash`.
#[utoipa::path(post, path = "/admin/orgs/{orgId}/users", tag = "admin", request_body = CreateUserRequest,
    params(("orgId" = uuid::Uuid, Path)), security(("apiKey" = [])),
    responses((status = 201, body = CreatedUserResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(org): AppPath<OrgId>,
    AppJson(req): AppJson<CreateUserRequest>,
) -> Result<(StatusCode, Consistency, Json<CreatedUserResponse>), ApiError> {
    let new = NewUser {
        name: &req.name,
        is_admin: req.is_admin,
        public_key_ecc_b64: req.public_key_ecc_b64.as_deref(),
        public_key_kyber_b64: req.public_key_kyber_b64.as_deref(),
    };
    let created = state.harden.create_user(&caller, org, new, caller.meta()).await?;
    let freshness = state.read_models.wait_for(created.committed.position).await;
    let api_key = harden_commands::keys::expose(&created.api_key).to_owned();
    let user = UserRecord {
        id: *created.user_id.as_uuid(),
        org_id: Some(*created.org_id.as_uuid()),
        name: created.name.as_str().to_owned(),
        role: created.role.as_str().to_owned(),
        is_admin: created.role == Role::OrgAdmin,
        is_active: true,
        api_key_hash: api_key.clone(),
        public_key_ecc_b64: created.public_keys.as_ref().map(|k| k.ecc.as_str().to_owned()),
        public_key_kyber_b64: created.public_keys.as_ref().map(|k| k.kyber.as_str().to_owned()),
        created_utc: created.committed.recorded_at.unwrap_or_else(Utc::now),
    };
    Ok((StatusCode::CREATED, Consistency(freshness), Json(CreatedUserResponse { user, api_key })))
}

/// Lists an org's users, offboarded ones included (`isActive: false`), for the global admin or that
/// org's org admins. API key hashes are blank.
#[utoipa::path(get, path = "/admin/orgs/{orgId}/users", tag = "admin",
    params(("orgId" = uuid::Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = Vec<UserRecord>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(org): AppPath<OrgId>,
) -> Result<Json<Vec<UserRecord>>, ApiError> {
    access::require_admin_of(&caller, org)?;
    if state.directory.org(org).await?.is_none() {
        return Err(ApiError::not_found(access::ORG_NOT_FOUND));
    }
    let users = state.directory.users(org).await?;
    Ok(Json(users.iter().map(UserRecord::from).collect()))
}

/// Rotates a user's API key: every key the user holds stops working before this returns.
#[utoipa::path(post, path = "/admin/orgs/{orgId}/users/{userId}/apikey/rotate", tag = "admin",
    params(("orgId" = uuid::Uuid, Path), ("userId" = uuid::Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = ApiKeyResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((org, user)): AppPath<(OrgId, UserId)>,
) -> Result<Json<ApiKeyResponse>, ApiError> {
    let (key, _) = state.harden.rotate_key(&caller, org, user, caller.meta()).await?;
    Ok(Json(ApiKeyResponse { api_key: harden_commands::keys::expose(&key).to_owned() }))
}

/// Offboards a user: the user is deactivated and every key of theirs stops working at once. Their
/// events (and what they wrote) stay.
#[utoipa::path(delete, path = "/admin/orgs/{orgId}/users/{userId}", tag = "admin",
    params(("orgId" = uuid::Uuid, Path), ("userId" = uuid::Uuid, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deactivate_user(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((org, user)): AppPath<(OrgId, UserId)>,
) -> Result<(StatusCode, Consistency, ()), ApiError> {
    let committed = state.harden.deactivate_user(&caller, org, user, caller.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((StatusCode::NO_CONTENT, Consistency(freshness), ()))
}
