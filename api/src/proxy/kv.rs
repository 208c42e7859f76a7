//! `/v1/kv`: values encrypted and decrypted here, stored as ciphertext on the Backend.
//!
//! Each record has its own data key, kept across its versions: a write to an existing record
//! unwraps the current key and reuses it (so shares, which wrap that key, follow updates); a new
//! record draws one. Every version gets a fresh nonce, and the associated data binds the value to
//! its org, owner and key name.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

use harden_domain::crypto::{self, DataKey, RecordContext};
use harden_domain::secret::KeyName;

use crate::backend::kv::{expected_version, KvListResponse, KvWriteResponse, ListQuery, VersionQuery};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::proxy::client::Me;
use crate::proxy::unlock::{UnlockedKeys, NO_KEYS};
use crate::proxy::ApiCredential;
use crate::proxy::{forward, random, ProxyState, USER_SECRET_HEADER};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutValue {
    /// The plaintext value, base64.
    pub value_b64: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueResponse {
    pub key: String,
    pub value_b64: String,
    pub version: i64,
    /// The owner's own keys sealed this version's data key and the value is bound to its version:
    /// `false` for a value someone else encrypted to the owner (a write with the API key alone, or a
    /// record forged in the store) or one written before keys were sealed. Such a key is never used
    /// again: the owner's next write starts a fresh one.
    pub owner_sealed: bool,
}

/// The stored record as the Backend returns it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stored {
    pub version: i64,
    pub ciphertext_b64: String,
    pub encrypted_aes_key_ecc_b64: String,
    pub encrypted_aes_key_kyber_b64: String,
    #[serde(default)]
    pub key_epoch: u64,
    #[serde(default)]
    pub rotation_pending: bool,
}

pub(crate) struct Caller<'h> {
    pub api_key: ApiCredential<'h>,
    pub me: Me,
    pub org: Uuid,
    pub keys: std::sync::Arc<UnlockedKeys>,
}

impl Caller<'_> {
    /// The caller's public keys, from the private keys just unlocked, after checking that the
    /// Backend shows the same: a tampered directory must not be able to redirect a data key.
    pub fn own_public_keys(&self) -> Result<crypto::PublicKeys, ApiError> {
        let (Some(ecc), Some(kyber)) = (&self.me.public_key_ecc_b64, &self.me.public_key_kyber_b64) else {
            return Err(ApiError::status(StatusCode::CONFLICT, NO_KEYS));
        };
        let public = self.keys.keys.public_keys();
        if decode("publicKeyEccB64", ecc)? != public.ecc_bytes()
            || decode("publicKeyKyberB64", kyber)? != public.kyber_bytes()
        {
            return Err(anyhow::anyhow!("the Backend's public keys do not match the user's private keys").into());
        }
        Ok(public)
    }

    pub fn context<'n>(&self, name: &'n KeyName) -> RecordContext<'n> {
        RecordContext { kind: "kv", org: self.org, owner: self.me.id, name: name.as_str().as_bytes() }
    }
}

/// What every route that unlocks the caller's keys ([`unlocked`]) can answer before its own work.
/// Routes list it in `responses(...)` beside their own answers.
#[derive(IntoResponses)]
pub enum UnlockErrors {
    /// `X-User-Secret` is missing or not visible ASCII.
    #[response(status = 400)]
    MissingSecret(ErrorBody),
    /// No or an unknown API key, or a user secret that does not open the keys.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The global admin, who has no keys and no records.
    #[response(status = 403)]
    GlobalAdmin(ErrorBody),
    /// The user has no keys yet (`POST /v1/keys/generate`), or a stored value does not open with them.
    #[response(status = 409)]
    NoKeys(ErrorBody),
    /// Five failed unlocks of this user within a minute.
    #[response(status = 429)]
    Throttled(ErrorBody),
    /// The Backend could not be reached.
    #[response(status = 502)]
    BackendUnreachable(ErrorBody),
}

/// The caller, their org and their unlocked keys.
pub(crate) async fn unlocked<'h>(state: &ProxyState, headers: &'h HeaderMap) -> Result<Caller<'h>, ApiError> {
    let api_key = ProxyState::api_key(headers)?;
    let secret = state.secret(headers, USER_SECRET_HEADER, "X-User-Secret", false)?;
    let me = state.backend.me(api_key).await?;
    let org = me.org_id.ok_or_else(|| ApiError::status(StatusCode::FORBIDDEN, "the global admin has no KV records"))?;
    let keys = state.unlocker.unlock(&me, secret).await?;
    // Keys made before bundles existed: publish the bundle now, so others can verify them.
    if me.key_bundle_b64.is_none() && me.public_key_ecc_b64.is_some() {
        if let Err(e) = crate::proxy::pins::publish_own(state, api_key, &keys.keys, org, me.id).await {
            tracing::warn!(error = ?e, "could not publish the user's key bundle; the next unlock tries again");
        }
    }
    Ok(Caller { api_key, me, org, keys })
}

