//! The one place where failures become HTTP statuses.
//!
//! rule violation → 400, missing or bad credentials → 401, role → 403, missing or another tenant's
//! → 404, state conflict → 409, too many concurrent writers or the database out of reach → 503 with
//! `Retry-After`, anything else → an opaque 500 whose cause is logged here, inside the request's
//! span, and never sent.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use harden_commands::Error as CommandError;

/// Every error body harden sends.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
    /// On a KV check-and-set conflict: the version that is current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// The answers every route that reads a JSON body ([`crate::extract::AppJson`]) can give before
/// its handler runs. A route lists it in `responses(...)` beside its own answers, so its document
/// names them (schemathesis checks that every status a route answers is documented).
#[derive(IntoResponses)]
pub enum JsonBodyErrors {
    /// Malformed or mistyped JSON, an unknown field, or a value that breaks a rule.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// The body is larger than the limit (`HARDEN_MAX_BODY_BYTES`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body was not sent with `Content-Type: application/json`.
    #[response(status = 415)]
    NotJson(ErrorBody),
}

#[derive(Debug)]
pub enum ApiError {
    /// A command or query outcome.
    Command(CommandError),
    /// Request-level problems found before any command: auth, parsing, limits.
    Status(StatusCode, String),
    /// The Proxy passes a Backend error on as it is: its status and its JSON body.
    Upstream(StatusCode, axum::body::Bytes),
}

impl ApiError {
    pub fn status(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError::Status(status, msg.into())
    }
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        ApiError::Status(StatusCode::UNAUTHORIZED, msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::Command(CommandError::not_found(msg))
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        ApiError::Command(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Command(e.into())
    }
}

impl From<harden_client::Error> for ApiError {
    fn from(e: harden_client::Error) -> Self {
        match e {
            harden_client::Error::Status(status, msg) => ApiError::Status(status, msg),
            harden_client::Error::Upstream(status, body) => ApiError::Upstream(status, body),
            harden_client::Error::Internal(e) => e.into(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Command(e.into())
    }
}

fn body(status: StatusCode, msg: String) -> Response {
    (status, Json(ErrorBody { error: msg, current_version: None })).into_response()
}

/// 503 with `Retry-After: 1`: nothing was wrong with the request, and it may succeed soon.
fn retry_soon(msg: String) -> Response {
    let mut response = body(StatusCode::SERVICE_UNAVAILABLE, msg);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Status(status, msg) => body(status, msg),
            ApiError::Upstream(status, bytes) => {
                (status, [(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"))], bytes)
                    .into_response()
            }
            ApiError::Command(e) => match e {
                CommandError::Invalid(msg) => body(StatusCode::BAD_REQUEST, msg),
                CommandError::Unauthorized(msg) => body(StatusCode::UNAUTHORIZED, msg),
                CommandError::Forbidden(msg) => body(StatusCode::FORBIDDEN, msg),
                CommandError::NotFound(msg) => body(StatusCode::NOT_FOUND, msg),
                CommandError::Conflict(msg) => body(StatusCode::CONFLICT, msg),
                CommandError::Gone(msg) => body(StatusCode::GONE, msg),
                CommandError::PaymentRefused(msg) => body(StatusCode::PAYMENT_REQUIRED, msg),
                CommandError::Upstream(msg) => body(StatusCode::BAD_GATEWAY, msg),
                CommandError::Throttled { retry_after_secs } => {
                    let mut response =
                        body(StatusCode::TOO_MANY_REQUESTS, CommandError::Throttled { retry_after_secs }.to_string());
                    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after_secs));
                    response
                }
                CommandError::VersionConflict { current } => {
                    let error = CommandError::VersionConflict { current }.to_string();
                    (StatusCode::CONFLICT, Json(ErrorBody { error, current_version: Some(current) })).into_response()
                }
                CommandError::Busy => retry_soon(CommandError::Busy.to_string()),
                CommandError::Unavailable(cause) => {
                    tracing::warn!(error = format!("{cause:#}"), "the database is unavailable");
                    retry_soon(CommandError::Unavailable(cause).to_string())
                }
                CommandError::Internal(cause) => {
                    tracing::error!(error = format!("{cause:#}"), "request failed");
                    body(StatusCode::INTERNAL_SERVER_ERROR, "internal server error".to_owned())
                }
            },
        }
    }
}
