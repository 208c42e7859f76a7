//! Middleware shared by every listener: request ids (generated unless the client sent one, and
//! echoed in `X-Request-Id`), a tracing span per request, request metrics, the body-size limit, a
//! time limit per request, rate limits on the anonymous routes, panics turned into an opaque 500,
//! and JSON bodies for unknown routes and methods; and CORS when origins are configured.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;
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
use crate::extract::{TrustedProxies, REQUEST_ID_HEADER};
use crate::metrics::Metrics;
use crate::rate_limit::{self, AnonymousRate};

/// Limits every request of a listener is held to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// A request not answered within this is answered 503 (its work is dropped).
    pub request_timeout: Duration,
}

pub const TIMED_OUT: &str = "the request took too long and was stopped; retry";

/// One listener as the shared middleware sees it.
#[derive(Clone)]
pub struct Edge {
    /// The `surface` label of its request metrics.
    pub surface: &'static str,
    pub limits: Limits,
    pub metrics: Metrics,
    pub anonymous_rate: AnonymousRate,
    /// Resolves client addresses for the anonymous rate limit.
    pub clients: Arc<TrustedProxies>,
}

/// Wraps `router` in the shared middleware. `anonymous` lists the route templates that take no
/// credentials (see [`rate_limit::anonymous_paths`]).
pub fn apply(router: Router, edge: &Edge, anonymous: HashSet<String>) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let timeout = edge.limits.request_timeout;
    let router = router
        .fallback(|| async { ApiError::status(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        });
    let router = rate_limit::layer(router, anonymous, edge.anonymous_rate, edge.clients.clone());
    let router = router.layer(middleware::from_fn(move |req: Request<Body>, next: Next| async move {
        match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(response) => response,
            Err(_) => ApiError::status(StatusCode::SERVICE_UNAVAILABLE, TIMED_OUT).into_response(),
        }
    }));
    edge.metrics.layer(router, edge.surface).layer(DefaultBodyLimit::max(edge.limits.max_body_bytes)).layer(
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

/// Where each listener serves its OpenAPI document, and the browsable page over it.
pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// Serves `doc` at [`OPENAPI_PATH`] and Swagger UI over it at [`DOCS_PATH`] (its files are vendored
/// into the binary, so the page needs nothing from the internet).
pub fn documented(router: Router, doc: utoipa::openapi::OpenApi) -> Router {
    router.merge(utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, doc))
}

/// `paths` plus the documents' own routes, which take no credentials either.
pub fn with_documents(mut paths: HashSet<String>) -> HashSet<String> {
    // The page's routes as Swagger UI registers them: the redirect, the page, and its files.
    paths.extend([
        OPENAPI_PATH.to_owned(),
        DOCS_PATH.to_owned(),
        format!("{DOCS_PATH}/"),
        format!("{DOCS_PATH}/{{*rest}}"),
    ]);
    paths
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
}

/// CORS for browser clients of the Proxy and of the Backend's listener (the Cloud API's dashboard
/// runs in a browser): off (no CORS headers, so browsers refuse cross-origin calls) unless origins
/// are listed. Listed origins may send every header harden reads and read its request id,
/// `Retry-After` and read-model headers. No credentials mode: harden's credentials are headers,
/// never cookies.
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
        .allow_headers(
            [
                header::CONTENT_TYPE.as_str(),
                header::AUTHORIZATION.as_str(),
                header::IF_MATCH.as_str(),
                crate::extract::API_KEY_HEADER,
                crate::extract::API_SECRET_HEADER,
                crate::proxy::USER_SECRET_HEADER,
                crate::proxy::NEW_USER_SECRET_HEADER,
                crate::proxy::RECOVERY_SECRET_HEADER,
                REQUEST_ID_HEADER,
            ]
            .map(HeaderName::from_static),
        )
        .expose_headers([
            HeaderName::from_static(REQUEST_ID_HEADER),
            header::RETRY_AFTER,
            header::ETAG,
            HeaderName::from_static(harden_projections::read_models::CATCHING_UP_HEADER),
        ])
        .max_age(Duration::from_secs(600));
    Ok(router.layer(layer))
}