/// Public keys as the Backend shows them (`publicKeyEccB64`, `publicKeyKyberB64`).
pub(crate) fn backend_public_keys(ecc: &str, kyber: &str) -> Result<crypto::PublicKeys, ApiError> {
    crypto::PublicKeys::from_bytes(&decode("publicKeyEccB64", ecc)?, &decode("publicKeyKyberB64", kyber)?)
        .map_err(|_| anyhow::anyhow!("the Backend returned malformed public keys").into())
}

pub(crate) fn decode(field: &str, b64: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD.decode(b64).map_err(|_| anyhow::anyhow!("the Backend returned invalid base64 in {field}").into())
}

pub(crate) fn unwrap_key(
    caller: &Caller<'_>,
    context: &RecordContext<'_>,
    stored: &Stored,
) -> Result<DataKey, ApiError> {
    let ecc = decode("encryptedAesKeyEccB64", &stored.encrypted_aes_key_ecc_b64)?;
    let kyber = decode("encryptedAesKeyKyberB64", &stored.encrypted_aes_key_kyber_b64)?;
    crypto::unwrap_data_key(&caller.keys.keys, caller.me.id, context, &ecc, &kyber)
        .map_err(|_| ApiError::status(StatusCode::CONFLICT, "the stored value cannot be opened with this user's keys"))
}

/// Who writes a value: its owner with their keys unlocked (`X-User-Secret`), or a holder of the
/// owner's API key alone (a write-only service such as a CI job), who encrypts to the owner's
/// public keys with a fresh data key and can neither read the value back nor seal the key.
pub(crate) enum Writer<'h> {
    Owner(Caller<'h>),
    KeyOnly { api_key: ApiCredential<'h>, me: Me, org: Uuid },
}

impl<'h> Writer<'h> {
    pub(crate) async fn of(state: &ProxyState, headers: &'h HeaderMap) -> Result<Writer<'h>, ApiError> {
        if headers.contains_key(USER_SECRET_HEADER) {
            return Ok(Writer::Owner(unlocked(state, headers).await?));
        }
        let api_key = ProxyState::api_key(headers)?;
        let me = state.backend.me(api_key).await?;
        let org =
            me.org_id.ok_or_else(|| ApiError::status(StatusCode::FORBIDDEN, "the global admin has no KV records"))?;
        Ok(Writer::KeyOnly { api_key, me, org })
    }

    pub(crate) fn api_key(&self) -> ApiCredential<'h> {
        match self {
            Writer::Owner(caller) => caller.api_key,
            Writer::KeyOnly { api_key, .. } => *api_key,
        }
    }

    fn me(&self) -> &Me {
        match self {
            Writer::Owner(caller) => &caller.me,
            Writer::KeyOnly { me, .. } => me,
        }
    }

    pub(crate) fn context<'n>(&self, name: &'n KeyName) -> RecordContext<'n> {
        let org = match self {
            Writer::Owner(caller) => caller.org,
            Writer::KeyOnly { org, .. } => *org,
        };
        RecordContext { kind: "kv", org, owner: self.me().id, name: name.as_str().as_bytes() }
    }

    /// The owner's own wrap of `key` for `epoch`: owner-sealed when the owner's keys are unlocked,
    /// a plain wrap to the owner's public keys (as the Backend shows them) when only the API key is.
    pub(crate) fn wrap_for_owner(
        &self,
        name: &KeyName,
        epoch: u64,
        key: &DataKey,
    ) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
        let context = self.context(name);
        match self {
            Writer::Owner(caller) => {
                caller.own_public_keys()?;
                Ok(crypto::wrap_for_owner(&caller.keys.keys, &context, epoch, key, &random(), random()))
            }
            Writer::KeyOnly { me, .. } => {
                let (Some(ecc), Some(kyber)) = (&me.public_key_ecc_b64, &me.public_key_kyber_b64) else {
                    return Err(ApiError::status(StatusCode::CONFLICT, NO_KEYS));
                };
                let public = backend_public_keys(ecc, kyber)?;
                Ok(crypto::wrap_data_key(&public, me.id, &context, key, &random(), random()))
            }
        }
    }

    /// The record's data key, when it may be used again: the owner's keys are unlocked and the
    /// stored wrap carries a valid owner-seal tag for its epoch. A key someone else wrapped to the
    /// owner (anyone can: a wrap needs only public keys) is never reused.
    fn sealed_key(&self, name: &KeyName, stored: &Stored) -> Result<Option<DataKey>, ApiError> {
        let Writer::Owner(caller) = self else { return Ok(None) };
        let context = caller.context(name);
        let ecc = decode("encryptedAesKeyEccB64", &stored.encrypted_aes_key_ecc_b64)?;
        let kyber = decode("encryptedAesKeyKyberB64", &stored.encrypted_aes_key_kyber_b64)?;
        if !crypto::owner_sealed(&caller.keys.keys, &context, stored.key_epoch, &ecc, &kyber) {
            return Ok(None);
        }
        Ok(Some(unwrap_key(caller, &context, stored)?))
    }
}

