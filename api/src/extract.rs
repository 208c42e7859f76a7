//! Extractors whose failures are `{ "error": ... }` bodies with a 4xx status, never axum's plain
//! text: JSON bodies, path parameters, and the calling principal.

use std::net::IpAddr;
use std::ops::Deref;

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use harden_commands::{Meta, Presented, Principal};

use crate::error::ApiError;
use crate::state::AppState;

/// The API key a request presents: `X-Api-Key: <secret>` alone, or the Cloud API's pair (the
/// second half in `X-API-Secret`).
pub use harden_client::credential::{ApiCredential, API_KEY_HEADER, API_SECRET_HEADER};
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// `Json` with harden's error bodies: malformed JSON, wrong types and unknown fields are 400, a
/// missing JSON content type 415, a body over the limit 413.
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(AppJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            ApiError::status(StatusCode::BAD_REQUEST, format!("invalid request body: {}", serde_reason(&e.body_text())))
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::status(StatusCode::BAD_REQUEST, format!("malformed JSON: {}", serde_reason(&e.body_text())))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a JSON body with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        other => ApiError::status(other.status(), other.body_text()),
    }
}

/// A raw body (a webhook whose signature covers its exact bytes, an optional JSON body) with
/// harden's error bodies: over the limit is 413 `{ "error": ... }`, not axum's plain text.
pub struct AppBytes(pub axum::body::Bytes);

impl<S> FromRequest<S> for AppBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(AppBytes(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))
            }
            Err(rejection) => Err(ApiError::status(rejection.status(), rejection.body_text())),
        }
    }
}

/// axum prefixes serde's reason with its own sentence; the reason alone is what helps.
fn serde_reason(text: &str) -> String {
    text.rsplit_once(": ").map(|(_, reason)| reason).unwrap_or(text).to_owned()
}

/// `Path` with harden's error bodies: a malformed id is a 400 naming the parameter.
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(AppPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let msg = match e.kind() {
                    ErrorKind::ParseErrorAtKey { key, value, .. } | ErrorKind::DeserializeError { key, value, .. } => {
                        format!("invalid path parameter {key}: '{value}' is not a valid id (expected a UUID)")
                    }
                    ErrorKind::ParseErrorAtIndex { value, .. } | ErrorKind::ParseError { value, .. } => {
                        format!("invalid path parameter: '{value}' is not a valid id (expected a UUID)")
                    }
                    other => format!("invalid path: {other}"),
                };
                Err(ApiError::status(StatusCode::BAD_REQUEST, msg))
            }
            Err(other) => Err(ApiError::status(other.status(), other.body_text())),
        }
    }
}

/// `Query` with harden's error bodies: an unknown or malformed query parameter is a 400.
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(AppQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::status(
                StatusCode::BAD_REQUEST,
                format!("invalid query: {}", serde_reason(&e.body_text())),
            )),
            Err(other) => Err(ApiError::status(other.status(), other.body_text())),
        }
    }
}

/// The API key a request presents (see [`ApiCredential`]), as the credential index takes it.
pub fn presented<'h>(credential: &ApiCredential<'h>) -> Presented<'h> {
    match credential.secret {
        None => Presented::Key(credential.key),
        Some(secret) => Presented::Pair { key: credential.key, secret },
    }
}

/// Documents the two forms of an API key on every operation of `doc` that takes one: the key
/// alone (`apiKey`: `X-Api-Key: hk_…`), or the Cloud API's pair (`apiKeyId` with `apiKeySecret`:
/// `X-API-Key: hkid_…` and `X-API-Secret: hk_…`), each requirement alongside whatever else the
/// operation needs (the Proxy's `userSecret`).
pub fn document_api_keys(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
    let components = doc.components.get_or_insert_with(Default::default);
    let scheme =
        |name: &str, text: &str| SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, text)));
    components.add_security_scheme("apiKey", scheme("X-Api-Key", "An API key (`hk_…`) on its own."));
    components.add_security_scheme(
        "apiKeyId",
        scheme("X-API-Key", "The Cloud API's key pair: the key's public identifier (`hkid_…`, the `key` of its creation), with `X-API-Secret`."),
    );
    components.add_security_scheme(
        "apiKeySecret",
        scheme(
            "X-API-Secret",
            "The Cloud API's key pair: the key's secret (`hk_…`, shown once at its creation), with `X-API-Key`.",
        ),
    );
    for op in crate::rate_limit::operations_mut(doc) {
        let Some(security) = op.security.as_mut() else { continue };
        let mut pairs = Vec::new();
        for requirement in security.iter() {
            let names: std::collections::BTreeMap<String, Vec<String>> =
                serde_json::from_value(serde_json::to_value(requirement).unwrap_or_default()).unwrap_or_default();
            if !names.contains_key("apiKey") {
                continue;
            }
            let pair = names.keys().filter(|n| *n != "apiKey").fold(
                SecurityRequirement::new("apiKeyId", Vec::<String>::new()).add("apiKeySecret", Vec::<String>::new()),
                |pair, other| pair.add(other.as_str(), Vec::<String>::new()),
            );
            pairs.push(pair);
        }
        security.extend(pairs);
    }
}

