//! Verification of the identity provider's session tokens (Clerk, or any OIDC provider that signs
//! with RS256 or ES256), the `Authorization: Bearer` credential of the Cloud API.
//!
//! The algorithm is decided from the token header before any key is chosen, and only RS256 and
//! ES256 are accepted; a key is used only for the algorithm its own type implies. This is what
//! stops `alg: none` and the HS256-with-the-public-key confusion: no path here ever hands a public
//! key to an HMAC. Keys embedded in or pointed to by the token header (`jwk`, `jku`, `x5u`) are
//! never used.
//!
//! Keys come either from one configured PEM public key (networkless, Clerk's "JWT public key") or
//! from the provider's JWKS, fetched on demand, cached by `kid`, refetched when stale or when a
//! token names a `kid` not yet seen. Refetches are serialised and rate-limited so that neither
//! concurrent requests nor a flood of made-up `kid`s turn into a flood of requests to the provider.
//!
//! Every failure is a [`JwtError`] whose text is for the logs only: callers answer all of them with
//! the same 401 "invalid or expired session token".

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The whole JWKS fetch (connect, headers, body) must finish within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS holds a handful of keys; anything larger is not one.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Session tokens are a few hundred bytes to a few KiB; a larger one is refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// RSA keys below 2048 bits are refused.
const MIN_RSA_MODULUS_BYTES: usize = 256;
const MAX_SUBJECT_CHARS: usize = 255;

#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// The provider's JWKS (e.g. `https://<clerk-frontend-api>/.well-known/jwks.json`). Exactly one
    /// of `jwks_url` and `public_key_pem` is set.
    pub jwks_url: Option<String>,
    /// A PEM public key (RSA or EC P-256), Clerk's "JWT public key" (networkless verification).
    pub public_key_pem: Option<String>,
    /// Required `iss`.
    pub issuer: String,
    /// When set, `aud` must contain it. When not, `azp` (if the token has one) must be one of
    /// `authorized_parties`, as Clerk recommends; with no authorized parties `azp` is not checked.
    pub audience: Option<String>,
    pub authorized_parties: Vec<String>,
    /// Leeway for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Shortest time between two JWKS fetches caused by unknown kids, so that a flood of made-up
    /// kids cannot flood the provider. Tests set 0.
    pub jwks_min_refresh: Duration,
    /// How long a fetched JWKS is used before it is fetched again on the next request.
    pub jwks_ttl: Duration,
}

/// What harden takes from a verified token.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentityClaims {
    /// `sub`: the identity user id, e.g. `user_2abc...`.
    pub subject: String,
    /// Optional claims a Clerk session token carries when a custom template adds them: `email`,
    /// `email_verified`, `first_name`, `last_name` (or OIDC's `given_name`, `family_name`).
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Why a token was refused. For the logs; never shown to the caller.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not accepted (only RS256 and ES256)")]
    AlgorithmNotAllowed(String),
    #[error("token has no kid, which a JWKS needs to pick the key")]
    MissingKeyId,
    #[error("no key with kid {0:?} in the provider's JWKS")]
    UnknownKey(String),
    #[error("token alg {token:?} does not match its key, which is for {key:?}")]
    KeyMismatch { token: Algorithm, key: Algorithm },
    #[error("the provider's JWKS could not be fetched: {0}")]
    KeysUnavailable(String),
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("claim rejected: {0}")]
    Claim(&'static str),
}

/// Verifies bearer tokens against one issuer's keys. Cheap to clone; clones share the JWKS cache.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: JwtConfig,
    keys: Keys,
}

enum Keys {
    Pem(Arc<VerifyingKey>),
    Jwks(Box<Jwks>),
}

/// A public key and the one algorithm it may verify.
struct VerifyingKey {
    alg: Algorithm,
    key: DecodingKey,
}