/// A stored value opened where the Backend says it stands (its version and key epoch), and
/// whether it was bound there (format 2). A ciphertext of another version, epoch or record written
/// back as this one does not open: 409, never an old value passed off as current.
pub(crate) fn open_value(
    key: &DataKey,
    context: &RecordContext<'_>,
    version: u64,
    epoch: u64,
    ciphertext_b64: &str,
) -> Result<(zeroize::Zeroizing<Vec<u8>>, bool), ApiError> {
    let at = crypto::VersionAt { version, epoch };
    crypto::decrypt_value_at(key, context, at, &decode("ciphertextB64", ciphertext_b64)?).map_err(|_| {
        ApiError::status(
            StatusCode::CONFLICT,
            format!("the stored value does not open as version {version} of this record: it was not written as that version (a rollback or a moved ciphertext), or not with this user's keys"),
        )
    })
}

/// The highest version the record ever had, across deletes (0 for a name never written).
async fn last_version(state: &ProxyState, writer: &Writer<'_>, name: &KeyName) -> Result<u64, ApiError> {
    #[derive(Deserialize)]
    struct Versions {
        versions: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        version: u64,
    }
    let answer =
        state.backend.call(Method::GET, &["kv", name.as_str(), "versions"], None, writer.api_key(), None, &[]).await?;
    if answer.status == StatusCode::NOT_FOUND {
        return Ok(0);
    }
    let versions: Versions = answer.ok()?.json()?;
    Ok(versions.versions.iter().map(|v| v.version).max().unwrap_or(0))
}

/// Encrypts the value and stores it as the record's next version, bound to that version. The
/// record's key is kept only when its owner sealed it; otherwise (a key someone else wrapped, a
/// value written before keys were sealed, a write with the API key alone, a share that ended) the
/// write starts a fresh key and re-wraps it to every open share. `If-Match` is passed on
/// (check-and-set, as on the Backend). Without `X-User-Secret` the value is encrypted to the
/// owner's public keys: a write-only service can store values it cannot read back.
#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv", request_body = PutValue,
    params(("key" = String, Path), ("If-Match" = Option<String>, Header, description = "expected current version")),
    security(("apiKey" = [], "userSecret" = []), ("apiKey" = [])),
    responses((status = 201, body = KvWriteResponse, description = "a new record (or a new life of a deleted one)"),
        (status = 200, body = KvWriteResponse, description = "a new version"), UnlockErrors, JsonBodyErrors))]
pub async fn put_kv(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(key): AppPath<String>,
    AppJson(body): AppJson<PutValue>,
) -> Result<Response, ApiError> {
    let name = KeyName::parse(&key).map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.0))?;
    let value = zeroize::Zeroizing::new(
        STANDARD
            .decode(&body.value_b64)
            .map_err(|_| ApiError::status(StatusCode::BAD_REQUEST, "valueB64 is not valid base64"))?,
    );
    let if_match = expected_version(&headers)?;
    let writer = Writer::of(&state, &headers).await?;
    let current = state.backend.call(Method::GET, &["kv", name.as_str()], None, writer.api_key(), None, &[]).await?;
    let stored: Option<Stored> = match current.status {
        StatusCode::NOT_FOUND => None,
        _ => Some(current.ok()?.json()?),
    };
    let answer = match stored {
        // A new record (or a new life): a fresh key, its epoch the version it becomes.
        None => {
            let version = last_version(&state, &writer, &name).await? + 1;
            let key = DataKey::from_bytes(random());
            let fields = json!({ "freshKey": true, "version": version });
            write_version(
                &state,
                &writer,
                &name,
                &headers,
                &key,
                crypto::VersionAt { version, epoch: version },
                fields,
                &value,
            )
            .await?
        }
        Some(stored) => match writer.sealed_key(&name, &stored)? {
            Some(key) if !stored.rotation_pending => {
                let at = crypto::VersionAt { version: stored.version as u64 + 1, epoch: stored.key_epoch };
                let fields = json!({ "keyEpoch": stored.key_epoch, "version": at.version });
                write_version(&state, &writer, &name, &headers, &key, at, fields, &value).await?
            }
            _ => {
                let expected = if_match.unwrap_or(stored.version as u64);
                crate::proxy::shares::rotate(&state, &writer, &name, expected, &value).await?
            }
        },
    };
    Ok((answer.status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response())
}

