//! The dashboard's sessions: a random id in an `HttpOnly; Secure; SameSite=Strict` cookie, and
//! on the server (in this process) what it stands for: the credential the pages call the Backend
//! with, a CSRF token every state-changing form carries, and an expiry. The cookie never holds the
//! API key. Kept by the SHA-256 of the id, so a memory dump of the table does not yield cookies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

pub const COOKIE: &str = "harden_session";
/// The sign-in form's token (double submit: the form's field must equal this cookie).
pub const SIGN_IN_COOKIE: &str = "harden_sign_in";

pub struct Session {
    /// The API key the pages call the Backend with (empty for an identity-provider session).
    pub api_key: Zeroizing<String>,
    /// An identity-provider session token, for the Cloud API's pages (None for an API key session).
    pub bearer: Option<Zeroizing<String>>,
    pub csrf: String,
    pub user_id: Uuid,
    pub user_name: String,
    pub org_id: Option<Uuid>,
    pub is_admin: bool,
    expires: Instant,
}

impl Session {
    /// The session `new` would be, not kept anywhere: to try its credential before it starts.
    pub fn probe(new: &NewSession) -> Session {
        Session {
            api_key: new.api_key.clone(),
            bearer: new.bearer.clone(),
            csrf: String::new(),
            user_id: new.user_id,
            user_name: new.user_name.clone(),
            org_id: new.org_id,
            is_admin: new.is_admin,
            expires: Instant::now(),
        }
    }

    /// Signed in through the identity provider (the Cloud API's pages), not with an API key.
    pub fn is_cloud(&self) -> bool {
        self.bearer.is_some()
    }
}

pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], std::sync::Arc<Session>>>,
}

/// 32 random bytes, base64url.
pub fn token() -> String {
    URL_SAFE_NO_PAD.encode(harden_client::random::<32>())
}

fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub struct NewSession {
    pub api_key: Zeroizing<String>,
    pub bearer: Option<Zeroizing<String>>,
    /// An earlier end than the sessions' lifetime (an identity-provider token's expiry).
    pub ends_by: Option<Instant>,
    pub user_id: Uuid,
    pub user_name: String,
    pub org_id: Option<Uuid>,
    pub is_admin: bool,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, map: Mutex::new(HashMap::new()) }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session; answers the cookie's id.
    pub fn start(&self, new: NewSession) -> String {
        let id = token();
        let session = Session {
            api_key: new.api_key,
            bearer: new.bearer,
            csrf: token(),
            user_id: new.user_id,
            user_name: new.user_name,
            org_id: new.org_id,
            is_admin: new.is_admin,
            expires: new.ends_by.map_or(Instant::now() + self.ttl, |end| end.min(Instant::now() + self.ttl)),
        };
        let mut map = self.map.lock().expect("sessions lock");
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(key_of(&id), std::sync::Arc::new(session));
        id
    }

    pub fn get(&self, id: &str) -> Option<std::sync::Arc<Session>> {
        let mut map = self.map.lock().expect("sessions lock");
        let key = key_of(id);
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session on the server: its cookie opens nothing from now on.
    pub fn end(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(&key_of(id));
    }

    /// Ends every session of `user` (after their key was rotated or they were offboarded).
    pub fn end_user(&self, user: Uuid) {
        self.map.lock().expect("sessions lock").retain(|_, s| s.user_id != user);
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for a cookie only this origin's pages under `/ui` send, never to scripts.
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!("{name}={value}; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age={}", max_age.as_secs())
}

pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let sessions = Sessions::new(Duration::from_millis(50));
        let new = || NewSession {
            api_key: Zeroizing::new("hk_x".into()),
            bearer: None,
            ends_by: None,
            user_id: Uuid::nil(),
            user_name: "a".into(),
            org_id: None,
            is_admin: false,
        };
        let id = sessions.start(new());
        assert!(sessions.get(&id).is_some());
        assert!(sessions.get("another").is_none());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none(), "ended on the server");
        let id = sessions.start(new());
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.get(&id).is_none(), "expired");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
