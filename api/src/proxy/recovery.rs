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
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use harden_domain::crypto;
use harden_domain::recovery_crypto::{self, MaskHeader};

use crate::backend::recovery::{RestoreResponse, TrusteeShare};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppBytes, AppJson, AppPath};
use crate::proxy::keys::KeysResponse;
use crate::proxy::kv::{backend_public_keys, decode, unlocked, UnlockErrors};
use crate::proxy::{random, ProxyState, NEW_USER_SECRET_HEADER, RECOVERY_SECRET_HEADER};

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

/// Shortest answer accepted (after trimming): each guess costs an Argon2id run, but a trustee can
/// guess offline.
pub const MIN_ANSWER_CHARS: usize = 8;

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteRequest {
    /// The answer, when the share was masked.
    pub xor_answer: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerShare {
    encrypted_private_key_ecc_share_b64: String,
    encrypted_private_key_kyber_share_b64: String,
    xor_salt_hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    encrypted_private_key_ecc_b64: String,
    encrypted_private_key_kyber_b64: String,
    restore_id: Uuid,
    challenge_b64: String,
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
        let answer = state.backend.call(Method::PUT, &path, None, api_key, Some(&body), &[]).await?.ok()?;
        return Ok(json_response(answer.status, answer.body));
    }
    let answer = match (req.xor_applied, req.xor_answer.as_deref().map(str::trim)) {
        (true, Some(a)) if a.chars().count() >= MIN_ANSWER_CHARS => Some(a.to_owned()),
        (true, _) => {
            return Err(ApiError::status(
                StatusCode::BAD_REQUEST,
                format!(
                    "xorAnswer (at least {MIN_ANSWER_CHARS} characters) is required unless xorApplied is false, which would let the trustee alone use your keys"
                ),
            ))
        }
        (false, Some(_)) => return Err(ApiError::status(StatusCode::BAD_REQUEST, "xorAnswer needs xorApplied: true")),
        (false, None) => None,
    };
    let caller = unlocked(&state, &headers).await?;
    if trustee == caller.me.id {
        return Err(ApiError::status(StatusCode::BAD_REQUEST, "you cannot be your own trustee"));
    }
    // The private keys go to the trustee's keys only as a verified bundle and the owner's pins vouch for them.
    let trustee_keys =
        crate::proxy::pins::verified_recipient(&state, &caller, trustee, req.expected_fingerprint.as_deref()).await?;
    let (header, masked) = match &answer {
        None => (MaskHeader::NONE, None),
        Some(answer) => {
            let header = MaskHeader { masked: true, params: state.unlocker.params(), salt: random() };
            let normalized = recovery_crypto::normalize_answer(answer);
            let mask = state.unlocker.derive(&normalized, header.salt, header.params).await?;
            (header, Some(recovery_crypto::apply_mask(&caller.keys.keys, &mask)))
        }
    };
    let keys = masked.as_ref().unwrap_or(&caller.keys.keys);
    let randomness = [(&random(), &random(), random(), random()), (&random(), &random(), random(), random())];
    let (ecc, kyber) =
        recovery_crypto::make_share(&trustee_keys, trustee, caller.org, caller.me.id, keys, &header, randomness);
    let body = json!({
        "encryptedPrivateKeyEccShareB64": STANDARD.encode(ecc),
        "encryptedPrivateKeyKyberShareB64": STANDARD.encode(kyber),
        "xorApplied": req.xor_applied,
        "xorSaltHint": req.xor_salt_hint,
    });
    let path = ["users", "me", "recovery", "trustees", &trustee.to_string()];
    let answer = state.backend.call(Method::PUT, &path, None, caller.api_key, Some(&body), &[]).await?.ok()?;
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
        let answer = state.backend.call(Method::POST, &path, None, api_key, Some(&body), &[]).await?.ok()?;
        return Ok(json_response(answer.status, answer.body));
    }
    let temporary = state.secret(&headers, RECOVERY_SECRET_HEADER, "X-Recovery-Secret", true)?;
    let caller = unlocked(&state, &headers).await?;
    let share: OwnerShare = state
        .backend
        .call(Method::GET, &["users", "me", "recovery", "shares", &owner.to_string()], None, caller.api_key, None, &[])
        .await?
        .ok()?
        .json()?;
    let (masked, header) = recovery_crypto::open_share(
        &caller.keys.keys,
        caller.me.id,
        caller.org,
        owner,
        &decode("encryptedPrivateKeyEccShareB64", &share.encrypted_private_key_ecc_share_b64)?,
        &decode("encryptedPrivateKeyKyberShareB64", &share.encrypted_private_key_kyber_share_b64)?,
    )
    .map_err(|_| ApiError::status(StatusCode::CONFLICT, "the recovery share cannot be opened with this user's keys"))?;
    let kek = state.unlocker.derive(temporary, random(), state.unlocker.params()).await?;
    let (ecc, kyber) = recovery_crypto::seal_restore(&kek, owner, &masked, &header, [random(), random()]);
    let body = json!({
        "encryptedPrivateKeyEccB64": STANDARD.encode(ecc),
        "encryptedPrivateKeyKyberB64": STANDARD.encode(kyber),
        "usedXor": header.masked,
        "xorSaltHint": share.xor_salt_hint,
    });
    let path = ["users", "me", "recovery", "restore", &owner.to_string()];
    let answer = state.backend.call(Method::POST, &path, None, caller.api_key, Some(&body), &[]).await?.ok()?;
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
    let me = state.backend.me(api_key).await?;
    let pending: Pending = state
        .backend
        .call(Method::GET, &["users", "me", "recovery", "pending"], None, api_key, None, &[])
        .await?
        .ok()?
        .json()?;
    let (Some(ecc_pub), Some(kyber_pub)) = (&me.public_key_ecc_b64, &me.public_key_kyber_b64) else {
        return Err(ApiError::status(StatusCode::CONFLICT, crate::proxy::unlock::NO_KEYS));
    };
    let expected = backend_public_keys(ecc_pub, kyber_pub)?;
    let ecc = decode("encryptedPrivateKeyEccB64", &pending.encrypted_private_key_ecc_b64)?;
    let kyber = decode("encryptedPrivateKeyKyberB64", &pending.encrypted_private_key_kyber_b64)?;
    let wrong = || ApiError::status(StatusCode::UNAUTHORIZED, "the temporary secret or the answer is wrong");
    let (header, params, salt) = recovery_crypto::restore_headers(&ecc).map_err(|_| wrong())?;
    let answer = match (header.masked, req.xor_answer.as_deref()) {
        (true, None) => {
            return Err(ApiError::status(StatusCode::BAD_REQUEST, "this recovery needs the answer: xorAnswer"))
        }
        (true, Some(a)) => Some(recovery_crypto::normalize_answer(a)),
        (false, _) => None,
    };
    // Guesses of the temporary secret or the answer count like wrong unlocks.
    state.unlocker.attempt(me.id)?;
    let temporary_kek = state.unlocker.derive(temporary, salt, params).await?;
    let mask = match &answer {
        Some(answer) => Some(state.unlocker.derive(answer, header.salt, header.params).await?),
        None => None,
    };
    let keys = recovery_crypto::open_restore(&temporary_kek, me.id, &ecc, &kyber, mask.as_ref(), &expected)
        .map_err(|_| wrong())?;
    state.unlocker.succeeded(me.id);
    // The restored keys open the Backend's challenge: the proof that they are the owner's.
    let org = me.org_id.ok_or_else(|| ApiError::status(StatusCode::FORBIDDEN, "the global admin has no recovery"))?;
    let context = harden_commands::recovery::challenge_context(org.into(), me.id.into(), &pending.restore_id);
    let answer = crypto::open_sealed(&keys, me.id, &context, &decode("challengeB64", &pending.challenge_b64)?)
        .map_err(|_| anyhow::anyhow!("the Backend's recovery challenge does not open with the restored keys"))?;
    let kek = state.unlocker.derive(new_secret, random(), state.unlocker.params()).await?;
    let (sealed_ecc, sealed_kyber) = crypto::seal_private_keys(&kek, me.id, &keys, [random(), random()]);
    let proof = crypto::seal_proof(&kek, me.id);
    let body = json!({
        "encryptedPrivateKeyEccB64": STANDARD.encode(sealed_ecc),
        "encryptedPrivateKeyKyberB64": STANDARD.encode(sealed_kyber),
        "sealProofB64": STANDARD.encode(proof.as_ref()),
        "challengeAnswerB64": STANDARD.encode(answer.as_slice()),
    });
    state
        .backend
        .call(Method::POST, &["users", "me", "recovery", "complete"], None, api_key, Some(&body), &[])
        .await?
        .ok()?;
    state.unlocker.forget(me.id);
    Ok(Json(KeysResponse {
        public_key_ecc_b64: STANDARD.encode(expected.ecc_bytes()),
        public_key_kyber_b64: STANDARD.encode(expected.kyber_bytes()),
    }))
}
