//! Slowing and then refusing repeated sign-in failures. Two counters: one per (client address,
//! email), one per client address. Never one per email alone: anyone could then lock an admin out
//! by failing on purpose. Counted in this process's memory, per instance.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one email from one address before 429.
pub const MAX_PER_ACCOUNT: u32 = 5;
/// Failures from one address, over every email, before 429.
pub const MAX_PER_ADDRESS: u32 = 50;
/// From this many failures of one email from one address on, each answer waits a little longer.
const SLOW_FROM: u32 = 2;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// From this many failures from one address on, every answer to it waits a little.
const SLOW_ADDRESS_FROM: u32 = 10;
/// Registrations from one address per window (each costs an Argon2id hash and an email).
pub const MAX_REGISTRATIONS_PER_ADDRESS: u32 = 20;
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// The unit an address is counted in: IPv4 addresses one by one, IPv6 by /64 (one subscriber
/// usually holds a whole /64, and could otherwise rotate through it for fresh counters).
pub fn bucket(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

struct Counter<K> {
    counts: Mutex<HashMap<K, (u32, Instant)>>,
    max: u32,
    window: Duration,
    next_sweep: Mutex<Instant>,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    fn new(max: u32) -> Self {
        Self::with_window(max, WINDOW)
    }

    fn with_window(max: u32, window: Duration) -> Self {
        Self { counts: Mutex::new(HashMap::new()), max, window, next_sweep: Mutex::new(Instant::now()) }
    }

    /// Counts one attempt; `Err(retry_after)` past the limit (the attempt is then not counted).
    fn count(&self, key: &K, now: Instant) -> Result<u32, Duration> {
        let window = self.window;
        let mut counts = self.counts.lock().expect("throttle lock");
        // Sweep a large map at most once a minute, not on every attempt.
        if counts.len() > SWEEP_ABOVE {
            let mut next = self.next_sweep.lock().expect("throttle lock");
            if now >= *next {
                counts.retain(|_, (_, start)| now.duration_since(*start) < window);
                *next = now + Duration::from_secs(60);
            }
        }
        let entry = counts.entry(key.clone()).or_insert((0, now));
        if now.duration_since(entry.1) >= window {
            *entry = (0, now);
        }
        if entry.0 >= self.max {
            return Err(window.saturating_sub(now.duration_since(entry.1)).max(Duration::from_secs(1)));
        }
        entry.0 += 1;
        Ok(entry.0)
    }

    fn clear(&self, key: &K) {
        self.counts.lock().expect("throttle lock").remove(key);
    }

    fn uncount(&self, key: &K) {
        if let Some(entry) = self.counts.lock().expect("throttle lock").get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

pub struct LoginThrottle {
    per_account: Counter<(IpAddr, String)>,
    per_address: Counter<IpAddr>,
    registrations: Counter<IpAddr>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            per_account: Counter::new(MAX_PER_ACCOUNT),
            per_address: Counter::new(MAX_PER_ADDRESS),
            registrations: Counter::with_window(MAX_REGISTRATIONS_PER_ADDRESS, REGISTRATION_WINDOW),
        }
    }
}

/// What to do with an attempt: go ahead after `delay`, or refuse with 429 for `retry_after`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Proceed { delay: Duration },
    Refuse { retry_after: Duration },
}

impl LoginThrottle {
    /// Counts an attempt before the password is checked, so concurrent guesses cannot all slip past
    /// the limit; a success clears the account's count ([`Self::succeeded`]).
    pub fn attempt(&self, address: IpAddr, account: &str) -> Verdict {
        let now = Instant::now();
        let address = bucket(address);
        let from_address = match self.per_address.count(&address, now) {
            Err(retry_after) => return Verdict::Refuse { retry_after },
            Ok(n) if n > SLOW_ADDRESS_FROM => Duration::from_millis(250),
            Ok(_) => Duration::ZERO,
        };
        match self.per_account.count(&(address, account.to_owned()), now) {
            Err(retry_after) => Verdict::Refuse { retry_after },
            Ok(n) if n > SLOW_FROM => {
                Verdict::Proceed { delay: from_address.max(Duration::from_millis(250 << (n - SLOW_FROM - 1))) }
            }
            Ok(_) => Verdict::Proceed { delay: from_address },
        }
    }

