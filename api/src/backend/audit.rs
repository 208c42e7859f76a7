//! `GET /audit`: the org's audit history, for its org admins.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use harden_commands::Error as CommandError;
use harden_domain::secret::KeyName;
use harden_projections::audit::{Filter, SCOPE_KV};

use crate::backend::kv::page_limit;
use crate::dto::page;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AppQuery, Caller};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this key's entries.
    pub key: Option<String>,
    /// Only entries caused by this user.
    pub user_id: Option<Uuid>,
    /// Entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// `kv` (default): KV create/update/delete; `all`: also users, keys, plans and the rest.
    pub scope: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 1000, default 100.
    pub limit: Option<i64>,
}

/// An audit entry as answered (the one definition, shared with the clients that verify the chain).
pub use harden_domain::audit_chain::Served as AuditEntryDto;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditResponse {
    pub entries: Vec<AuditEntryDto>,
    pub next_cursor: Option<String>,
}

/// The org's audit entries, oldest first. Org admins only.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery), security(("apiKey" = [])),
    responses((status = 200, body = AuditResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<AuditQuery>,
) -> Result<Json<AuditResponse>, ApiError> {
    let org = match (caller.org_id, caller.role.is_org_admin()) {
        (Some(org), true) => org,
        _ => return Err(CommandError::forbidden("org admin role required").into()),
    };
    let all_scopes = match query.scope.as_deref() {
        None | Some(SCOPE_KV) => false,
        Some("all") => true,
        Some(other) => return Err(CommandError::invalid(format!("unknown scope '{other}'; use kv or all")).into()),
    };
    let limit = page_limit(query.limit)?;
    let after_seq = query
        .cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| ApiError::from(CommandError::invalid("invalid cursor"))))
        .transpose()?;
    let key = query.key.map(|k| KeyName::parse(&k).map(|_| k)).transpose().map_err(CommandError::from)?;
    let filter = Filter { key, user_id: query.user_id, since: query.since, until: query.until, all_scopes, after_seq };
    let entries = state.audit.list(*org.as_uuid(), &filter, limit + 1).await?;
    let (entries, next_cursor) = page(entries, limit, |e| e.seq.to_string());
    Ok(Json(AuditResponse { entries: entries.into_iter().map(Into::into).collect(), next_cursor }))
}
