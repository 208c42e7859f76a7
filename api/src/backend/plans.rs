use axum::Json;

use crate::dto::PlansResponse;

/// The public plan catalog and the enterprise contact.
#[utoipa::path(get, path = "/auth/plans", tag = "auth", responses((status = 200, body = PlansResponse)))]
pub async fn list_plans() -> Json<PlansResponse> {
    Json(PlansResponse::catalog())
}
