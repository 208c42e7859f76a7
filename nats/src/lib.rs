//! # harden event fan-out
//!
//! Publishes every committed event to the JetStream stream `HARDEN_EVENTS` for integrations. This
//! crate decides nothing about the domain: it names subjects and message ids, relays, and tails.
//!
//! # Layout
//! - [`relay`] — the follower that publishes events to JetStream, one leader at a time.
//! - [`tail`] — the subscriber behind `harden events tail`, a model for integrators.
//! - [`subject`] — `harden.events.<org_id>.<aggregate>.<event_type>`, so an integrator's credentials
//!   can be limited to `harden.events.<their org>.>`.
//! - [`msg_id`] — `<aggregate_type>:<aggregate_id>:<sequence>`, the `Nats-Msg-Id` subscribers and
//!   JetStream dedupe on.

use uuid::Uuid;

pub const STREAM: &str = "HARDEN_EVENTS";
pub const SUBJECT_PREFIX: &str = "harden.events";
/// Events that belong to no org (the global admin's) are published under this token.
pub const NO_ORG: &str = "global";

pub mod relay;
pub mod tail;

/// The subject of an event. Aggregate and event type names are ASCII identifiers by construction
/// (they come from code, never from users), lower-cased so subjects read uniformly.
/// The servers of `HARDEN_NATS_URL`: one URL, or the comma-separated URLs of a cluster's nodes
/// (the client connects to any that answers and moves to another when its node goes).
pub fn servers(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
}

pub fn subject(org: Option<Uuid>, aggregate_type: &str, event_type: &str) -> String {
    subject_with_prefix(SUBJECT_PREFIX, org, aggregate_type, event_type)
}

/// The same under another prefix (`HARDEN_NATS_SUBJECT_PREFIX`), so that several deployments can
/// share one NATS server.
pub fn subject_with_prefix(prefix: &str, org: Option<Uuid>, aggregate_type: &str, event_type: &str) -> String {
    let org = org.map(|o| o.to_string()).unwrap_or_else(|| NO_ORG.to_owned());
    format!("{prefix}.{org}.{}.{event_type}", aggregate_type.to_ascii_lowercase())
}

/// The JetStream message id of an event: stable across retries, unique per event.
pub fn msg_id(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> String {
    format!("{aggregate_type}:{aggregate_id}:{sequence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nats_url_names_one_server_or_the_nodes_of_a_cluster() {
        assert_eq!(servers("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        assert_eq!(
            servers("nats://a:4222, nats://b:4222,,nats://c:4222 "),
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
    }

    #[test]
    fn subjects_put_the_org_first_so_credentials_can_be_scoped_to_it() {
        let org = Uuid::from_u128(1);
        assert_eq!(subject(Some(org), "User", "UserCreated"), format!("harden.events.{org}.user.UserCreated"));
        assert_eq!(
            subject(None, "User", "GlobalAdminBootstrapped"),
            "harden.events.global.user.GlobalAdminBootstrapped"
        );
    }

    #[test]
    fn message_ids_identify_one_event() {
        assert_eq!(msg_id("Org", "abc", 3), "Org:abc:3");
        assert_ne!(msg_id("Org", "abc", 3), msg_id("Org", "abc", 4));
    }
}
