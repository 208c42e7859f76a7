//! A stand-in for the identity provider (Clerk) on loopback: a JWKS endpoint serving the test keys
//! of `tests/fixtures/idp/`, session tokens minted with them (good ones and deliberately bad ones),
//! and Svix signatures for webhook deliveries. harden is pointed at it by settings; its production
//! verification code runs unchanged.
//!
//! The keys were made with `openssl genpkey` (RSA 2048 and EC P-256, PKCS#8); their public JWKs are
//! derived from the private keys at run time.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;

pub const RSA_1: &str = "test-rsa-1";
pub const RSA_2: &str = "test-rsa-2";
pub const EC_1: &str = "test-ec-1";

/// The `azp` of minted tokens: the dashboard's origin.
pub const AZP: &str = "http://localhost:3000";

/// The public half of test-rsa-1, for harden's networkless (PEM) mode.
pub const RSA_1_PUBLIC_PEM: &str = include_str!("../fixtures/idp/rsa1.pub.pem");

/// A Svix signing secret for tests, in the `whsec_` form Clerk's dashboard shows.
pub const WEBHOOK_SECRET: &str = "whsec_1EmkuSoSjZq0rcwNpazj4QkpIFfqzXE4";

/// A test key: its private PEM and the one algorithm it signs with.
fn private_key(kid: &str) -> (&'static str, Algorithm) {
    match kid {
        RSA_1 => (include_str!("../fixtures/idp/rsa1.pem"), Algorithm::RS256),
        RSA_2 => (include_str!("../fixtures/idp/rsa2.pem"), Algorithm::RS256),
        EC_1 => (include_str!("../fixtures/idp/ec1.pem"), Algorithm::ES256),
        other => panic!("no test key {other:?}; use {RSA_1}, {RSA_2} or {EC_1}"),
    }
}

fn encoding_key(kid: &str) -> EncodingKey {
    let (pem, alg) = private_key(kid);
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    }
}

/// The public JWK of a test key, as a provider publishes it.
pub fn jwk(kid: &str) -> Jwk {
    let (_, alg) = private_key(kid);
    let mut jwk = Jwk::from_encoding_key(&encoding_key(kid), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub struct Idp {
    /// `{issuer}/.well-known/jwks.json`.
    pub jwks_url: String,
    /// `http://127.0.0.1:<port>`, the `iss` of minted tokens.
    pub issuer: String,
    published: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Published {
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks(State(published): State<Published>) -> Json<JwkSet> {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    Json(JwkSet { keys: published.keys.lock().unwrap().clone() })
}

impl Idp {
    /// Starts the JWKS endpoint, publishing test-rsa-1 and test-ec-1.
    pub async fn start() -> Idp {
        let published = Published {
            keys: Arc::new(Mutex::new(vec![jwk(RSA_1), jwk(EC_1)])),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new().route("/.well-known/jwks.json", get(jwks)).with_state(published.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Idp {
            jwks_url: format!("{issuer}/.well-known/jwks.json"),
            issuer,
            published: published.keys,
            fetches: published.fetches,
            task,
        }
    }

    /// Adds a test key to the JWKS (a key rotation as the provider does it).
    pub fn publish(&self, kid: &str) {
        let mut keys = self.published.lock().unwrap();
        keys.retain(|jwk| jwk.common.key_id.as_deref() != Some(kid));
        keys.push(jwk(kid));
    }

    /// Removes a test key from the JWKS.
    pub fn retire(&self, kid: &str) {
        self.published.lock().unwrap().retain(|jwk| jwk.common.key_id.as_deref() != Some(kid));
    }

    /// How many times the JWKS has been fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// The claims of a good session token for `sub`, to modify before [`Idp::sign`]: iss, sub,
    /// azp, iat, nbf (a second ago), exp (in a minute), and the profile claims of a custom
    /// session-token template: email `{sub}@example.test` (verified), first_name `Given-{sub}`,
    /// last_name `Family-{sub}`.
    pub fn claims(&self, sub: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "sub": sub,
            "azp": AZP,
            "iat": now,
            "nbf": now - 1,
            "exp": now + 60,
            "email": format!("{sub}@example.test"),
            "email_verified": true,
            "first_name": format!("Given-{sub}"),
            "last_name": format!("Family-{sub}"),
        })
    }

    /// A good session token for `sub`: RS256 with test-rsa-1.
    pub fn token(&self, sub: &str) -> String {
        self.sign(RSA_1, Algorithm::RS256, &self.claims(sub))
    }

    /// Signs `claims` with the test key `kid`, naming that kid in the header.
    pub fn sign(&self, kid: &str, alg: Algorithm, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        self.sign_with_header(kid, header, claims)
    }

    /// Signs `claims` with the test key `key` under any header: no kid, a kid of another key, a
    /// made-up kid. The header's alg must suit the key.
    pub fn sign_with_header(&self, key: &str, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &encoding_key(key)).unwrap()
    }

    /// An unsigned token (`alg: none`, empty signature) naming test-rsa-1.
    pub fn none_token(&self, sub: &str) -> String {
        let header = json!({ "alg": "none", "typ": "JWT", "kid": RSA_1 });
        let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
        format!("{}.{}.", part(&header), part(&self.claims(sub)))
    }

    /// The algorithm-confusion attack: HS256 keyed with test-rsa-1's public key PEM, naming
    /// test-rsa-1. A verifier that lets the header choose the algorithm would accept it.
    pub fn hs256_confusion_token(&self, sub: &str) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(RSA_1.to_owned());
        jsonwebtoken::encode(&header, &self.claims(sub), &EncodingKey::from_secret(RSA_1_PUBLIC_PEM.as_bytes()))
            .unwrap()
    }
}

/// The `svix-id`, `svix-timestamp` and `svix-signature` headers of a webhook delivery of `body`.
pub fn svix_headers(secret_b64_with_whsec: &str, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let secret = secret_b64_with_whsec.strip_prefix("whsec_").unwrap_or(secret_b64_with_whsec);
    let key = STANDARD.decode(secret).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("svix-id".to_owned(), id.to_owned()),
        ("svix-timestamp".to_owned(), timestamp.to_string()),
        ("svix-signature".to_owned(), format!("v1,{signature}")),
    ]
}