impl JwtVerifier {
    /// Err(String) for a config that cannot work (neither or both of jwks_url/pem, unparsable PEM, empty issuer).
    pub fn new(config: JwtConfig, http: reqwest::Client) -> Result<Self, String> {
        if config.issuer.trim().is_empty() {
            return Err("the identity provider's issuer must not be empty".into());
        }
        if config.audience.as_deref().is_some_and(|aud| aud.trim().is_empty()) {
            return Err("the audience, when set, must not be empty".into());
        }
        let keys = match (&config.jwks_url, &config.public_key_pem) {
            (Some(url), None) => {
                let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid JWKS URL {url:?}: {e}"))?;
                if !matches!(parsed.scheme(), "https" | "http") {
                    return Err(format!("the JWKS URL {url:?} must be http(s)"));
                }
                Keys::Jwks(Box::new(Jwks {
                    url: url.clone(),
                    http,
                    min_refresh: config.jwks_min_refresh,
                    ttl: config.jwks_ttl,
                    cache: RwLock::default(),
                    refreshing: tokio::sync::Mutex::new(()),
                }))
            }
            (None, Some(pem)) => Keys::Pem(Arc::new(pem_key(pem)?)),
            (None, None) => return Err("set either the JWKS URL or the PEM public key of the identity provider".into()),
            (Some(_), Some(_)) => {
                return Err("set only one of the JWKS URL and the PEM public key of the identity provider".into())
            }
        };
        Ok(Self { inner: Arc::new(Inner { config, keys }) })
    }

    /// Verifies the token. Every failure's [`JwtError`] is a reason for the logs; callers answer all
    /// of them with the same 401 "invalid or expired session token".
    pub async fn verify(&self, token: &str) -> Result<IdentityClaims, JwtError> {
        let header = parse_header(token)?;
        let key = match &self.inner.keys {
            Keys::Pem(key) => key.clone(),
            Keys::Jwks(jwks) => jwks.key(header.kid.as_deref().ok_or(JwtError::MissingKeyId)?).await?,
        };
        if key.alg != header.alg {
            return Err(JwtError::KeyMismatch { token: header.alg, key: key.alg });
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &self.validation(key.alg))?;
        identity(&self.inner.config, &data.claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let config = &self.inner.config;
        let mut validation = Validation::new(alg);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
            }
            // Clerk session tokens carry no `aud` (`azp` is checked in `identity` instead). A token
            // that does name an audience is refused, as RFC 7519 §4.1.3 asks of a recipient that
            // is not in it; jsonwebtoken does that while `validate_aud` stays on.
            None => validation.set_required_spec_claims(&["exp", "sub", "iss"]),
        }
        validation
    }
}

/// The two header fields that matter, read before any key is chosen.
#[derive(Debug, PartialEq)]
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn parse_header(token: &str) -> Result<TokenHeader, JwtError> {
    #[derive(Deserialize)]
    struct RawHeader {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
        #[serde(default)]
        crit: Option<Value>,
    }

    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Malformed("header is not base64url"))?;
    let header: RawHeader =
        serde_json::from_slice(&header).map_err(|_| JwtError::Malformed("header is not a JSON object with an alg"))?;
    let alg = match header.alg.as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        other => return Err(JwtError::AlgorithmNotAllowed(other.chars().take(32).collect())),
    };
    // RFC 7515 §4.1.11: a recipient that does not understand a critical extension must refuse.
    if header.crit.is_some() {
        return Err(JwtError::Malformed("crit header extensions are not supported"));
    }
    Ok(TokenHeader { alg, kid: header.kid })
}

