//! `/v1/recovery`: trusted-user recovery that actually recovers, safely.
//!
//! 1. The owner names a trustee: their private keys, XOR-masked by a key stretched from an answer
//!    only they know (when `xorApplied`), encrypted to the trustee's public keys.
//! 2. The owner forgot their secret; the trustee restores: opens the share with their own keys and
//!    seals the (still masked) keys under a temporary secret they give the owner out of band.
//! 3. The owner completes: temporary secret + answer + new secret, in one step that checks the keys
//!    are really theirs and installs them under the new secret. Until then the old keys stay.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use harden_client::recovery::{check_answer, TrusteeTerms};

use crate::backend::recovery::{RestoreResponse, TrusteeShare};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppBytes, AppJson, AppPath};
use crate::proxy::keys::KeysResponse;
use crate::proxy::kv::{unlocked, UnlockErrors};
use crate::proxy::{ProxyState, NEW_USER_SECRET_HEADER, RECOVERY_SECRET_HEADER};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrusteeRequest {
    /// Mask the keys with a key stretched from `xorAnswer`, so the trustee alone cannot use them.
    /// On unless turned off explicitly (then the trustee alone could use the keys).
    #[serde(default = "masked_by_default")]
    pub xor_applied: bool,
    /// A reminder of the answer, stored in clear (never the answer itself).
    pub xor_salt_hint: Option<String>,
    /// The answer; required with `xorApplied`, never stored or sent to the Backend.
    pub xor_answer: Option<String>,
    /// Shares a client made itself (the seed's shape): passed to the Backend as they are.
    pub encrypted_private_key_ecc_share_b64: Option<String>,
    pub encrypted_private_key_kyber_share_b64: Option<String>,
    /// The trustee's key fingerprint as you compared it with them: required to accept keys that
    /// changed since you last encrypted to them, or keys published without a signed bundle.
    #[serde(default)]
    pub expected_fingerprint: Option<String>,
}

/// A restore a client made itself (the seed's shape), passed to the Backend as it is.
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreRequest {
    pub encrypted_private_key_ecc_b64: Option<String>,
    pub encrypted_private_key_kyber_b64: Option<String>,
    #[serde(default)]
    pub used_xor: bool,
    pub xor_salt_hint: Option<String>,
}

fn masked_by_default() -> bool {
    true
}

pub use harden_client::recovery::MIN_ANSWER_CHARS;

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteRequest {
    /// The answer, when the share was masked.
    pub xor_answer: Option<String>,
}

fn json_response(status: StatusCode, body: axum::body::Bytes) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Both halves of material a client made itself, or neither (then the Proxy makes it); one alone
/// is a 400, never silently dropped.
fn both_or_neither<'a>(
    ecc: &'a Option<String>,
    kyber: &'a Option<String>,
) -> Result<Option<(&'a str, &'a str)>, ApiError> {
    match (ecc, kyber) {
        (Some(ecc), Some(kyber)) => Ok(Some((ecc, kyber))),
        (None, None) => Ok(None),
        _ => Err(ApiError::status(
            StatusCode::BAD_REQUEST,
            "send both encrypted private key fields (material made by the client) or neither",
        )),
    }
}

/// Names a trustee and stores the recovery share made for them (their keys encrypted to the
/// trustee, masked by the answer when `xorApplied`).
#[utoipa::path(put, path = "/v1/recovery/trustees/{trusteeUserId}", tag = "recovery", params(("trusteeUserId" = Uuid, Path)),
    request_body = TrusteeRequest, security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = TrusteeShare), UnlockErrors, JsonBodyErrors, (status = 404, body = ErrorBody)))]
