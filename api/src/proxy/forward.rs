//! Routes the Proxy passes to the Backend: every Backend route at its own path (`/admin/*`,
//! `/auth/*`, `/users/*`, `/kv*`, `/files*`, `/audit`, `/cloud/*` and the webhooks)
//! unchanged (status, headers and body both ways), and the `/v1` routes that need no crypto, under
//! their Backend paths.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::dto::PublicProfile;
use crate::error::{ApiError, ErrorBody};
use crate::proxy::client::is_hop_by_hop;
use crate::proxy::pins::VerifiedProfile;
use crate::proxy::{ProxyState, NEW_USER_SECRET_HEADER, RECOVERY_SECRET_HEADER, USER_SECRET_HEADER};

const FORWARDED_FOR: &str = "x-forwarded-for";

/// The Backend URL a passed-through request goes to: `path` and `query` on the Backend's `base`,
/// or `None` when the path would leave the subtree of its first segment. Only the route's own
/// subtree: a dot segment (plain or percent-encoded) would be resolved by the URL parser and could
/// reach any Backend route, so none is accepted. The URL parser also takes `\` for `/` in http
/// URLs (and hyper lets it through), so it separates segments here too, and the subtree is
/// `/first` itself or below `/first/`, never a sibling such as `/firstX`. Public for the fuzz
/// targets (`fuzz/`).
#[doc(hidden)]
pub fn backend_url(mut url: reqwest::Url, path: &str, query: Option<&str>) -> Option<reqwest::Url> {
    let dot_segment = path.split(['/', '\\']).any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    });
    let prefix = path.split(['/', '\\']).nth(1).map(|first| format!("/{first}")).unwrap_or_default();
    url.set_path(path);
    url.set_query(query);
    let in_subtree = url.path() == prefix || url.path().starts_with(&format!("{prefix}/"));
    if dot_segment || prefix.len() < 2 || !in_subtree {
        return None;
    }
    Some(url)
}

/// Forwards the request to the same path on the Backend (without a `/v1` prefix), streaming the
/// body both ways. The caller's credentials pass as they came (`X-Api-Key`, and `X-API-Secret`
/// for the Cloud API's pair); the secrets the Backend must never see do not pass at all.
pub async fn pass_through(
    State(state): State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let url = backend_url(state.vault.backend.url(&[], None), path, parts.uri.query())
        .ok_or_else(|| ApiError::status(StatusCode::BAD_REQUEST, "invalid path"))?;
    let mut headers = parts.headers.clone();
    headers.retain_hop_by_hop();
    // The Backend never receives a user secret, whatever a client sends where.
    for secret in [USER_SECRET_HEADER, NEW_USER_SECRET_HEADER, RECOVERY_SECRET_HEADER] {
        headers.remove(secret);
    }
    let ConnectInfo(peer) = peer;
    let forwarded = match parts.headers.get(FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(chain) => format!("{chain}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert(HeaderName::from_static(FORWARDED_FOR), value);
    }
    // The length the client declared goes on, so the Backend can refuse an oversized body before
    // reading it; the body itself is streamed.
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, length.clone());
    }
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let answer = state.vault.backend.send_streaming(parts.method.clone(), url, headers, body).await?;
    // An API key rotated through the Proxy: drop whatever the Proxy holds unlocked for that user.
    if answer.status().is_success() && path.ends_with("/apikey/rotate") {
        if let Some(user) = path.split('/').nth_back(2).and_then(|u| u.parse().ok()) {
            state.vault.unlocker.forget(user);
        }
    }
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers().iter().filter(|(n, _)| !is_hop_by_hop(n) || *n == header::CONTENT_LENGTH) {
        response = response.header(name, value);
    }
    let mut response =
        response.body(Body::from_stream(answer.bytes_stream())).map_err(|e| anyhow::anyhow!("{e}"))?.into_response();
    inert(response.headers_mut());
    Ok(response)
}

/// Makes a Backend answer passed on at the public edge inert in a browser: the edge also serves
/// the dashboard (`/ui/`), whose origin a hostile Backend must not be able to put a page, a script
/// or a cookie on. No `Set-Cookie` passes; a body that is not JSON goes as opaque bytes; nothing
/// may be sniffed as something else; and a sandbox CSP gives anything rendered anyway an origin of
/// its own, with no script.
pub fn inert(headers: &mut axum::http::HeaderMap) {
    headers.remove(header::SET_COOKIE);
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        v.starts_with("application/json") || v.starts_with("application/problem+json")
    });
    if !json && headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
}

