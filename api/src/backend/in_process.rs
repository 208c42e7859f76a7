//! The Backend's router as the Proxy's Backend when both run in one process (see
//! [`harden_client::backend::InProcess`]).

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::Router;
use futures::future::BoxFuture;
use harden_client::backend::{Answer, InProcess, LocalRequest};
use harden_client::Error;
use tower::ServiceExt;

/// The Backend's router, called as a service. Requests come from the Proxy as from loopback, as
/// they would over HTTP (`127.0.0.1`), so every layer (rate limits, timeouts, metrics, request
/// ids) sees them as it sees a Proxy's call over the network.
#[derive(Clone)]
pub struct LocalBackend {
    router: Router,
}

impl LocalBackend {
    pub fn new(router: Router) -> Self {
        Self { router }
    }
}

impl InProcess for LocalBackend {
    fn send(&self, request: LocalRequest) -> BoxFuture<'static, Result<Answer, Error>> {
        let router = self.router.clone();
        Box::pin(async move {
            let LocalRequest { method, path_and_query, mut headers, body } = request;
            if !body.is_empty() {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
            let mut request = Request::builder()
                .method(method)
                .uri(path_and_query)
                .body(axum::body::Body::from(body))
                .map_err(|e| anyhow::anyhow!("could not build a request for the Backend: {e}"))?;
            *request.headers_mut() = headers;
            request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 0))));
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(|_| Error::status(StatusCode::BAD_GATEWAY, "the Backend's answer was cut off"))?;
            Ok(Answer { status: parts.status, headers: parts.headers, body })
        })
    }
}
