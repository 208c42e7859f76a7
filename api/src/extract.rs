//! Extractors whose failures are `{ "error": ... }` bodies with a 4xx status, never axum's plain
//! text: JSON bodies, path parameters, and the calling principal.

use std::ops::Deref;

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use harden_commands::{Meta, Principal};

use crate::error::ApiError;
use crate::state::AppState;

pub const API_KEY_HEADER: &str = "x-api-key";
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

/// The `X-Api-Key` header, as presented (401 if it is missing or not text).
pub fn api_key_header(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(API_KEY_HEADER)
        .ok_or_else(|| ApiError::unauthorized("missing X-Api-Key header"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid API key"))
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
        Meta { org_id: self.principal.org_id, actor: Some(self.principal.user_id), request_id: self.request_id.clone() }
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
        let presented = api_key_header(&parts.headers)?;
        let principal = state
            .harden
            .authenticate(presented.trim())
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
        let request_id = parts.headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Caller { principal, request_id })
    }
}
