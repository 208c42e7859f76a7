use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use harden_commands::db::MIGRATOR;
use harden_projections::follower::follower_lag;

use crate::dto::HealthResponse;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok" })
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowerLag {
    pub name: String,
    /// Age of the oldest committed event the follower has not applied (0 when caught up).
    pub lag_seconds: f64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyResponse {
    pub status: &'static str,
    pub migrations_applied: usize,
    pub followers: Vec<FollowerLag>,
}

/// How long one readiness probe may wait for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn not_ready(why: String) -> ApiError {
    ApiError::status(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"))
}

/// One database check of the readiness probe, within [`PROBE_TIMEOUT`]; its failure is 503.
async fn probe<T, E: std::fmt::Display>(
    check: &str,
    query: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(PROBE_TIMEOUT, query).await {
        Err(_) => Err(not_ready("the database did not answer in time".into())),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, check, "readiness: database check failed");
            Err(not_ready("the database is unreachable".into()))
        }
        Ok(Ok(value)) => Ok(value),
    }
}

/// Readiness: the database answers, every migration this binary knows is applied, and no read-model
/// follower has left a committed event unapplied for longer than `HARDEN_FOLLOWER_STALL_SECS`.
/// 503 with the reasons otherwise.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = ReadyResponse), (status = 503, body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<ReadyResponse>, ApiError> {
    let pool = state.harden.pool();
    let applied: Vec<i64> =
        probe("migrations", sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool))
            .await?;
    let missing: Vec<i64> = MIGRATOR.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect();
    if !missing.is_empty() {
        return Err(not_ready(format!("migrations not applied: {missing:?}")));
    }
    let lags = probe("followers", follower_lag(pool, &state.read_models.names())).await?;
    let stalled: Vec<&str> = lags
        .iter()
        .filter(|(_, lag)| *lag > state.follower_stall.as_secs_f64())
        .map(|(name, _)| name.as_str())
        .collect();
    if !stalled.is_empty() {
        return Err(not_ready(format!("followers stalled: {}", stalled.join(", "))));
    }
    let followers = lags.into_iter().map(|(name, lag_seconds)| FollowerLag { name, lag_seconds }).collect();
    Ok(Json(ReadyResponse { status: "ready", migrations_applied: applied.len(), followers }))
}
