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
/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

struct Counter<K> {
    counts: Mutex<HashMap<K, (u32, Instant)>>,
    max: u32,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    fn new(max: u32) -> Self {
        Self { counts: Mutex::new(HashMap::new()), max }
    }

    /// Counts one attempt; `Err(retry_after)` past the limit (the attempt is then not counted).
    fn count(&self, key: &K, now: Instant) -> Result<u32, Duration> {
        let mut counts = self.counts.lock().expect("throttle lock");
        if counts.len() > SWEEP_ABOVE {
            counts.retain(|_, (_, start)| now.duration_since(*start) < WINDOW);
        }
        let entry = counts.entry(key.clone()).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        if entry.0 >= self.max {
            return Err(WINDOW.saturating_sub(now.duration_since(entry.1)).max(Duration::from_secs(1)));
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
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self { per_account: Counter::new(MAX_PER_ACCOUNT), per_address: Counter::new(MAX_PER_ADDRESS) }
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
        if let Err(retry_after) = self.per_address.count(&address, now) {
            return Verdict::Refuse { retry_after };
        }
        match self.per_account.count(&(address, account.to_owned()), now) {
            Err(retry_after) => Verdict::Refuse { retry_after },
            Ok(n) if n > SLOW_FROM => Verdict::Proceed { delay: Duration::from_millis(250 << (n - SLOW_FROM - 1)) },
            Ok(_) => Verdict::Proceed { delay: Duration::ZERO },
        }
    }

    /// A success: the account's failures are forgotten, and this attempt was no failure of the address.
    pub fn succeeded(&self, address: IpAddr, account: &str) {
        self.per_account.clear(&(address, account.to_owned()));
        self.per_address.uncount(&address);
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