/// Checks what jsonwebtoken leaves open and picks out harden's claims.
fn identity(config: &JwtConfig, claims: &Map<String, Value>) -> Result<IdentityClaims, JwtError> {
    // jsonwebtoken also accepts an `iss` array that contains the issuer; only the exact string is.
    if claims.get("iss").and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return Err(JwtError::Claim("iss is not the configured issuer"));
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|sub| valid_subject(sub))
        .ok_or(JwtError::Claim("sub is not 1 to 255 characters of [A-Za-z0-9_-]"))?;
    if config.audience.is_none() && !config.authorized_parties.is_empty() {
        // Clerk's advice: `azp` names the origin the token was minted for; a token minted for
        // another site of the same Clerk instance must not sign in here.
        if let Some(azp) = claims.get("azp") {
            if !azp.as_str().is_some_and(|azp| config.authorized_parties.iter().any(|party| party == azp)) {
                return Err(JwtError::Claim("azp is not an authorized party"));
            }
        }
    }
    // The optional claims come from a provider-side template; a wrong type there must not lock
    // the user out, so it reads as absent.
    let text = |names: &[&str]| {
        names.iter().find_map(|name| {
            claims.get(*name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
        })
    };
    Ok(IdentityClaims {
        subject: subject.to_owned(),
        email: text(&["email"]),
        email_verified: claims.get("email_verified").and_then(Value::as_bool).unwrap_or(false),
        first_name: text(&["first_name", "given_name"]),
        last_name: text(&["last_name", "family_name"]),
    })
}

/// Clerk's ids are `user_` + alphanumerics; other OIDC providers use UUIDs or digits.
fn valid_subject(sub: &str) -> bool {
    !sub.is_empty()
        && sub.len() <= MAX_SUBJECT_CHARS
        && sub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The configured PEM public key and the algorithm its type implies.
fn pem_key(pem: &str) -> Result<VerifyingKey, String> {
    let pem = pem.trim();
    // jsonwebtoken would read the inner bytes of a private key PEM as if they were a public key.
    if !pem.starts_with("-----BEGIN PUBLIC KEY-----") && !pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        return Err("the identity provider's key must be a PEM public key (-----BEGIN PUBLIC KEY-----)".into());
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        // Converting to a JWK parses the key, so a damaged one fails here and not on first use.
        let jwk = Jwk::from_decoding_key(&key, None).map_err(|e| format!("invalid RSA public key: {e}"))?;
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            return Err("invalid RSA public key".into());
        };
        if modulus_bytes(&rsa.n).unwrap_or(0) < MIN_RSA_MODULUS_BYTES {
            return Err("the RSA public key is shorter than 2048 bits".into());
        }
        return Ok(VerifyingKey { alg: Algorithm::RS256, key });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        let jwk = Jwk::from_decoding_key(&key, None).map_err(|e| format!("invalid EC public key: {e}"))?;
        if !matches!(&jwk.algorithm, AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256) {
            return Err("the EC public key is not on P-256 (only ES256 is accepted)".into());
        }
        return Ok(VerifyingKey { alg: Algorithm::ES256, key });
    }
    Err("the PEM is neither an RSA nor an EC public key".into())
}

/// Length of a base64url big-endian integer without its leading zero bytes.
fn modulus_bytes(n: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(n).ok()?;
    Some(bytes.iter().skip_while(|b| **b == 0).count())
}

