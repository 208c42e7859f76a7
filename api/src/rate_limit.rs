//! Rate limits on the anonymous routes: every request to a route that takes no credentials (sign-in,
//! registration, verification, webhooks, plans, health, the documents) and every request that
//! matches no route spends from its client address's allowance. A token bucket per address (IPv6 by
//! /64), refilled at `HARDEN_ANONYMOUS_RATE_PER_SEC` up to `HARDEN_ANONYMOUS_BURST`; an empty bucket
//! is answered 429 with `Retry-After`. Kept in this process's memory, per instance and per listener.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::OpenApi;

use harden_commands::throttle::bucket;

use crate::error::ApiError;
use crate::extract::TrustedProxies;

/// Addresses remembered before idle ones (full buckets) are dropped.
const SWEEP_ABOVE: usize = 10_000;
/// Addresses remembered at most; past it, new addresses share one allowance until a sweep frees room.
const MAX_ADDRESSES: usize = 100_000;

/// The allowance of one client address on the anonymous routes.
#[derive(Clone, Copy, Debug)]
pub struct AnonymousRate {
    pub per_sec: u32,
    pub burst: u32,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client address. `per_sec == 0` turns the limit off.
pub struct Limiter {
    rate: AnonymousRate,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
    next_sweep: Mutex<Instant>,
}

impl Limiter {
    pub fn new(rate: AnonymousRate) -> Self {
        Self { rate, buckets: Mutex::new(HashMap::new()), next_sweep: Mutex::new(Instant::now()) }
    }

    /// Spends one token of `address`; `Err(wait)` when its bucket is empty.
    pub fn spend(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.rate.per_sec == 0 {
            return Ok(());
        }
        let per_sec = f64::from(self.rate.per_sec);
        let burst = f64::from(self.rate.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            let mut next = self.next_sweep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if now >= *next {
                buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
                *next = now + Duration::from_secs(1);
            }
        }
        let address = Some(bucket(address));
        let key = if buckets.len() < MAX_ADDRESSES || buckets.contains_key(&address) { address } else { None };
        let entry = buckets.entry(key).or_insert(Bucket { tokens: burst, at: now });
        entry.tokens = (entry.tokens + now.duration_since(entry.at).as_secs_f64() * per_sec).min(burst);
        entry.at = now;
        if entry.tokens >= 1.0 {
            entry.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - entry.tokens) / per_sec))
        }
    }
}

/// An operation whose document names no security requirement takes no credentials.
fn takes_no_credentials(op: &Operation) -> bool {
    op.security.as_ref().is_none_or(Vec::is_empty)
}

/// The route templates of `doc` whose operations all take no credentials.
pub fn anonymous_paths(doc: &OpenApi) -> HashSet<String> {
    doc.paths
        .paths
        .iter()
        .filter(|(_, item)| {
            [&item.get, &item.put, &item.post, &item.delete, &item.patch, &item.head, &item.options]
                .into_iter()
                .flatten()
                .all(takes_no_credentials)
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// Documents the 429 the limit answers on every operation of `doc` that takes no credentials.
pub fn document(doc: &mut OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let too_many = ResponseBuilder::new()
        .description("Too many requests from this client address to the anonymous routes; see `Retry-After`")
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build();
    for op in operations_mut(doc) {
        if takes_no_credentials(op) {
            op.responses.responses.entry("429".to_owned()).or_insert_with(|| too_many.clone().into());
        }
    }
}

/// Every operation of `doc`, to be amended.
pub(crate) fn operations_mut(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ]
        .into_iter()
        .flatten()
    })
}

/// Limits the requests of `router` to `anonymous` routes (templates as axum matches them) and to
/// no route at all, per client address as `clients` resolves it.
pub fn layer(router: Router, anonymous: HashSet<String>, rate: AnonymousRate, clients: Arc<TrustedProxies>) -> Router {
    let limiter = Arc::new(Limiter::new(rate));
    let anonymous = Arc::new(anonymous);
    router.layer(axum::middleware::from_fn(move |req: Request<Body>, next: Next| {
        let (limiter, anonymous, clients) = (limiter.clone(), anonymous.clone(), clients.clone());
        async move {
            let limited = req.extensions().get::<MatchedPath>().is_none_or(|p| anonymous.contains(p.as_str()));
            let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip());
            if let (true, Some(peer)) = (limited, peer) {
                if let Err(wait) = limiter.spend(clients.client(peer, req.headers()), Instant::now()) {
                    return too_many(wait);
                }
            }
            next.run(req).await
        }
    }))
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::status(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many requests from this address; retry in {secs} s"),
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    #[test]
    fn a_burst_is_allowed_then_refused_until_refilled() {
        let limiter = Limiter::new(AnonymousRate { per_sec: 2, burst: 3 });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.spend(ip(1), t0).is_ok());
        }
        let wait = limiter.spend(ip(1), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another address has its own allowance.
        assert!(limiter.spend(ip(2), t0).is_ok());
        // Half a second refills one token at 2/s.
        assert!(limiter.spend(ip(1), t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.spend(ip(1), t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn a_refill_never_exceeds_the_burst() {
        let limiter = Limiter::new(AnonymousRate { per_sec: 100, burst: 2 });
        let t0 = Instant::now();
        assert!(limiter.spend(ip(1), t0).is_ok());
        let later = t0 + Duration::from_secs(3600);
        assert!(limiter.spend(ip(1), later).is_ok());
        assert!(limiter.spend(ip(1), later).is_ok());
        assert!(limiter.spend(ip(1), later).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let limiter = Limiter::new(AnonymousRate { per_sec: 1, burst: 1 });
        let t0 = Instant::now();
        assert!(limiter.spend("2001:db8::1".parse().unwrap(), t0).is_ok());
        assert!(limiter.spend("2001:db8::ffff".parse().unwrap(), t0).is_err());
        assert!(limiter.spend("2001:db8:0:1::1".parse().unwrap(), t0).is_ok());
    }

    #[test]
    fn zero_rate_turns_the_limit_off() {
        let limiter = Limiter::new(AnonymousRate { per_sec: 0, burst: 0 });
        let t0 = Instant::now();
        assert!((0..1000).all(|_| limiter.spend(ip(1), t0).is_ok()));
    }
}
