//! The Proxy: the crypto edge under `/v1`. It takes the user secret per request, unlocks the
//! user's private keys, encrypts and decrypts, and passes `/admin/*` and `/auth/*` through to the
//! Backend. For now it serves its health check and its OpenAPI document.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::backend::health;
use crate::layers;

#[derive(OpenApi)]
#[openapi(info(title = "harden Proxy API", description = "The crypto edge: encrypts and decrypts with the user's keys."), tags((name = "health")))]
struct ProxyDoc;

pub fn openapi_router() -> OpenApiRouter {
    OpenApiRouter::with_openapi(ProxyDoc::openapi()).routes(routes!(health::health))
}

pub fn router(max_body_bytes: usize) -> Router {
    let (router, doc) = openapi_router().split_for_parts();
    let router = router.route("/openapi.json", get(move || async move { Json(doc) }));
    layers::apply(router, max_body_bytes)
}
