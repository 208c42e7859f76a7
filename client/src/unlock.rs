//! Unlocking a user's private keys: one Argon2id run per unlock, bounded in memory, throttled on
//! failure, and cached for a short time so steady traffic does not pay Argon2id per request.
//!
//! The cache is keyed by an HMAC (under a key drawn at start) of the user id, the sealed keys
//! themselves (so a rekey anywhere, which re-seals them, retires old entries) and the secret. The
//! unlocked keys zeroize themselves when the last reference goes.
//!
//! Concurrent unlocks of one user with one secret (the same cache key) take turns: the first runs
//! Argon2id, the others then find its result in the cache. Without that, a user whose cache entry
//! is cold (a restart, an expiry) and who sends more than [`MAX_FAILURES`] requests at once would
//! be refused 429 with the right secret, every attempt counting before any could succeed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::sync::Semaphore;
use uuid::Uuid;
use zeroize::Zeroizing;

use harden_domain::crypto::{self, CryptoError, KdfParams, Kek, PrivateKeys};

use prometheus_client::metrics::counter::Counter;
use reqwest::StatusCode;

use crate::backend::Me;
use crate::error::Error;

pub const INVALID_SECRET: &str = "invalid user secret";
pub const NO_KEYS: &str = "this user has no keys yet: call POST /v1/keys/generate with X-User-Secret first";

/// Failed unlocks of one user allowed per window before 429.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Unlock-cache hits and misses, for a metrics endpoint.
#[derive(Clone, Debug, Default)]
pub struct UnlockCounts {
    pub hits: Counter,
    pub misses: Counter,
}

/// A user's private keys, and the proof of the secret that unlocked them (which a re-seal presents).
pub struct UnlockedKeys {
    pub keys: PrivateKeys,
    pub seal_proof: Zeroizing<[u8; 32]>,
}

/// One user's unlocked keys: valid for the secret and sealed keys `tag` stands for, until `expires`.
struct Unlocked {
    tag: Zeroizing<[u8; 32]>,
    expires: Instant,
    keys: Arc<UnlockedKeys>,
}

pub struct Unlocker {
    params: KdfParams,
    ttl: Duration,
    /// Permits are MiB of Argon2id memory.
    memory: Arc<Semaphore>,
    memory_budget_mib: u32,
    cache_key: Zeroizing<[u8; 32]>,
    cache: Mutex<HashMap<Uuid, Unlocked>>,
    failures: Mutex<HashMap<Uuid, (u32, Instant)>>,
    counts: UnlockCounts,
    /// One turn at a time per user and cache key: the unlocks in progress and those waiting.
    turns: Arc<Turns>,
}

/// The gate of each (user, cache tag) that has an unlock in progress.
type Turns = Mutex<HashMap<(Uuid, [u8; 32]), Arc<tokio::sync::Mutex<()>>>>;

/// A turn to unlock one user's keys with one secret; when the last waiter is done, the entry goes.
struct Turn {
    key: (Uuid, [u8; 32]),
    turns: Arc<Turns>,
    guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut turns = self.turns.lock().expect("turns lock");
        // The map's reference and this guard's: nobody else waits.
        if Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&self.guard)) <= 2 {
            turns.remove(&self.key);
        }
    }
}

impl Unlocker {
    pub fn new(params: KdfParams, ttl: Duration, memory_budget_mib: u32) -> anyhow::Result<Self> {
        let params = params.checked().map_err(|e| anyhow::anyhow!("Argon2 settings: {e}"))?;
        let needed = params.m_kib.div_ceil(1024);
        anyhow::ensure!(
            memory_budget_mib >= needed,
            "HARDEN_ARGON2_MEMORY_BUDGET_MIB ({memory_budget_mib}) is below one Argon2id run ({needed} MiB)"
        );
        let mut cache_key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(cache_key.as_mut());
        Ok(Self {
            params,
            ttl,
            memory: Arc::new(Semaphore::new(memory_budget_mib as usize)),
            memory_budget_mib,
            cache_key,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            counts: UnlockCounts::default(),
            turns: Arc::default(),
        })
    }