/// A JWKS entry harden can use: it has a kid, is meant for signatures, and is either an RSA key
/// (RS256) or an EC P-256 key (ES256). A key that names its own `alg` must name that one. Anything
/// else in the set is skipped, not an error: providers publish encryption keys and new key types.
fn usable_key(jwk: &Jwk) -> Option<(String, VerifyingKey)> {
    let kid = jwk.common.key_id.clone().filter(|kid| !kid.is_empty())?;
    if jwk.common.public_key_use.as_ref().is_some_and(|key_use| *key_use != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) if modulus_bytes(&rsa.n)? >= MIN_RSA_MODULUS_BYTES => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    if jwk.common.key_algorithm.is_some_and(|own| own != KeyAlgorithm::from(alg)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    // An uncompressed P-256 point is 0x04 || x (32 bytes) || y (32 bytes).
    if alg == Algorithm::ES256 && key.try_get_as_bytes().ok()?.len() != 65 {
        return None;
    }
    Some((kid, VerifyingKey { alg, key }))
}

/// The provider's JWKS, fetched on demand.
struct Jwks {
    url: String,
    http: reqwest::Client,
    min_refresh: Duration,
    ttl: Duration,
    cache: RwLock<JwksCache>,
    /// Held while fetching, so concurrent requests wait for one fetch instead of each making one.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, Arc<VerifyingKey>>,
    /// The last successful fetch.
    fetched_at: Option<Instant>,
    /// The last fetch, successful or not.
    attempted_at: Option<Instant>,
    /// Counts fetches, so a request that waited on `refreshing` can tell someone fetched meanwhile.
    attempts: u64,
    /// Why the last fetch failed; cleared by a successful one.
    last_error: Option<String>,
}

impl JwksCache {
    fn is_fresh(&self, ttl: Duration) -> bool {
        self.fetched_at.is_some_and(|at| at.elapsed() < ttl)
    }

    fn lookup(&self, kid: &str) -> Result<Arc<VerifyingKey>, JwtError> {
        if let Some(key) = self.keys.get(kid) {
            return Ok(key.clone());
        }
        match &self.last_error {
            Some(error) => Err(JwtError::KeysUnavailable(error.clone())),
            None => Err(JwtError::UnknownKey(kid.chars().take(64).collect())),
        }
    }
}

impl Jwks {
    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, JwtError> {
        let seen = {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            if cache.is_fresh(self.ttl) {
                if let Some(key) = cache.keys.get(kid) {
                    return Ok(key.clone());
                }
            }
            cache.attempts
        };

        let _refreshing = self.refreshing.lock().await;
        {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            let fetched_meanwhile = cache.attempts != seen;
            let fetched_recently = cache.attempted_at.is_some_and(|at| at.elapsed() < self.min_refresh);
            if fetched_meanwhile || fetched_recently {
                // A stale key is still used here: the provider was asked moments ago.
                return cache.lookup(kid);
            }
        }

        let fetched = fetch_jwks(&self.http, &self.url).await;
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.attempts += 1;
        cache.attempted_at = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                cache.keys = keys.into_iter().map(|(kid, key)| (kid, Arc::new(key))).collect();
                cache.fetched_at = cache.attempted_at;
                cache.last_error = None;
            }
            Err(error) => {
                // Known keys stay usable while the provider is unreachable.
                tracing::warn!(url = %self.url, %error, "could not fetch the identity provider's JWKS");
                cache.last_error = Some(error);
            }
        }
        cache.lookup(kid)
    }
}

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<HashMap<String, VerifyingKey>, String> {
    let body = tokio::time::timeout(FETCH_TIMEOUT, fetch_body(http, url))
        .await
        .map_err(|_| format!("no answer within {}s", FETCH_TIMEOUT.as_secs()))??;
    jwks_keys(&body)
}

/// The usable keys of a JWKS document, by kid.
fn jwks_keys(body: &[u8]) -> Result<HashMap<String, VerifyingKey>, String> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }

    let set: RawSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    // Entries are parsed one by one so that a key type jsonwebtoken cannot read skips that key
    // rather than the whole set.
    let keys: HashMap<_, _> = set
        .keys
        .into_iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry).ok())
        .filter_map(|jwk| usable_key(&jwk))
        .collect();
    if keys.is_empty() {
        return Err("the JWKS has no RS256 or ES256 signing key with a kid".into());
    }
    Ok(keys)
}

/// For the fuzz targets (`fuzz/`): the kids and algorithms [`jwks_keys`] takes from a JWKS document.
#[doc(hidden)]
pub fn fuzz_jwks_keys(body: &[u8]) -> Result<Vec<(String, Algorithm)>, String> {
    Ok(jwks_keys(body)?.into_iter().map(|(kid, key)| (kid, key.alg)).collect())
}

