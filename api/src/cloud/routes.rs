//! The Cloud API's routes: onboarding, organizations, members, invites and API keys. Bodies are
//! snake_case, as the spec writes them. Each route names its minimum role; the command side checks
//! it against the org's events.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use harden_commands::access::ORG_NOT_FOUND;
use harden_domain::cloud::MemberRole;
use harden_domain::{ApiKeyId, OrgId};
use harden_projections::cloud::{CloudOrgRow, InviteRow};

use crate::cloud::auth::{self, Cloud};
use crate::dto::Consistency;
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardingRequest {
    /// Required (an `Option` only so that its absence gets harden's own message).
    #[schema(required = true, value_type = String)]
    pub org_name: Option<String>,
    pub billing_email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OnboardingResponse {
    pub org_id: Uuid,
    pub org_name: String,
    pub org_slug: String,
    /// The org's project: the harden user its API keys belong to.
    pub project_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// Creates an org for the caller, with the caller as owner (201), or returns the org the caller
/// already onboarded (200).
#[utoipa::path(post, path = "/cloud/onboarding", tag = "cloud", request_body = OnboardingRequest,
    security(("bearer" = [])),
    responses((status = 201, body = OnboardingResponse), (status = 200, body = OnboardingResponse), JsonBodyErrors,
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn onboarding(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppJson(req): AppJson<OnboardingRequest>,
) -> Result<(StatusCode, Consistency, Json<OnboardingResponse>), ApiError> {
    let org_name = req.org_name.unwrap_or_default();
    let n = state.cloud.deleted_orgs_created_by(caller.identity.as_str()).await?;
    let onboarded = state.harden.onboard(&caller, n, &org_name, req.billing_email.as_deref()).await?;
    let freshness = state.read_models.wait_for(onboarded.committed.position).await;
    let row = live_org(&state, onboarded.org_id).await?;
    let status = if onboarded.created { StatusCode::CREATED } else { StatusCode::OK };
    let body = OnboardingResponse {
        org_id: row.org_id,
        org_name: row.name,
        org_slug: row.slug,
        project_id: *onboarded.project_id.as_uuid(),
        created_at: row.created_at,
    };
    Ok((status, Consistency(freshness), Json(body)))
}

async fn live_org(state: &AppState, org: OrgId) -> Result<CloudOrgRow, ApiError> {
    state.cloud.org(org).await?.ok_or_else(|| ApiError::not_found(ORG_NOT_FOUND))
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationSummary {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub billing_email: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationList {
    pub organizations: Vec<OrganizationSummary>,
}

/// The orgs the caller is an active member of.
#[utoipa::path(get, path = "/cloud/organizations", tag = "cloud", security(("bearer" = [])),
    responses((status = 200, body = OrganizationList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_organizations(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
) -> Result<Json<OrganizationList>, ApiError> {
    let rows = state.cloud.orgs_of(caller.identity.as_str()).await?;
    let organizations = rows
        .into_iter()
        .map(|o| OrganizationSummary {
            id: o.org_id,
            name: o.name,
            slug: o.slug,
            billing_email: o.billing_email,
            created_at: o.created_at,
        })
        .collect();
    Ok(Json(OrganizationList { organizations }))
}

#[derive(Serialize, ToSchema)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created_by: String,
    pub billing_email: Option<String>,
    pub project_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CloudOrgRow> for Organization {
    fn from(o: CloudOrgRow) -> Self {
        Organization {
            id: o.org_id,
            name: o.name,
            slug: o.slug,
            created_by: o.created_by,
            billing_email: o.billing_email,
            project_id: o.project_id,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// An org's details (minimum role: viewer).
#[utoipa::path(get, path = "/cloud/organizations/{org_id}", tag = "cloud", params(("org_id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Organization), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_organization(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(org): AppPath<OrgId>,
) -> Result<Json<Organization>, ApiError> {
    state.harden.cloud_member(&caller, org, MemberRole::Viewer).await?;
    Ok(Json(live_org(&state, org).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganizationRequest {
    /// Required (an `Option` only so that its absence gets harden's own message).
    #[schema(required = true, value_type = String)]
    pub name: Option<String>,
    /// Absent: kept as it is. `null`: cleared. A string: the new billing contact.
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(value_type = Option<String>, nullable)]
    pub billing_email: Option<Option<String>>,
}

/// Renames the org and, when the body has `billing_email`, sets or (with `null`) clears its billing
/// email (minimum role: admin). A field left out of the body keeps its value.
#[utoipa::path(patch, path = "/cloud/organizations/{org_id}", tag = "cloud", params(("org_id" = Uuid, Path)),
    request_body = UpdateOrganizationRequest, security(("bearer" = [])),
    responses((status = 200, body = Organization), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_organization(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(org): AppPath<OrgId>,
    AppJson(req): AppJson<UpdateOrganizationRequest>,
) -> Result<(Consistency, Json<Organization>), ApiError> {
    let name = req.name.unwrap_or_default();
    let committed =
        state.harden.update_cloud_org(&caller, org, &name, req.billing_email.as_ref().map(Option::as_deref)).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(live_org(&state, org).await?.into())))
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationDeleted {
    pub status: String,
    pub org_id: Uuid,
}

/// Soft-deletes the org (minimum role: owner): members lose access and its API keys stop working at
/// once; its events and audit stay.
#[utoipa::path(delete, path = "/cloud/organizations/{org_id}", tag = "cloud", params(("org_id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OrganizationDeleted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_organization(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(org): AppPath<OrgId>,
) -> Result<(Consistency, Json<OrganizationDeleted>), ApiError> {
    let committed = state.harden.delete_cloud_org(&caller, org).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(OrganizationDeleted { status: "deleted".into(), org_id: *org.as_uuid() })))
}

#[derive(Serialize, ToSchema)]
pub struct MemberEntry {
    /// The member's harden user id.
    pub id: Uuid,
    pub clerk_user_id: String,
    pub role: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub joined_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberEntry>,
}

/// The org's members with their roles and the identity provider's profile data (minimum role:
/// viewer).
#[utoipa::path(get, path = "/cloud/organizations/{org_id}/members", tag = "cloud", params(("org_id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = MemberList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(org): AppPath<OrgId>,
) -> Result<Json<MemberList>, ApiError> {
    state.harden.cloud_member(&caller, org, MemberRole::Viewer).await?;
    let members = state
        .cloud
        .members(org)
        .await?
        .into_iter()
        .map(|m| MemberEntry {
            id: m.user_id,
            clerk_user_id: m.identity,
            role: m.role,
            email: m.email,
            first_name: m.first_name,
            last_name: m.last_name,
            joined_at: m.joined_at,
        })
        .collect();
    Ok(Json(MemberList { members }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    /// `admin`, `developer` or `viewer`.
    pub role: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberRoleResponse {
    pub id: Uuid,
    pub clerk_user_id: String,
    pub role: String,
    pub joined_at: Option<DateTime<Utc>>,
}

/// Changes a member's role (minimum role: admin). `owner` is never assignable and the owner's role
/// never changes.
#[utoipa::path(patch, path = "/cloud/organizations/{org_id}/members/{clerk_user_id}", tag = "cloud",
    params(("org_id" = Uuid, Path), ("clerk_user_id" = String, Path)), request_body = UpdateMemberRequest,
    security(("bearer" = [])),
    responses((status = 200, body = MemberRoleResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_member(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath((org, member)): AppPath<(OrgId, String)>,
    AppJson(req): AppJson<UpdateMemberRequest>,
) -> Result<(Consistency, Json<MemberRoleResponse>), ApiError> {
    let role = req.role.unwrap_or_default();
    let (changed, committed) = state.harden.change_member_role(&caller, org, &member, &role).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    let joined_at = state.cloud.joined_at(org, &member).await?;
    let body = MemberRoleResponse {
        id: *changed.user_id.as_uuid(),
        clerk_user_id: member,
        role: changed.role.as_str().to_owned(),
        joined_at,
    };
    Ok((Consistency(freshness), Json(body)))
}

#[derive(Serialize, ToSchema)]
pub struct MemberRemoved {
    pub status: String,
    pub clerk_user_id: String,
}

/// Removes a member (minimum role: admin); the owner cannot be removed.
#[utoipa::path(delete, path = "/cloud/organizations/{org_id}/members/{clerk_user_id}", tag = "cloud",
    params(("org_id" = Uuid, Path), ("clerk_user_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = MemberRemoved), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath((org, member)): AppPath<(OrgId, String)>,
) -> Result<(Consistency, Json<MemberRemoved>), ApiError> {
    let committed = state.harden.remove_member(&caller, org, &member).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(MemberRemoved { status: "removed".into(), clerk_user_id: member })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    pub email: Option<String>,
    /// `admin`, `developer` (the default) or `viewer`.
    pub role: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InviteResponse {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub token: String,
    pub role: String,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<InviteRow> for InviteResponse {
    fn from(i: InviteRow) -> Self {
        InviteResponse {
            id: i.invite_id,
            org_id: i.org_id,
            email: i.email,
            token: i.token,
            role: i.role,
            created_by: i.created_by,
            expires_at: i.expires_at,
            created_at: i.created_at,
            accepted_at: i.accepted_at,
            revoked_at: i.revoked_at,
        }
    }
}

/// Invites an email address (minimum role: admin); the invite expires after 7 days.
#[utoipa::path(post, path = "/cloud/organizations/{org_id}/invites", tag = "cloud", params(("org_id" = Uuid, Path)),
    request_body = CreateInviteRequest, security(("bearer" = [])),
    responses((status = 201, body = InviteResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_invite(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(org): AppPath<OrgId>,
    AppJson(req): AppJson<CreateInviteRequest>,
) -> Result<(StatusCode, Consistency, Json<InviteResponse>), ApiError> {
    let email = req.email.unwrap_or_default();
    let invite = state.harden.create_invite(&caller, &state.clock, org, &email, req.role.as_deref()).await?;
    let freshness = state.read_models.wait_for(invite.committed.position).await;
    let row =
        state.cloud.invite(org, invite.invite_id).await?.ok_or_else(|| ApiError::not_found("invite not found"))?;
    Ok((StatusCode::CREATED, Consistency(freshness), Json(row.into())))
}

#[derive(Serialize, ToSchema)]
pub struct InviteList {
    pub invites: Vec<InviteResponse>,
}

/// Pending, accepted and revoked invites (minimum role: viewer).
#[utoipa::path(get, path = "/cloud/organizations/{org_id}/invites", tag = "cloud", params(("org_id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = InviteList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_invites(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(org): AppPath<OrgId>,
) -> Result<Json<InviteList>, ApiError> {
    state.harden.cloud_member(&caller, org, MemberRole::Viewer).await?;
    let invites = state.cloud.invites(org).await?.into_iter().map(InviteResponse::from).collect();
    Ok(Json(InviteList { invites }))
}

#[derive(Serialize, ToSchema)]
pub struct StatusResponse {
    pub status: String,
}

/// Revokes a pending invite (minimum role: admin).
#[utoipa::path(delete, path = "/cloud/organizations/{org_id}/invites/{token}", tag = "cloud",
    params(("org_id" = Uuid, Path), ("token" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = StatusResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn revoke_invite(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath((org, token)): AppPath<(OrgId, String)>,
) -> Result<(Consistency, Json<StatusResponse>), ApiError> {
    let committed = state.harden.revoke_invite(&caller, org, &token).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(StatusResponse { status: "revoked".into() })))
}

#[derive(Serialize, ToSchema)]
pub struct InviteAccepted {
    pub status: String,
    pub org_id: Uuid,
    pub role: String,
}

/// Joins the invite's org. The caller's verified email must be the invite's.
#[utoipa::path(post, path = "/cloud/invites/{token}/accept", tag = "cloud", params(("token" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = InviteAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn accept_invite(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(token): AppPath<String>,
) -> Result<(Consistency, Json<InviteAccepted>), ApiError> {
    let caller = auth::with_cached_email(&state, caller).await?;
    let org = state.cloud.org_of_invite(&token).await?;
    let (org, role, committed) = state.harden.accept_invite(&caller, &state.clock, org, &token).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    let body = InviteAccepted { status: "accepted".into(), org_id: *org.as_uuid(), role: role.as_str().to_owned() };
    Ok((Consistency(freshness), Json(body)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// A label (default: `Key YYYY-MM-DD`).
    pub name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: Uuid,
    pub name: String,
    /// The key's public identifier, shown in listings. It does not authenticate.
    pub key: String,
    /// The credential, shown once and stored only as a hash: send it as `X-Api-Key` to the Backend
    /// or the Proxy.
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// Creates an API key of the org's project user (minimum role: admin). Its `secret`, shown only
/// here, is an org-admin `X-Api-Key` for the Backend and the Proxy.
#[utoipa::path(post, path = "/cloud/organizations/{org_id}/api-keys", tag = "cloud", params(("org_id" = Uuid, Path)),
    request_body = CreateApiKeyRequest, security(("bearer" = [])),
    responses((status = 201, body = ApiKeyCreated), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(org): AppPath<OrgId>,
    AppJson(req): AppJson<CreateApiKeyRequest>,
) -> Result<(StatusCode, Consistency, Json<ApiKeyCreated>), ApiError> {
    let key = state.harden.create_api_key(&caller, org, req.name.as_deref()).await?;
    let freshness = state.read_models.wait_for(key.committed.position).await;
    let body = ApiKeyCreated {
        id: *key.key_id.as_uuid(),
        name: key.name,
        key: key.label,
        secret: key.secret.expose_secret().to_owned(),
        created_at: key.committed.recorded_at.unwrap_or_else(Utc::now),
    };
    Ok((StatusCode::CREATED, Consistency(freshness), Json(body)))
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyEntry {
    pub id: Uuid,
    pub name: String,
    pub key: String,
    pub active: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyEntry>,
}

/// The org's active API keys, never their secrets (minimum role: developer). `last_used_at` is
/// written in batches, so it may trail the latest use by the flush interval.
#[utoipa::path(get, path = "/cloud/organizations/{org_id}/api-keys", tag = "cloud", params(("org_id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ApiKeyList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath(org): AppPath<OrgId>,
) -> Result<Json<ApiKeyList>, ApiError> {
    state.harden.cloud_member(&caller, org, MemberRole::Developer).await?;
    let api_keys = state
        .cloud
        .api_keys(org)
        .await?
        .into_iter()
        .map(|k| ApiKeyEntry {
            id: k.key_id,
            name: k.name,
            key: k.label,
            active: true,
            last_used_at: k.last_used_at,
            created_at: k.created_at,
        })
        .collect();
    Ok(Json(ApiKeyList { api_keys }))
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyRevoked {
    pub status: String,
    pub id: Uuid,
}

/// Revokes an API key for good (minimum role: admin); its next request gets 401.
#[utoipa::path(delete, path = "/cloud/organizations/{org_id}/api-keys/{key_id}", tag = "cloud",
    params(("org_id" = Uuid, Path), ("key_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = ApiKeyRevoked), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Cloud(caller): Cloud,
    AppPath((org, key_id)): AppPath<(OrgId, ApiKeyId)>,
) -> Result<(Consistency, Json<ApiKeyRevoked>), ApiError> {
    let committed = state.harden.revoke_api_key(&caller, org, key_id).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(ApiKeyRevoked { status: "revoked".into(), id: *key_id.as_uuid() })))
}
