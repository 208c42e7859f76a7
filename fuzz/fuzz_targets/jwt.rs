//! The identity provider's session tokens (`Authorization: Bearer`, Cloud API), verified by
//! `harden_api::cloud::jwt::JwtVerifier` in its networkless PEM mode with the test keys of
//! `tests/fixtures/idp/`, and the JWKS documents it reads in its other mode.
//!
//! Modes: (0) any bytes as a token; (1) a header and claims of the fuzzer's choosing, really signed
//! with the ES256 or the RS256 test key, so the claim checks behind the signature are reached;
//! (2) any bytes as a JWKS document.
//!
//! Properties: a token is accepted only if its header's `alg` is the key's (RS256 or ES256, never
//! `none` or HS*) with no `crit`, its `iss` is exactly the configured issuer, `sub` is a valid
//! subject, `exp` is a number not in the past, `nbf` (when a number) not in the future, `aud` is
//! absent unless an audience is configured (then it names it), and `azp`, when present, is an
//! authorized party; the identity answered is the token's own. A JWKS yields only RS256/ES256 keys
//! with a kid.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use harden_api::cloud::jwt::{fuzz_jwks_keys, IdentityClaims, JwtConfig, JwtVerifier};
use harden_fuzz::{join, parts, seed, seeds};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const ISSUER: &str = "https://clerk.harden.test";
const AZP: &str = "http://localhost:3000";
const AUDIENCE: &str = "harden";
const LEEWAY: i64 = 5;

struct Fixture {
    ec_key: EncodingKey,
    rsa_key: EncodingKey,
    /// PEM mode with the EC key; no audience, one authorized party.
    ec: JwtVerifier,
    /// PEM mode with the RSA key; no audience, one authorized party.
    rsa: JwtVerifier,
    /// PEM mode with the RSA key and an audience.
    rsa_aud: JwtVerifier,
}

fn verifier(pem: &str, audience: Option<&str>) -> JwtVerifier {
    let config = JwtConfig {
        jwks_url: None,
        public_key_pem: Some(pem.to_owned()),
        issuer: ISSUER.to_owned(),
        audience: audience.map(str::to_owned),
        authorized_parties: vec![AZP.to_owned()],
        leeway_secs: LEEWAY as u64,
        jwks_min_refresh: Duration::ZERO,
        jwks_ttl: Duration::from_secs(600),
    };
    JwtVerifier::new(config, reqwest::Client::new()).expect("a working verifier")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rsa_pub = include_str!("../../tests/fixtures/idp/rsa1.pub.pem");
        Fixture {
            ec_key: EncodingKey::from_ec_pem(include_bytes!("../../tests/fixtures/idp/ec1.pem")).expect("EC key"),
            rsa_key: EncodingKey::from_rsa_pem(include_bytes!("../../tests/fixtures/idp/rsa1.pem")).expect("RSA key"),
            ec: verifier(include_str!("../../tests/fixtures/idp/ec1.pub.pem"), None),
            rsa: verifier(rsa_pub, None),
            rsa_aud: verifier(rsa_pub, Some(AUDIENCE)),
        }
    })
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// The PEM mode never waits on anything: the future is ready at its first poll.
fn verify(verifier: &JwtVerifier, token: &str) -> Option<IdentityClaims> {
    futures::executor::block_on(verifier.verify(token)).ok()
}

fn decode_part(part: &str) -> Map<String, Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("an accepted token's parts are base64url");
    serde_json::from_slice(&bytes).expect("an accepted token's parts are JSON objects")
}

/// What every accepted token must be, whichever way it was made.
fn check_accepted(token: &str, identity: &IdentityClaims, alg: &str, audience: Option<&str>) {
    let mut pieces = token.split('.');
    let header = decode_part(pieces.next().expect("header"));
    let claims = decode_part(pieces.next().expect("claims"));
    assert_eq!(header.get("alg").and_then(Value::as_str), Some(alg), "accepted header {header:?}");
    assert!(header.get("crit").is_none(), "accepted a crit header: {header:?}");
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER), "accepted claims {claims:?}");
    let sub = claims.get("sub").and_then(Value::as_str).expect("accepted without a string sub");
    assert_eq!(identity.subject, sub);
    assert!(
        !sub.is_empty() && sub.len() <= 255 && sub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    let exp = claims.get("exp").and_then(Value::as_f64).expect("accepted without a numeric exp");
    assert!(exp >= (now() - LEEWAY - 1) as f64, "accepted an expired token: exp {exp}");
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
        assert!(nbf <= (now() + LEEWAY + 1) as f64, "accepted a token not yet valid: nbf {nbf}");
    }
    match (audience, claims.get("aud")) {
        (None, Some(aud)) => assert!(aud.is_null(), "accepted an aud with no audience configured: {aud}"),
        (None, None) => {}
        (Some(expected), aud) => {
            let named = match aud {
                Some(Value::String(s)) => s == expected,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected)),
                _ => false,
            };
            assert!(named, "accepted aud {aud:?} without {expected}");
        }
    }
    if audience.is_none() {
        if let Some(azp) = claims.get("azp") {
            assert_eq!(azp.as_str(), Some(AZP), "accepted a foreign azp");
        }
    }
    let email = claims.get("email").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    assert_eq!(identity.email.as_deref(), email);
    assert_eq!(identity.email_verified, claims.get("email_verified") == Some(&Value::Bool(true)));
}

