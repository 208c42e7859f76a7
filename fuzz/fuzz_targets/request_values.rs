//! The other request values harden reads, most before any authentication: the `X-Api-Key` shape
//! check, `X-Forwarded-For` (whose client address keys the sign-in and registration throttles),
//! the Proxy's pass-through path, the registration and onboarding fields (email, names, plan,
//! billing cycle), KV key names, content types, identity-provider user ids, member roles, an org's
//! S3 storage settings, and stored password hashes (PHC strings).
//!
//! Properties: a value that parses is within its documented limits and parses again to itself;
//! the throttle's client address is the peer unless the peer is a trusted proxy, and otherwise one
//! of the addresses the header names; a pass-through never leaves the Backend's host nor the
//! subtree of its first segment.
#![no_main]

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};
use harden_api::extract::{ApiCredential, TrustedProxies};
use harden_api::proxy::forward::backend_url;
use harden_commands::keys;
use harden_domain::cloud::{IdentityId, MemberRole};
use harden_domain::file::ContentType;
use harden_domain::registration::BillingCycle;
use harden_domain::secret::KeyName;
use harden_domain::values::{Email, OrgName, UserName};
use harden_domain::{password, storage, Plan, Role};
use harden_fuzz::{parts, seed, seeds};
use libfuzzer_sys::fuzz_target;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode_identity_fields(raw: &str) {
    if let Ok(email) = Email::parse(raw) {
        let s = email.as_str();
        assert!(s.len() <= 254 && s.contains('@') && s.is_ascii(), "{s:?}");
        assert_eq!(s, s.to_lowercase());
        assert_eq!(Email::parse(s).as_ref(), Ok(&email), "an email parses to itself");
    }
    let names =
        [OrgName::parse(raw).map(|n| n.as_str().to_owned()), UserName::parse(raw).map(|n| n.as_str().to_owned())];
    for name in names.into_iter().flatten() {
        assert!((1..=100).contains(&name.chars().count()), "{name:?}");
        assert_eq!(name.trim(), name);
        assert!(!name.chars().any(char::is_control));
        assert_eq!(OrgName::parse(&name).map(|n| n.as_str().to_owned()).as_deref(), Ok(name.as_str()));
    }
    if let Ok(id) = IdentityId::parse(raw) {
        assert!(id.as_str().starts_with("user_") && id.as_str().len() <= IdentityId::MAX_CHARS);
        assert!(id.as_str()[5..].bytes().all(|b| b.is_ascii_alphanumeric()) && id.as_str().len() > 5);
    }
    if let Ok(role) = MemberRole::parse_assignable(raw) {
        assert_ne!(role, MemberRole::Owner, "owner is never assignable");
        assert_eq!(role.as_str(), raw);
    }
    if let Some(plan) = Plan::parse(raw) {
        assert_eq!(plan.key(), raw);
    }
    if let Some(cycle) = BillingCycle::parse(raw) {
        assert_eq!(cycle.key(), raw);
    }
    if let Some(role) = Role::parse(raw) {
        assert_eq!(role.as_str(), raw);
    }
    if let Some(params) = password::params_of(raw) {
        assert_eq!(params.checked(), Ok(params), "a stored hash's parameters are within range");
    }
}

fn mode_records(raw: &str) {
    if let Ok(name) = KeyName::parse(raw) {
        assert!((1..=KeyName::MAX_BYTES).contains(&name.as_str().len()));
        assert!(!name.as_str().chars().any(char::is_control));
    }
    if let Ok(content_type) = ContentType::parse(raw) {
        assert!(content_type.as_str().len() <= ContentType::MAX_LEN && content_type.as_str().contains('/'));
    }
    if let Ok(url) = storage::parse_service_url(raw) {
        assert!(url.starts_with("http://") || url.starts_with("https://"), "{url:?}");
        let authority = url.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or_default());
        assert!(!authority.unwrap_or_default().is_empty(), "{url:?} has no host");
        assert!(!authority.unwrap_or_default().contains('@'), "{url:?} carries credentials");
        assert!(!url.contains(['?', '#']) && !url.chars().any(|c| c.is_whitespace() || c.is_control()));
        assert_eq!(storage::parse_service_url(&url).as_deref(), Ok(url.as_str()), "a service URL parses to itself");
    }
    if let Ok(bucket) = storage::parse_bucket(raw) {
        assert!((3..=63).contains(&bucket.len()) && !bucket.contains(".."));
        assert!(bucket.parse::<std::net::Ipv4Addr>().is_err());
    }
    if let Ok(credential) = storage::parse_credential("accessKey", raw, 128) {
        assert!((1..=128).contains(&credential.len()) && credential.bytes().all(|b| b.is_ascii_graphic()));
    }
    if let Ok(region) = storage::parse_region(Some(raw)) {
        assert!(!region.is_empty() && region.len() <= 32);
    }
}

