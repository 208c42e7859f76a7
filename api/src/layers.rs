//! Middleware shared by every listener: request ids (generated unless the client sent one, and
//! echoed in `X-Request-Id`), a tracing span per request, the body-size limit, a time limit per
//! request, panics turned into an opaque 500, and JSON bodies for unknown routes and methods; and,
//! for the Proxy, CORS when origins are configured.

use std::any::Any;
use std::time::Duration;

use axum::body::Body;
use axum::middleware::{self, Next};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::extract::REQUEST_ID_HEADER;

/// Limits every request of a listener is held to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// A request not answered within this is answered 503 (its work is dropped).
    pub request_timeout: Duration,
}

pub const TIMED_OUT: &str = "the request took too long and was stopped; retry";

pub fn apply(router: Router, limits: Limits) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let timeout = limits.request_timeout;
    router
        .fallback(|| async { ApiError::status(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(middleware::from_fn(move |req: Request<Body>, next: Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => ApiError::status(StatusCode::SERVICE_UNAVAILABLE, TIMED_OUT).into_response(),
            }
        }))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
}

/// CORS for browser clients of the Proxy: off (no CORS headers, so browsers refuse cross-origin
/// calls) unless origins are listed. Listed origins may send harden's headers and read its
/// request id and read-model headers.
pub fn cors(router: Router, origins: &[String]) -> Result<Router, String> {
    use axum::http::{header, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(router);
    }
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| format!("'{o}' is not a valid origin")))
        .collect::<Result<Vec<_>, _>>()?;
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-user-secret"),
            HeaderName::from_static("x-new-user-secret"),
            HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .expose_headers([
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static(harden_projections::read_models::CATCHING_UP_HEADER),
        ])
        .max_age(Duration::from_secs(600));
    Ok(router.layer(layer))
}