trait RetainHopByHop {
    fn retain_hop_by_hop(&mut self);
}

impl RetainHopByHop for axum::http::HeaderMap {
    /// Removes the headers that belong to one connection, not to the request.
    fn retain_hop_by_hop(&mut self) {
        let names: Vec<_> = self.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
        for name in names {
            self.remove(name);
        }
    }
}

/// Public profiles of the caller's org (the Backend's `GET /users/org`), each with the fingerprint
/// of its keys as the Proxy computed it and whether a verified key bundle vouches for them.
#[utoipa::path(get, path = "/v1/users/org", tag = "users", security(("apiKey" = [])),
    responses((status = 200, body = Vec<VerifiedProfile>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn org_directory(
    State(state): State<ProxyState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<Vec<VerifiedProfile>>, ApiError> {
    let api_key = ProxyState::api_key(&headers)?;
    let answer = state.vault.backend.call(axum::http::Method::GET, &["users", "org"], None, api_key, None, &[]).await?;
    let profiles: Vec<PublicProfile> = answer.ok()?.json()?;
    Ok(axum::Json(profiles.into_iter().map(VerifiedProfile::from).collect()))
}

/// Readiness of the Proxy: the Backend it uses is ready (its `/ready` answer, passed on), or 503 if it
/// cannot be reached.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, description = "as the Backend's GET /ready"), (status = 503, body = ErrorBody)))]
pub async fn ready(state: State<ProxyState>, peer: ConnectInfo<SocketAddr>, request: Request) -> Response {
    match pass_through(state, peer, request).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(error = ?e, "readiness: the Backend is unreachable");
            ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "not ready: the Backend is unreachable").into_response()
        }
    }
}

/// One public profile of the caller's org (the Backend's `GET /users/org/{userId}`), with its
/// fingerprint and whether a verified key bundle vouches for its keys.
#[utoipa::path(get, path = "/v1/users/org/{userId}", tag = "users", params(("userId" = uuid::Uuid, Path)), security(("apiKey" = [])),
    responses((status = 200, body = VerifiedProfile), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn org_profile(
    State(state): State<ProxyState>,
    headers: axum::http::HeaderMap,
    crate::extract::AppPath(user): crate::extract::AppPath<uuid::Uuid>,
) -> Result<axum::Json<VerifiedProfile>, ApiError> {
    let api_key = ProxyState::api_key(&headers)?;
    let path = ["users", "org", &user.to_string()];
    let answer = state.vault.backend.call(axum::http::Method::GET, &path, None, api_key, None, &[]).await?;
    Ok(axum::Json(VerifiedProfile::from(answer.ok()?.json::<PublicProfile>()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(path: &str) -> Option<String> {
        let base = reqwest::Url::parse("http://127.0.0.1:8080/").unwrap();
        backend_url(base, path, Some("limit=1")).map(|url| url.to_string())
    }

    #[test]
    fn a_passed_through_path_stays_in_its_first_segment_s_subtree() {
        assert_eq!(backend("/admin/orgs").as_deref(), Some("http://127.0.0.1:8080/admin/orgs?limit=1"));
        assert_eq!(backend("/webhooks/stripe").as_deref(), Some("http://127.0.0.1:8080/webhooks/stripe?limit=1"));
        for path in ["/auth/../kv", "/auth/%2e%2E/kv", "/auth/./plans", "/", ""] {
            assert_eq!(backend(path), None, "{path:?}");
        }
    }

    #[test]
    fn backslashes_are_segment_separators_and_siblings_are_outside_the_subtree() {
        // Found while writing the request_values fuzz target: the URL parser reads `\` as `/`, so
        // `/auth/x\..\..\authz` went to the Backend's `/authz`, a sibling of `/auth`.
        for path in ["/auth/x\\..\\..\\authz", "/admin/a\\..\\b", "/auth/..\\kv", "/auth\\..\\kv"] {
            assert_eq!(backend(path), None, "{path:?}");
        }
    }
}