fn mode_api_key(data: &[u8]) {
    let raw = text(data);
    if keys::looks_like_key(&raw) {
        assert_eq!(raw.len(), keys::KEY_LEN);
        assert!(raw.starts_with(keys::PREFIX));
    }
    // A key's public identifier never has the shape of a key (it must not authenticate alone).
    if keys::looks_like_label(&raw) {
        assert!(!keys::looks_like_key(&raw));
    }
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(data) {
        headers.insert("x-api-key", value);
        if let Ok(presented) = ApiCredential::from_headers(&headers) {
            let text = std::str::from_utf8(data).expect("a header read as text is UTF-8");
            assert_eq!(presented.key, text.trim());
            assert!(presented.secret.is_none(), "a secret appeared without X-API-Secret");
        }
    } else {
        assert!(ApiCredential::from_headers(&headers).is_err(), "a missing key was accepted");
    }
}

fn mode_forwarded_for(data: &[u8]) {
    let [list, peer, forwarded] = parts::<3>(data);
    let Ok(trusted) = TrustedProxies::parse(&text(list)) else { return };
    let peer: IpAddr = match text(peer).parse() {
        Ok(ip) => ip,
        Err(_) => IpAddr::from([127, 0, 0, 1]),
    };
    let mut headers = HeaderMap::new();
    for value in forwarded.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append("x-forwarded-for", value);
        }
    }
    let client = trusted.client(peer, &headers);
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        assert_eq!(client, peer, "an untrusted peer chose its own address");
    } else if client != peer {
        let named = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .any(|hop| hop.to_canonical() == client);
        assert!(named, "{client} is neither the peer nor in X-Forwarded-For");
    }
}

fn mode_pass_through(data: &[u8]) {
    let [path, query] = parts::<2>(data);
    let (path, query) = (text(path), text(query));
    let base = reqwest::Url::parse("http://127.0.0.1:8080/").expect("base URL");
    let query = (!query.is_empty()).then_some(query.as_str());
    let Some(url) = backend_url(base, &path, query) else { return };
    assert_eq!((url.scheme(), url.host_str(), url.port()), ("http", Some("127.0.0.1"), Some(8080)));
    // The subtree of the first segment (`\` separates segments in http URLs too): `/first` itself
    // or below `/first/`.
    let first = format!("/{}", path.split(['/', '\\']).nth(1).unwrap_or_default());
    let in_subtree = url.path() == first || url.path().starts_with(&format!("{first}/"));
    assert!(in_subtree, "{path:?} left {first} for {}", url.path());
    for segment in url.path().split('/') {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        assert!(decoded != "." && decoded != "..", "{path:?} kept a dot segment: {}", url.path());
    }
}

fn make_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // A key of the real shape (fixed, so the seed does not change each time it is written).
    let key = format!("{}{}", keys::PREFIX, "k".repeat(keys::KEY_LEN - keys::PREFIX.len()));
    vec![
        ("email", seed(0, &[b"  Jane.Doe+vault@Example.COM "])),
        ("org-name", seed(0, &[b"Acme Inc"])),
        ("identity", seed(0, &[b"user_2abcDEF"])),
        (
            "phc",
            seed(
                0,
                &[b"$argon2id$v=19$m=19456,t=2,p=1$BwcHBwcHBwcHBwcHBwcHBw$c29tZSBoYXNoIGJ5dGVzIGZvciB0aGUgZnV6emVyIQ"],
            ),
        ),
        ("plan", seed(0, &[b"starter"])),
        ("key-name", seed(1, &["db-url/é".as_bytes()])),
        ("content-type", seed(1, &[b"application/json; charset=utf-8"])),
        ("service-url", seed(1, &[b"https://s3.example.com:9000/"])),
        ("bucket", seed(1, &[b"org-files.v2"])),
        ("api-key", seed(2, &[key.as_bytes()])),
        (
            "forwarded-for",
            seed(
                3,
                &[b"127.0.0.1, 10.0.0.0/8, fd00::/8", b"127.0.0.1", b"6.6.6.6, 203.0.113.9, 10.1.2.3\n::ffff:10.0.0.1"],
            ),
        ),
        ("pass-through", seed(4, &[b"/admin/orgs/3cdd06cf-0000-4000-8000-000000000000/users", b"limit=10"])),
        ("pass-through-dots", seed(4, &[b"/auth/%2e%2E/kv/x", b""])),
    ]
}

fuzz_target!(init: seeds::write_if_asked(make_seeds), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 5 {
        0 => mode_identity_fields(&text(rest)),
        1 => mode_records(&text(rest)),
        2 => mode_api_key(rest),
        3 => mode_forwarded_for(rest),
        _ => mode_pass_through(rest),
    }
});