async fn fetch_body(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let too_large = || format!("larger than {MAX_JWKS_BYTES} bytes");
    if response.content_length().is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading the body failed: {e}"))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::get;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://clerk.harden.test";

    // A P-256 key made for these tests with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRdhC+2CqxSPTEHcU
mpxv8kvCrTu79AF09ruqHh078OyhRANCAAQDYMhqTk0+iwdhUMfm/XblUcuqrQNY
mYtjifqhZAcssvy77wZPffTYsi+3V9ehmFVqhHNyUv54L/75K6z3veeF
-----END PRIVATE KEY-----
";
    const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEA2DIak5NPosHYVDH5v125VHLqq0D
WJmLY4n6oWQHLLL8u+8GT3302LIvt1fXoZhVaoRzclL+eC/++Sus973nhQ==
-----END PUBLIC KEY-----
";
    const P384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEG6HaE15nIEiwgerDEWkhONnYjUImmQ+g
7d6dnkddNS+qqT/eTv1Bn/C+jdIpB10t6+j+2AuO6yamRYFn80WmjSHR9PZM5Apu
fYrmYOqmj7F1sBy2Gmg2cAa7P0O5UTaj
-----END PUBLIC KEY-----
";

    fn config() -> JwtConfig {
        JwtConfig {
            jwks_url: None,
            public_key_pem: Some(EC_PUBLIC.into()),
            issuer: ISSUER.into(),
            audience: None,
            authorized_parties: vec!["http://localhost:3000".into()],
            leeway_secs: 5,
            jwks_min_refresh: Duration::ZERO,
            jwks_ttl: Duration::from_secs(300),
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims(sub: &str) -> Value {
        json!({ "sub": sub, "iss": ISSUER, "azp": "http://localhost:3000", "exp": now() + 60, "nbf": now() - 1 })
    }

    fn es256(kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()).unwrap()
    }

    fn hand_made(header: &Value, claims: &Value, signature: &[u8]) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!("{}.{}.{}", part(header), part(claims), URL_SAFE_NO_PAD.encode(signature))
    }

    fn pem_verifier(config: JwtConfig) -> JwtVerifier {
        JwtVerifier::new(config, reqwest::Client::new()).unwrap()
    }

    #[test]
    fn header_with_an_accepted_alg_yields_alg_and_kid() {
        let token = hand_made(&json!({ "alg": "RS256", "kid": "ins_1", "typ": "JWT" }), &json!({}), b"sig");
        assert_eq!(parse_header(&token).unwrap(), TokenHeader { alg: Algorithm::RS256, kid: Some("ins_1".into()) });
        let token = hand_made(&json!({ "alg": "ES256" }), &json!({}), b"sig");
        assert_eq!(parse_header(&token).unwrap(), TokenHeader { alg: Algorithm::ES256, kid: None });
    }

    #[test]
    fn header_with_any_other_alg_is_refused_before_a_key_is_chosen() {
        for alg in ["none", "None", "HS256", "HS384", "HS512", "RS384", "RS512", "PS256", "ES384", "EdDSA", ""] {
            let token = hand_made(&json!({ "alg": alg, "kid": "test" }), &json!({}), b"");
            assert!(matches!(parse_header(&token), Err(JwtError::AlgorithmNotAllowed(_))), "alg {alg:?}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let cases = [
            ("empty", String::new()),
            ("two parts", format!("{good_header}.e30")),
            ("four parts", format!("{good_header}.e30.c2ln.c2ln")),
            ("header not base64url", "***.e30.c2ln".to_owned()),
            ("header not JSON", format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(b"alg"))),
            ("header without alg", format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(br#"{"kid":"a"}"#))),
            (
                "critical extension",
                hand_made(&json!({ "alg": "RS256", "crit": ["b64"], "b64": false }), &json!({}), b""),
            ),
            ("too long", format!("{good_header}.{}.c2ln", "A".repeat(MAX_TOKEN_BYTES))),
        ];
        for (case, token) in cases {
            assert!(matches!(parse_header(&token), Err(JwtError::Malformed(_))), "{case}");
        }
    }

    #[test]
    fn config_that_cannot_work_is_refused() {
        let cases = [
            ("no key source", JwtConfig { public_key_pem: None, ..config() }),
            ("both key sources", JwtConfig { jwks_url: Some("https://clerk.harden.test/jwks".into()), ..config() }),
            ("empty issuer", JwtConfig { issuer: " ".into(), ..config() }),
            ("empty audience", JwtConfig { audience: Some(String::new()), ..config() }),
            ("private key PEM", JwtConfig { public_key_pem: Some(EC_PRIVATE.into()), ..config() }),
            (
                "garbage PEM",
                JwtConfig { public_key_pem: Some("-----BEGIN PUBLIC KEY-----\nAAAA\n".into()), ..config() },
            ),
            ("P-384 key", JwtConfig { public_key_pem: Some(P384_PUBLIC.into()), ..config() }),
            ("JWKS URL not a URL", JwtConfig { jwks_url: Some("jwks.json".into()), public_key_pem: None, ..config() }),
            (
                "JWKS URL not http",
                JwtConfig { jwks_url: Some("file:///jwks.json".into()), public_key_pem: None, ..config() },
            ),
        ];
        for (case, config) in cases {
            assert!(JwtVerifier::new(config, reqwest::Client::new()).is_err(), "{case}");
        }
    }

    #[test]
    fn ec_pem_accepts_only_es256() {
        let Keys::Pem(key) = &pem_verifier(config()).inner.keys else { panic!("PEM config gave a JWKS") };
        assert_eq!(key.alg, Algorithm::ES256);
    }

    #[tokio::test]
    async fn pem_mode_verifies_a_good_token_and_reads_optional_claims() {
        let mut claims = claims("user_2abcDEF");
        claims["email"] = json!("ada@example.test");
        claims["email_verified"] = json!(true);
        claims["given_name"] = json!("Ada");
        claims["last_name"] = json!(42);

        let identity = pem_verifier(config()).verify(&es256(None, &claims)).await.unwrap();

        assert_eq!(
            identity,
            IdentityClaims {
                subject: "user_2abcDEF".into(),
                email: Some("ada@example.test".into()),
                email_verified: true,
                first_name: Some("Ada".into()),
                last_name: None,
            }
        );
    }

    #[tokio::test]
    async fn pem_mode_refuses_bad_tokens() {
        let verifier = pem_verifier(config());
        let with = |key: &str, value: Value| {
            let mut claims = claims("user_1");
            claims[key] = value;
            claims
        };
        let without = |key: &str| {
            let mut claims = claims("user_1");
            claims.as_object_mut().unwrap().remove(key);
            claims
        };
        let signed = es256(None, &claims("user_1"));
        let other_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("user_2")).unwrap());
        let parts: Vec<&str> = signed.split('.').collect();
        let tampered = format!("{}.{other_payload}.{}", parts[0], parts[2]);
        let cases = [
            ("expired", es256(None, &with("exp", json!(now() - 10)))),
            ("not yet valid", es256(None, &with("nbf", json!(now() + 60)))),
            ("no exp", es256(None, &without("exp"))),
            ("no sub", es256(None, &without("sub"))),
            ("no iss", es256(None, &without("iss"))),
            ("other issuer", es256(None, &with("iss", json!("https://evil.test")))),
            ("issuer in an array", es256(None, &with("iss", json!([ISSUER, "https://evil.test"])))),
            ("empty sub", es256(None, &with("sub", json!("")))),
            ("sub with a slash", es256(None, &with("sub", json!("user/1")))),
            ("sub too long", es256(None, &with("sub", json!("u".repeat(256))))),
            ("foreign azp", es256(None, &with("azp", json!("https://evil.test")))),
            ("aud without a configured audience", es256(None, &with("aud", json!("harden")))),
            ("payload swapped under the signature", tampered),
            (
                "HS256 keyed with the public PEM",
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &claims("user_1"),
                    &EncodingKey::from_secret(EC_PUBLIC.as_bytes()),
                )
                .unwrap(),
            ),
            ("alg none", hand_made(&json!({ "alg": "none" }), &claims("user_1"), b"")),
            ("RS256 against the EC key", hand_made(&json!({ "alg": "RS256" }), &claims("user_1"), &[0; 256])),
        ];
        for (case, token) in cases {
            assert!(verifier.verify(&token).await.is_err(), "{case}");
        }
    }

    #[tokio::test]
    async fn azp_and_audience_rules() {
        let mut no_azp = claims("user_1");
        no_azp.as_object_mut().unwrap().remove("azp");
        assert!(pem_verifier(config()).verify(&es256(None, &no_azp)).await.is_ok(), "a token without azp");

        let mut foreign = claims("user_1");
        foreign["azp"] = json!("https://evil.test");
        let open = JwtConfig { authorized_parties: vec![], ..config() };
        assert!(pem_verifier(open).verify(&es256(None, &foreign)).await.is_ok(), "no authorized parties configured");

        let with_audience = pem_verifier(JwtConfig { audience: Some("harden".into()), ..config() });
        let mut aud = claims("user_1");
        aud["aud"] = json!(["other", "harden"]);
        assert!(with_audience.verify(&es256(None, &aud)).await.is_ok(), "aud containing the audience");
        aud["aud"] = json!("other");
        assert!(with_audience.verify(&es256(None, &aud)).await.is_err(), "aud without the audience");
        assert!(with_audience.verify(&es256(None, &claims("user_1"))).await.is_err(), "no aud");
    }

    /// A JWKS endpoint serving the test key under `kid`, counting fetches.
    async fn jwks_server(kid: &'static str) -> (String, Arc<AtomicUsize>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut jwk =
            Jwk::from_encoding_key(&EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(), Algorithm::ES256)
                .unwrap();
        jwk.common.key_id = Some(kid.into());
        let set = json!({ "keys": [jwk, { "kty": "OKP", "crv": "X25519", "x": "AAAA", "kid": "enc" }] });
        let counter = fetches.clone();
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let set = set.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    axum::Json(set)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, fetches)
    }

    fn jwks_config(url: &str) -> JwtConfig {
        JwtConfig { jwks_url: Some(url.into()), public_key_pem: None, ..config() }
    }

    #[tokio::test]
    async fn jwks_mode_fetches_once_for_concurrent_requests_and_refuses_unknown_kids() {
        let (url, fetches) = jwks_server("ec-1").await;
        let verifier = pem_verifier(jwks_config(&url));
        let token = es256(Some("ec-1"), &claims("user_1"));

        let results = futures::future::join_all((0..8).map(|_| verifier.verify(&token))).await;

        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "concurrent first requests share one fetch");
        assert!(matches!(verifier.verify(&es256(None, &claims("user_1"))).await, Err(JwtError::MissingKeyId)));
        assert!(matches!(verifier.verify(&es256(Some("ec-2"), &claims("user_1"))).await, Err(JwtError::UnknownKey(_))));
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "an unknown kid triggers one refetch");
    }

    #[tokio::test]
    async fn jwks_mode_rate_limits_refetches_for_unknown_kids() {
        let (url, fetches) = jwks_server("ec-1").await;
        let verifier = pem_verifier(JwtConfig { jwks_min_refresh: Duration::from_secs(60), ..jwks_config(&url) });
        verifier.verify(&es256(Some("ec-1"), &claims("user_1"))).await.unwrap();

        for n in 0..5 {
            let token = es256(Some(&format!("made-up-{n}")), &claims("user_1"));
            assert!(matches!(verifier.verify(&token).await, Err(JwtError::UnknownKey(_))));
        }

        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn jwks_mode_refetches_when_the_set_is_older_than_its_ttl() {
        let (url, fetches) = jwks_server("ec-1").await;
        let verifier = pem_verifier(JwtConfig { jwks_ttl: Duration::ZERO, ..jwks_config(&url) });
        let token = es256(Some("ec-1"), &claims("user_1"));

        verifier.verify(&token).await.unwrap();
        verifier.verify(&token).await.unwrap();

        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn jwks_mode_reports_an_unreachable_provider() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        drop(listener);
        let verifier = pem_verifier(jwks_config(&url));

        let result = verifier.verify(&es256(Some("ec-1"), &claims("user_1"))).await;

        assert!(matches!(result, Err(JwtError::KeysUnavailable(_))), "{result:?}");
    }
}
