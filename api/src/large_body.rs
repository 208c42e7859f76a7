//! Bodies that carry a whole file as base64 in one JSON field, handled so that a request holds the
//! file in memory once: the body is read into one buffer (bounded, 413 past the limit, refused on
//! `Content-Length` before reading), the field is decoded in place in that buffer, and the answer's
//! base64 is encoded chunk by chunk as it is sent.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;

use crate::error::ApiError;

pub use harden_client::body::{
    b64_len, chunks, decode_in_place, document_with_b64_tail, B64Field, ENCODE_STEP, FIELDS_ROOM,
};

fn too_large(limit: usize) -> ApiError {
    ApiError::status(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large: at most {limit} bytes are accepted here (the largest plan's file size, in base64, with its fields)"),
    )
}

/// Reads a JSON body of at most `limit` bytes into one buffer.
pub async fn read_json_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a JSON body with Content-Type: application/json",
        ));
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if declared.is_some_and(|n: usize| n > limit) {
        return Err(too_large(limit));
    }
    read_limited(body.into_data_stream(), declared, limit)
        .await?
        .ok_or_else(|| ApiError::status(StatusCode::BAD_REQUEST, "the request body was cut off"))
}

/// Collects a byte stream into one buffer, refusing more than `limit` bytes (Ok(None): the stream failed).
pub async fn read_limited<S, E>(stream: S, expected: Option<usize>, limit: usize) -> Result<Option<Vec<u8>>, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    harden_client::backend::read_limited(stream, expected, limit).await.map_err(|_| too_large(limit))
}

/// [`document_with_b64_tail`] as an `application/json` answer with its `Content-Length`.
pub fn json_response_with_b64_tail<S, E>(fields: serde_json::Value, name: &str, data: S, data_len: usize) -> Response
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<axum::BoxError> + Send + 'static,
{
    let (length, body) = document_with_b64_tail(fields, name, data, data_len);
    (
        [(header::CONTENT_TYPE, "application/json".to_owned()), (header::CONTENT_LENGTH, length.to_string())],
        Body::from_stream(body),
    )
        .into_response()
}