/// The authenticated caller of a request (from `X-Api-Key`), and the request's id for the events it
/// causes.
pub struct Caller {
    pub principal: Principal,
    pub request_id: Option<String>,
}

impl Caller {
    /// Metadata for the events this request appends.
    pub fn meta(&self) -> Meta {
        Meta {
            org_id: self.principal.org_id,
            actor: Some(self.principal.user_id),
            request_id: self.request_id.clone(),
            ..Meta::default()
        }
    }
}

impl Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let credential = ApiCredential::from_headers(&parts.headers)?;
        let principal = state
            .harden
            .authenticate(presented(&credential))
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
        state.key_usage.record(principal.key_id, chrono::Utc::now());
        let request_id = parts.headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Caller { principal, request_id })
    }
}

/// Addresses (single or CIDR) of the load balancers and proxies in front of harden, whose
/// `X-Forwarded-For` is believed. Nobody else's is: a client could write anything there.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// A comma-separated list such as `127.0.0.1, 10.0.0.0/8, fd00::/8`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, bits) = match item.split_once('/') {
                Some((addr, bits)) => (addr, Some(bits)),
                None => (item, None),
            };
            let addr: IpAddr = addr.parse().map_err(|_| format!("'{item}' is not an IP address or CIDR block"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("'{item}' has an invalid prefix length"))?,
            };
            nets.push((addr, bits));
        }
        Ok(Self(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }

    /// The client's address: the peer, unless the peer is a trusted proxy; then the nearest address
    /// in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        // Walk from the nearest hop outwards: each trusted hop vouches for the one before it. A hop
        // that is not an address (garbage, or `ip:port`) ends the walk at the last vouched address.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.contains(ip) => client = ip.to_canonical(),
                Ok(ip) => return ip.to_canonical(),
                Err(_) => return client,
            }
        }
        client
    }
}

/// The address a request came from (see [`TrustedProxies`]), and its request id.
pub struct Client {
    pub addr: IpAddr,
    pub request_id: Option<String>,
}

impl Client {
    /// Metadata for the events an anonymous request appends.
    pub fn meta(&self) -> Meta {
        Meta { org_id: None, actor: None, request_id: self.request_id.clone(), ..Meta::default() }
    }
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let request_id = parts.headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Client { addr: state.trusted_proxies.client(peer, &parts.headers), request_id })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.1.2.3"));
        // From a trusted proxy: the nearest untrusted hop.
        assert_eq!(trusted.client(ip("127.0.0.1"), &headers), ip("203.0.113.9"));
        assert_eq!(trusted.client(ip("10.9.9.9"), &headers), ip("203.0.113.9"));
        // From anyone else: the peer, whatever the header says.
        assert_eq!(trusted.client(ip("198.51.100.7"), &headers), ip("198.51.100.7"));
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), &headers), ip("127.0.0.1"));
        // No header: the peer.
        assert_eq!(trusted.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        // IPv4-mapped IPv6 peers are matched as IPv4.
        assert_eq!(trusted.client(ip("::ffff:127.0.0.1"), &headers), ip("203.0.113.9"));
        // A hop that is not an address ends the walk: the client cannot pick a bucket with garbage.
        let mut garbage = HeaderMap::new();
        garbage.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, junk, 10.1.2.3"));
        assert_eq!(trusted.client(ip("127.0.0.1"), &garbage), ip("10.1.2.3"));
        garbage.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1:4444"));
        assert_eq!(trusted.client(ip("127.0.0.1"), &garbage), ip("127.0.0.1"));
    }

    #[test]
    fn proxy_lists_are_checked() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("nonsense").is_err());
        assert!(TrustedProxies::parse("fd00::/8, ").unwrap().contains(ip("fd12::1")));
        assert!(!TrustedProxies::parse("10.0.0.0/8").unwrap().contains(ip("11.0.0.1")));
    }
}