/// `PUT /kv/{key}` of `value` as the version `at` under `key`, with `fields` (the key's use).
#[allow(clippy::too_many_arguments)]
async fn write_version(
    state: &ProxyState,
    writer: &Writer<'_>,
    name: &KeyName,
    headers: &HeaderMap,
    key: &DataKey,
    at: crypto::VersionAt,
    fields: serde_json::Value,
    value: &[u8],
) -> Result<crate::proxy::client::Answer, ApiError> {
    let ciphertext = crypto::encrypt_value_at(key, random(), &writer.context(name), at, value);
    let (wrap_ecc, wrap_kyber) = writer.wrap_for_owner(name, at.epoch, key)?;
    let mut request = json!({
        "ciphertextB64": STANDARD.encode(ciphertext),
        "encryptedAesKeyEccB64": STANDARD.encode(wrap_ecc),
        "encryptedAesKeyKyberB64": STANDARD.encode(wrap_kyber),
    });
    request.as_object_mut().expect("an object").extend(fields.as_object().expect("an object").clone());
    let if_match: Vec<(HeaderName, _)> =
        headers.get(header::IF_MATCH).map(|v| (header::IF_MATCH, v.clone())).into_iter().collect();
    state
        .backend
        .call(Method::PUT, &["kv", name.as_str()], None, writer.api_key(), Some(&request), &if_match)
        .await?
        .ok()
}

/// Reads and decrypts the value (`?version=N` for an older version of its current life). The
/// answer says whether its owner sealed it (`ownerSealed`): `false` for a value whose key the owner
/// did not wrap themselves (written by someone else with the owner's API key, or forged in the
/// store) or that was written before keys were sealed. A ciphertext that does not open as the
/// version the Backend names is refused (409).
#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv", params(("key" = String, Path), VersionQuery),
    security(("apiKey" = [], "userSecret" = [])),
    responses((status = 200, body = ValueResponse), UnlockErrors, (status = 404, body = ErrorBody)))]
pub async fn get_kv(
    State(state): State<ProxyState>,
    headers: HeaderMap,
    AppPath(key): AppPath<String>,
    AppQuery(query): AppQuery<VersionQuery>,
) -> Result<Json<ValueResponse>, ApiError> {
    let name = KeyName::parse(&key).map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.0))?;
    let asked = query.checked()?;
    let version = asked.map(|v| format!("version={v}"));
    let caller = unlocked(&state, &headers).await?;
    let stored: Stored = state
        .backend
        .call(Method::GET, &["kv", name.as_str()], version.as_deref(), caller.api_key, None, &[])
        .await?
        .ok()?
        .json()?;
    if asked.is_some_and(|v| v != stored.version) {
        return Err(anyhow::anyhow!("the Backend answered another version than the one asked for").into());
    }
    let context = caller.context(&name);
    let data_key = unwrap_key(&caller, &context, &stored)?;
    let (value, bound) =
        open_value(&data_key, &context, stored.version as u64, stored.key_epoch, &stored.ciphertext_b64)?;
    let owner_sealed = bound
        && crypto::owner_sealed(
            &caller.keys.keys,
            &context,
            stored.key_epoch,
            &decode("encryptedAesKeyEccB64", &stored.encrypted_aes_key_ecc_b64)?,
            &decode("encryptedAesKeyKyberB64", &stored.encrypted_aes_key_kyber_b64)?,
        );
    Ok(Json(ValueResponse { key, value_b64: STANDARD.encode(value.as_slice()), version: stored.version, owner_sealed }))
}

/// Soft-deletes the record (the Backend's `DELETE /kv/{key}`).
#[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv", params(("key" = String, Path)), security(("apiKey" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the global admin has no KV records"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn delete_kv(
    state: State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    forward::pass_through(state, peer, request).await
}

/// The caller's live keys (the Backend's `GET /kv`, paginated the same way).
#[utoipa::path(get, path = "/v1/kv", tag = "kv", params(ListQuery), security(("apiKey" = [])),
    responses((status = 200, body = KvListResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn list_kv(
    state: State<ProxyState>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    forward::pass_through(state, peer, request).await
}