fn mode_raw(data: &[u8]) {
    let f = fixture();
    let token = String::from_utf8_lossy(data);
    for (verifier, alg, audience) in
        [(&f.ec, "ES256", None), (&f.rsa, "RS256", None), (&f.rsa_aud, "RS256", Some(AUDIENCE))]
    {
        if let Some(identity) = verify(verifier, &token) {
            check_accepted(&token, &identity, alg, audience);
        }
    }
}

fn sign(header: &[u8], claims: &[u8], ec: bool) -> String {
    let f = fixture();
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let (key, alg) = if ec { (&f.ec_key, Algorithm::ES256) } else { (&f.rsa_key, Algorithm::RS256) };
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signing");
    format!("{message}.{signature}")
}

fn mode_signed(data: &[u8]) {
    let f = fixture();
    let Some((&key, rest)) = data.split_first() else { return };
    let [header, claims] = parts::<2>(rest);
    // RS256 signing (an RSA-2048 private-key operation) costs far more than ES256 under the
    // sanitizer: one input in four is RS256.
    let ec = key % 4 != 1;
    let token = sign(header, claims, ec);
    let (own, other, alg) = if ec { (&f.ec, &f.rsa, "ES256") } else { (&f.rsa, &f.ec, "RS256") };
    if let Some(identity) = verify(own, &token) {
        check_accepted(&token, &identity, alg, None);
    }
    assert!(verify(other, &token).is_none(), "a token verified under the other key");
    if !ec {
        if let Some(identity) = verify(&f.rsa_aud, &token) {
            check_accepted(&token, &identity, alg, Some(AUDIENCE));
        }
    }
}

fn mode_jwks(data: &[u8]) {
    if let Ok(keys) = fuzz_jwks_keys(data) {
        assert!(!keys.is_empty());
        for (kid, alg) in keys {
            assert!(!kid.is_empty());
            assert!(matches!(alg, Algorithm::RS256 | Algorithm::ES256), "{alg:?}");
        }
    }
}

fn make_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let f = fixture();
    let header = |alg: &str| json!({ "alg": alg, "typ": "JWT", "kid": "ins_1" }).to_string().into_bytes();
    let claims = json!({
        "sub": "user_2abcDEF", "iss": ISSUER, "azp": AZP, "exp": 4_102_444_800_i64, "nbf": 1_700_000_000,
        "email": "ada@example.test", "email_verified": true, "given_name": "Ada",
    })
    .to_string()
    .into_bytes();
    let mut aud_claims: Value = serde_json::from_slice(&claims).expect("claims");
    aud_claims["aud"] = json!([AUDIENCE, "other"]);
    let aud_claims = aud_claims.to_string().into_bytes();
    let es = sign(&header("ES256"), &claims, true);
    let rs = sign(&header("RS256"), &aud_claims, false);
    let mut ec_jwk = Jwk::from_encoding_key(&f.ec_key, Algorithm::ES256).expect("EC JWK");
    ec_jwk.common.key_id = Some("test-ec-1".into());
    let mut rsa_jwk = Jwk::from_encoding_key(&f.rsa_key, Algorithm::RS256).expect("RSA JWK");
    rsa_jwk.common.key_id = Some("test-rsa-1".into());
    let jwks = serde_json::to_value(JwkSet { keys: vec![ec_jwk, rsa_jwk] }).expect("JWKS");
    let mut jwks_extra = jwks.clone();
    jwks_extra["keys"]
        .as_array_mut()
        .expect("keys")
        .push(json!({ "kty": "OKP", "crv": "X25519", "x": "AAAA", "kid": "enc" }));
    vec![
        ("raw-es256", seed(0, &[es.as_bytes()])),
        ("raw-rs256-aud", seed(0, &[rs.as_bytes()])),
        ("signed-es256", [&[1u8, 0][..], &join(&[&header("ES256"), &claims])].concat()),
        ("signed-rs256", [&[1u8, 1][..], &join(&[&header("RS256"), &claims])].concat()),
        ("signed-rs256-aud", [&[1u8, 1][..], &join(&[&header("RS256"), &aud_claims])].concat()),
        ("signed-none", [&[1u8, 0][..], &join(&[br#"{"alg":"none"}"#, &claims])].concat()),
        ("jwks", seed(2, &[jwks.to_string().as_bytes()])),
        ("jwks-extra", seed(2, &[jwks_extra.to_string().as_bytes()])),
    ]
}

fuzz_target!(init: seeds::write_if_asked(make_seeds), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => mode_raw(rest),
        1 => mode_signed(rest),
        _ => mode_jwks(rest),
    }
});