pub async fn set_trustee(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(trustee): AppPath<Uuid>,
    AppJson(req): AppJson<TrusteeRequest>,
) -> Result<Response, ApiError> {
    harden_commands::recovery::parse_hint(req.xor_salt_hint.as_deref())?;
    if let Some((ecc, kyber)) =
        both_or_neither(&req.encrypted_private_key_ecc_share_b64, &req.encrypted_private_key_kyber_share_b64)?
    {
        // Made by the client: no secret needed, nothing to compute.
        let api_key = ProxyState::api_key(&headers)?;
        let body = json!({
            "encryptedPrivateKeyEccShareB64": ecc,
            "encryptedPrivateKeyKyberShareB64": kyber,
            "xorApplied": req.xor_applied,
            "xorSaltHint": req.xor_salt_hint,
        });
        let path = ["users", "me", "recovery", "trustees", &trustee.to_string()];
        let answer = state.vault.backend.call(Method::PUT, &path, None, api_key, Some(&body), &[]).await?.ok()?;
        return Ok(json_response(answer.status, answer.body));
    }
    check_answer(req.xor_applied, req.xor_answer.as_deref())?;
    let caller = unlocked(&state, &headers).await?;
    let terms = TrusteeTerms {
        trustee,
        xor_applied: req.xor_applied,
        xor_answer: req.xor_answer.as_deref(),
        xor_salt_hint: req.xor_salt_hint.as_deref(),
        expected_fingerprint: req.expected_fingerprint.as_deref(),
    };
    let answer = state.vault.set_trustee(&caller, terms).await?;
    Ok(json_response(answer.status, answer.body))
}

/// A trustee restores an owner's keys: opens the share meant for them and seals the (still masked)
/// keys under `X-Recovery-Secret`, a temporary secret they give the owner out of band.
#[utoipa::path(post, path = "/v1/recovery/restore/{ownerUserId}", tag = "recovery", params(("ownerUserId" = Uuid, Path),
        ("X-Recovery-Secret" = String, Header)),
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = RestoreResponse), UnlockErrors, (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub async fn restore(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(owner): AppPath<Uuid>,
    AppBytes(body): AppBytes,
) -> Result<Response, ApiError> {
    let made_by_client = if body.iter().all(u8::is_ascii_whitespace) {
        RestoreRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))?
    };
    let RestoreRequest { encrypted_private_key_ecc_b64, encrypted_private_key_kyber_b64, used_xor, xor_salt_hint } =
        made_by_client;
    harden_commands::recovery::parse_hint(xor_salt_hint.as_deref())?;
    if let Some((ecc, kyber)) = both_or_neither(&encrypted_private_key_ecc_b64, &encrypted_private_key_kyber_b64)? {
        // Made by the client (the seed's shape): passed on as it is.
        let api_key = ProxyState::api_key(&headers)?;
        let body = json!({
            "encryptedPrivateKeyEccB64": ecc,
            "encryptedPrivateKeyKyberB64": kyber,
            "usedXor": used_xor,
            "xorSaltHint": xor_salt_hint,
        });
        let path = ["users", "me", "recovery", "restore", &owner.to_string()];
        let answer = state.vault.backend.call(Method::POST, &path, None, api_key, Some(&body), &[]).await?.ok()?;
        return Ok(json_response(answer.status, answer.body));
    }
    let temporary = state.secret(&headers, RECOVERY_SECRET_HEADER, "X-Recovery-Secret", true)?;
    let caller = unlocked(&state, &headers).await?;
    let answer = state.vault.restore_for(&caller, owner, temporary).await?;
    Ok(json_response(answer.status, answer.body))
}

/// The owner completes recovery: `X-Recovery-Secret` (the trustee's temporary secret), the answer
/// (when masked) and `X-New-User-Secret`. The keys must be the owner's own (their public keys
/// match); they are sealed under the new secret, which from now on is the only one that works.
#[utoipa::path(post, path = "/v1/recovery/complete", tag = "recovery", request_body = CompleteRequest,
    params(("X-Recovery-Secret" = String, Header), ("X-New-User-Secret" = String, Header)), security(("apiKey" = [])),
    responses((status = 200, body = KeysResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub async fn complete(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppJson(req): AppJson<CompleteRequest>,
) -> Result<Json<KeysResponse>, ApiError> {
    let api_key = ProxyState::api_key(&headers)?;
    let temporary = state.secret(&headers, RECOVERY_SECRET_HEADER, "X-Recovery-Secret", false)?;
    let new_secret = state.secret(&headers, NEW_USER_SECRET_HEADER, "X-New-User-Secret", true)?;
    Ok(Json(state.vault.complete_recovery(api_key, temporary, new_secret, req.xor_answer.as_deref()).await?))
}