    /// A success: the account's failures are forgotten, and this attempt was no failure of the address.
    pub fn succeeded(&self, address: IpAddr, account: &str) {
        let address = bucket(address);
        self.per_account.clear(&(address, account.to_owned()));
        self.per_address.uncount(&address);
    }

    /// Counts a registration from `address`; past the limit, refuses with 429.
    pub fn register(&self, address: IpAddr) -> Result<(), Duration> {
        self.registrations.count(&bucket(address), Instant::now()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn failures_are_slowed_then_refused_per_address_and_account() {
        let throttle = LoginThrottle::default();
        let verdicts: Vec<_> = (0..6).map(|_| throttle.attempt(ip(1), "a")).collect();
        assert_eq!(verdicts[0], Verdict::Proceed { delay: Duration::ZERO });
        assert_eq!(verdicts[1], Verdict::Proceed { delay: Duration::ZERO });
        assert_eq!(verdicts[2], Verdict::Proceed { delay: Duration::from_millis(250) });
        assert_eq!(verdicts[4], Verdict::Proceed { delay: Duration::from_millis(1000) });
        assert!(matches!(verdicts[5], Verdict::Refuse { .. }));
        // The same email from another address, and another email from this one, are not locked.
        assert_eq!(throttle.attempt(ip(2), "a"), Verdict::Proceed { delay: Duration::ZERO });
        assert_eq!(throttle.attempt(ip(1), "b"), Verdict::Proceed { delay: Duration::ZERO });
    }

    #[test]
    fn many_emails_from_one_address_are_refused() {
        let throttle = LoginThrottle::default();
        for n in 0..MAX_PER_ADDRESS {
            assert!(matches!(throttle.attempt(ip(3), &n.to_string()), Verdict::Proceed { .. }));
        }
        assert!(matches!(throttle.attempt(ip(3), "fresh"), Verdict::Refuse { .. }));
        assert!(matches!(throttle.attempt(ip(4), "fresh"), Verdict::Proceed { .. }));
    }

    #[test]
    fn ipv6_addresses_count_per_slash_64() {
        let throttle = LoginThrottle::default();
        for n in 0..MAX_PER_ACCOUNT {
            let addr: IpAddr = format!("2001:db8:1:2::{n:x}").parse().unwrap();
            assert!(matches!(throttle.attempt(addr, "a"), Verdict::Proceed { .. }));
        }
        assert!(matches!(throttle.attempt("2001:db8:1:2:ffff::1".parse().unwrap(), "a"), Verdict::Refuse { .. }));
        assert!(matches!(throttle.attempt("2001:db8:1:3::1".parse().unwrap(), "a"), Verdict::Proceed { .. }));
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let throttle = LoginThrottle::default();
        for _ in 0..MAX_REGISTRATIONS_PER_ADDRESS {
            assert!(throttle.register(ip(7)).is_ok());
        }
        assert!(throttle.register(ip(7)).is_err());
        assert!(throttle.register(ip(8)).is_ok());
    }

    #[test]
    fn a_success_clears_the_account_count() {
        let throttle = LoginThrottle::default();
        for _ in 0..4 {
            throttle.attempt(ip(1), "a");
        }
        throttle.succeeded(ip(1), "a");
        assert_eq!(throttle.attempt(ip(1), "a"), Verdict::Proceed { delay: Duration::ZERO });
        // Successes never add up to the address's limit.
        for _ in 0..MAX_PER_ADDRESS * 2 {
            assert!(matches!(throttle.attempt(ip(5), "ok"), Verdict::Proceed { .. }));
            throttle.succeeded(ip(5), "ok");
        }
    }
}