    /// Cache hits and misses, for the metrics endpoint.
    pub fn counts(&self) -> &UnlockCounts {
        &self.counts
    }

    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// One Argon2id run, waiting for memory if other runs use the budget.
    pub async fn derive(&self, secret: &str, salt: [u8; 16], params: KdfParams) -> Result<Kek, Error> {
        // Never dearer than this server's own parameters (or the defaults, if it was configured lower):
        // a stored blob cannot make an unlock cost arbitrarily much.
        let ceiling = KdfParams {
            m_kib: self.params.m_kib.max(KdfParams::DEFAULT.m_kib),
            t: self.params.t.max(KdfParams::DEFAULT.t),
            p: self.params.p.max(KdfParams::DEFAULT.p),
        };
        if !params.within(&ceiling) {
            return Err(Error::status(
                StatusCode::CONFLICT,
                "the sealed keys use key-derivation parameters above this server's limits",
            ));
        }
        let mib = params.m_kib.div_ceil(1024).min(self.memory_budget_mib);
        let permit = self
            .memory
            .clone()
            .acquire_many_owned(mib)
            .await
            .map_err(|_| anyhow::anyhow!("the Argon2 semaphore closed"))?;
        let secret = Zeroizing::new(secret.as_bytes().to_vec());
        // The permit moves into the blocking task: a client that disconnects does not free the
        // memory of a run that is still going.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crypto::derive_kek(&secret, salt, params)
        })
        .await
        .map_err(|e| anyhow::anyhow!("key derivation task failed: {e}"))?
        .map_err(|e| match e {
            CryptoError::WeakParameters => Error::status(StatusCode::UNAUTHORIZED, INVALID_SECRET),
            other => anyhow::anyhow!("key derivation failed: {other}").into(),
        })
    }

    /// The user's private keys, from the cache or by unlocking the sealed keys with `secret`.
    pub async fn unlock(&self, me: &Me, secret: &str) -> Result<Arc<UnlockedKeys>, Error> {
        let (Some(ecc), Some(kyber)) = (&me.encrypted_private_key_ecc_b64, &me.encrypted_private_key_kyber_b64) else {
            return Err(Error::status(StatusCode::CONFLICT, NO_KEYS));
        };
        let tag = self.cache_tag(me.id, ecc, kyber, secret);
        if let Some(keys) = self.cached(me.id, &tag) {
            self.counts.hits.inc();
            return Ok(keys);
        }
        let _turn = self.turn(me.id, &tag).await;
        // Another request with the same secret may have unlocked them while this one waited.
        if let Some(keys) = self.cached(me.id, &tag) {
            self.counts.hits.inc();
            return Ok(keys);
        }
        self.counts.misses.inc();
        // The attempt counts before the (slow) derivation, so concurrent guesses cannot all slip past
        // the limit; a success clears the count.
        self.count_attempt(me.id)?;
        let invalid = || Error::status(StatusCode::UNAUTHORIZED, INVALID_SECRET);
        let (ecc, kyber) =
            (STANDARD.decode(ecc).map_err(|_| invalid())?, STANDARD.decode(kyber).map_err(|_| invalid())?);
        let (params, salt) = crypto::seal_header(&ecc).map_err(|_| invalid())?;
        let kek = self.derive(secret, salt, params).await?;
        match crypto::open_private_keys(&kek, me.id, &ecc, &kyber) {
            Ok(keys) => {
                let keys = Arc::new(UnlockedKeys { keys, seal_proof: crypto::seal_proof(&kek, me.id) });
                self.failures.lock().expect("failures lock").remove(&me.id);
                if !self.ttl.is_zero() {
                    let mut cache = self.cache.lock().expect("cache lock");
                    // Expired entries go when new ones come, not on every lookup.
                    let now = Instant::now();
                    cache.retain(|_, entry| entry.expires > now);
                    cache.insert(me.id, Unlocked { tag, expires: now + self.ttl, keys: keys.clone() });
                }
                Ok(keys)
            }
            Err(_) => Err(invalid()),
        }
    }

    /// Waits for the turn to unlock `user`'s keys with the secret `tag` stands for.
    async fn turn(&self, user: Uuid, tag: &[u8; 32]) -> Turn {
        let key = (user, *tag);
        let gate = self.turns.lock().expect("turns lock").entry(key).or_default().clone();
        Turn { key, turns: self.turns.clone(), guard: gate.lock_owned().await }
    }

    /// Counts an attempt to open something with a secret of `user` (a recovery), under the same
    /// per-user limit as unlocks; [`Self::succeeded`] clears it.
    pub fn attempt(&self, user: Uuid) -> Result<(), Error> {
        self.count_attempt(user)
    }

    pub fn succeeded(&self, user: Uuid) {
        self.failures.lock().expect("failures lock").remove(&user);
    }

    /// Drops the user's unlocked keys (rekey, API key rotation).
    pub fn forget(&self, user: Uuid) {
        self.cache.lock().expect("cache lock").remove(&user);
    }

    fn cache_tag(&self, user: Uuid, ecc: &str, kyber: &str, secret: &str) -> Zeroizing<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.cache_key.as_ref()).expect("any key length");
        for part in [user.as_bytes().as_slice(), ecc.as_bytes(), &[0], kyber.as_bytes(), &[0], secret.as_bytes()] {
            mac.update(part);
        }
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    fn cached(&self, user: Uuid, tag: &[u8; 32]) -> Option<Arc<UnlockedKeys>> {
        let cache = self.cache.lock().expect("cache lock");
        match cache.get(&user) {
            // The tag is an HMAC under a key nobody else holds: comparing it leaks nothing useful.
            Some(entry) if entry.expires > Instant::now() && entry.tag.as_ref() == tag => Some(entry.keys.clone()),
            _ => None,
        }
    }

    /// Counts one unlock attempt of `user` (a success clears the count); past the limit within the
    /// window, refuses with 429.
    fn count_attempt(&self, user: Uuid) -> Result<(), Error> {
        let mut failures = self.failures.lock().expect("failures lock");
        let entry = failures.entry(user).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        if entry.0 >= MAX_FAILURES {
            return Err(Error::status(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed unlocks for this user; wait a minute",
            ));
        }
        entry.0 += 1;
        Ok(())
    }
}
