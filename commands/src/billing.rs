//! Stripe, for paid plans: the customer, its payment method and the subscription, created during
//! verification; cancelling a subscription; and Stripe's webhook signatures.
//!
//! Every request carries an `Idempotency-Key` derived from the registration and its payment
//! attempt, so a verification retried after a crash or a timeout gets Stripe's first answer back
//! instead of a second charge; a refused attempt moves the attempt on, so fixing the problem and
//! trying again is a new request rather than a replay of the refusal. Answers are read into small
//! types of our own (ids and status), so a newer Stripe API shape cannot break verification.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::subscription::{
    CancelSubscription, CreateSubscription, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior,
};
use stripe_core::customer::{CreateCustomer, UpdateCustomer, UpdateCustomerInvoiceSettings};
use stripe_payment::payment_method::AttachPaymentMethod;
use subtle::ConstantTimeEq;

use harden_domain::plan::{Plan, Subscription};
use harden_domain::registration::BillingCycle;
use harden_domain::OrgId;

/// How far a webhook's signed timestamp may be from now (Stripe's libraries use five minutes).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// The metadata key on a subscription that names its org.
pub const ORG_METADATA_KEY: &str = "harden_org_id";

pub struct StripeConfig {
    pub secret_key: String,
    /// `https://api.stripe.com` in production; a local stand-in in tests.
    pub api_base: String,
    pub timeout: Duration,
    /// The price of each paid plan and billing cycle.
    pub prices: HashMap<(Plan, BillingCycle), String>,
    pub webhook_secret: Option<String>,
}

pub struct Stripe {
    client: Client,
    prices: HashMap<(Plan, BillingCycle), String>,
    webhook_secret: Option<String>,
}

/// Why Stripe did not subscribe.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Stripe answered and refused (a declined card, a payment method it does not accept): the
    /// message is Stripe's, for the applicant.
    #[error("{0}")]
    Refused(String),
    /// No answer, or Stripe failing: the outcome is unknown, and the same request may be retried.
    #[error("{0}")]
    Unavailable(String),
}

/// What a verification asks Stripe for.
pub struct Checkout<'a> {
    pub registration_id: &'a str,
    pub attempt: u32,
    pub email: &'a str,
    pub admin_name: &'a str,
    pub org_name: &'a str,
    pub org_id: OrgId,
    pub payment_method: &'a str,
    pub plan: Plan,
    pub billing_cycle: BillingCycle,
}

/// The parts of Stripe's objects harden reads.
#[derive(miniserde::Deserialize)]
struct StripeObject {
    id: String,
}

/// A verified webhook, as far as harden cares.
#[derive(Debug, PartialEq, Eq)]
pub enum WebhookEvent {
    SubscriptionEnded { org_id: OrgId, subscription_id: String, reason: String },
    Ignored,
}

fn classify(e: StripeError) -> BillingError {
    match e {
        // The applicant's problem (a declined card, an unknown payment method). A 401/403 is this
        // server's key, 409/429 a request in flight or a rate limit, an idempotency error a retry
        // whose parameters changed (a price setting edited meanwhile): those are not refusals.
        StripeError::Stripe(api, 400 | 402 | 404) if api.type_.as_str() != "idempotency_error" => {
            let mut reason = api.message.clone().unwrap_or_else(|| api.type_.as_str().to_owned());
            if let Some(code) = api.decline_code.as_deref().or(api.code.as_ref().map(|c| c.as_str())) {
                reason = format!("{reason} ({code})");
            }
            BillingError::Refused(reason)
        }
        StripeError::Stripe(api, status) => BillingError::Unavailable(format!(
            "Stripe answered {status}: {}",
            api.message.as_deref().unwrap_or(api.type_.as_str())
        )),
        StripeError::Timeout => BillingError::Unavailable("Stripe did not answer in time".into()),
        StripeError::ClientError(e) => BillingError::Unavailable(format!("Stripe is unreachable: {e}")),
        // A POST whose answer could not be read may still have taken effect: unknown, retry.
        StripeError::JSONDeserialize(e) => BillingError::Unavailable(format!("unexpected answer from Stripe: {e}")),
        StripeError::ConfigError(e) => BillingError::Unavailable(format!("Stripe client: {e}")),
    }
}

fn idempotent(key: String) -> RequestStrategy {
    RequestStrategy::Idempotent(IdempotencyKey::new(key).expect("keys are 1 to 255 characters"))
}

impl Stripe {
    pub fn new(config: StripeConfig) -> anyhow::Result<Self> {
        for (plan, cycle) in crate::onboarding::paid_plans() {
            anyhow::ensure!(
                config.prices.get(&(plan, cycle)).is_some_and(|p| !p.is_empty()),
                "Stripe is configured but the price of {} {} is not (HARDEN_STRIPE_PRICE_{}_{})",
                plan.key(),
                cycle.key(),
                plan.key().to_uppercase(),
                cycle.key().to_uppercase()
            );
        }
        let client = ClientBuilder::new(config.secret_key)
            .url(config.api_base)
            .timeout(config.timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("Stripe client: {e}"))?;
        Ok(Self { client, prices: config.prices, webhook_secret: config.webhook_secret })
    }

    pub fn webhooks_enabled(&self) -> bool {
        self.webhook_secret.is_some()
    }

    /// Creates the customer, attaches and defaults the payment method, and subscribes it to the
    /// plan's price, failing rather than leaving an incomplete subscription.
    pub async fn subscribe(&self, c: &Checkout<'_>) -> Result<Subscription, BillingError> {
        let price = self
            .prices
            .get(&(c.plan, c.billing_cycle))
            .ok_or_else(|| BillingError::Refused(format!("no price is configured for {}", c.plan.key())))?;
        let key = |step: &str| format!("harden-registration-{}-{step}", c.registration_id);
        let attempt_key = |step: &str| format!("harden-registration-{}-{step}-{}", c.registration_id, c.attempt);
        let metadata: HashMap<String, String> = [(ORG_METADATA_KEY.to_owned(), c.org_id.to_string())].into();

        let customer: StripeObject = CreateCustomer::new()
            .email(c.email)
            .name(c.admin_name)
            .description(c.org_name)
            .metadata(metadata.clone())
            .build()
            .customize()
            .request_strategy(idempotent(key("customer")))
            .send(&self.client)
            .await
            .map_err(classify)?;
        AttachPaymentMethod::new(c.payment_method)
            .customer(customer.id.as_str())
            .build()
            .customize::<StripeObject>()
            .request_strategy(idempotent(attempt_key("attach")))
            .send(&self.client)
            .await
            .map_err(classify)?;
        let mut invoice_settings = UpdateCustomerInvoiceSettings::new();
        invoice_settings.default_payment_method = Some(c.payment_method.to_owned());
        UpdateCustomer::new(customer.id.as_str())
            .invoice_settings(invoice_settings)
            .build()
            .customize::<StripeObject>()
            .request_strategy(idempotent(attempt_key("default-payment-method")))
            .send(&self.client)
            .await
            .map_err(classify)?;
        let mut item = CreateSubscriptionItems::new();
        item.price = Some(price.clone());
        let subscription: StripeObject = CreateSubscription::new()
            .customer(customer.id.as_str())
            .items(vec![item])
            .default_payment_method(c.payment_method)
            .payment_behavior(CreateSubscriptionPaymentBehavior::ErrorIfIncomplete)
            .metadata(metadata)
            .build()
            .customize()
            .request_strategy(idempotent(attempt_key("subscription")))
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(Subscription { customer_id: customer.id, subscription_id: subscription.id })
    }

    /// Cancels a subscription at once (cancelling one twice is harmless).
    pub async fn cancel(&self, subscription_id: &str, registration_id: &str) -> Result<(), BillingError> {
        CancelSubscription::new(subscription_id)
            .build()
            .customize::<StripeObject>()
            .request_strategy(idempotent(format!("harden-registration-{registration_id}-cancel")))
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Checks a webhook's `Stripe-Signature` (HMAC-SHA256 of `"{t}.{body}"` under the endpoint
    /// secret, `t` within five minutes of `now`) and reads what harden acts on.
    pub fn webhook_event(&self, signature: &str, body: &[u8], now: i64) -> Result<WebhookEvent, &'static str> {
        let secret = self.webhook_secret.as_deref().ok_or("Stripe webhooks are not configured on this server")?;
        verify_signature(secret, signature, body, now)?;
        parse_event(body)
    }
}

/// Stripe's webhook signature scheme: `t=<unix time>,v1=<hex HMAC-SHA256>` (several `v1` may be
/// present while a secret rolls over; one matching is enough).
pub fn verify_signature(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), &'static str> {
    const INVALID: &str = "invalid Stripe-Signature";
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.extend(hex::decode(sig).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(INVALID)?;
    if now.abs_diff(timestamp) > SIGNATURE_TOLERANCE_SECS as u64 {
        return Err("Stripe-Signature timestamp is outside the tolerance");
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if signatures.iter().any(|sig| bool::from(sig.as_slice().ct_eq(expected.as_slice()))) {
        Ok(())
    } else {
        Err(INVALID)
    }
}

/// Reads a verified webhook's body. Public for the fuzz targets (`fuzz/`) only.
#[doc(hidden)]
pub fn parse_event(body: &[u8]) -> Result<WebhookEvent, &'static str> {
    let event: serde_json::Value = serde_json::from_slice(body).map_err(|_| "the webhook body is not JSON")?;
    let kind = event["type"].as_str().ok_or("the webhook event has no type")?;
    let object = &event["data"]["object"];
    let status = object["status"].as_str().unwrap_or_default();
    let reason = match (kind, status) {
        ("customer.subscription.deleted", _) => "deleted",
        ("customer.subscription.updated", "unpaid" | "canceled" | "incomplete_expired") => status,
        _ => return Ok(WebhookEvent::Ignored),
    };
    let (Some(subscription_id), Some(org_id)) =
        (object["id"].as_str(), object["metadata"][ORG_METADATA_KEY].as_str().and_then(|id| id.parse::<OrgId>().ok()))
    else {
        // A subscription harden did not create: not ours to act on.
        return Ok(WebhookEvent::Ignored);
    };
    Ok(WebhookEvent::SubscriptionEnded {
        org_id,
        subscription_id: subscription_id.to_owned(),
        reason: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked_with_the_secret_body_and_time() {
        let body = r#"{"type":"ping"}"#;
        let header = sign("whsec_a", 1000, body);
        assert!(verify_signature("whsec_a", &header, body.as_bytes(), 1100).is_ok());
        assert!(verify_signature("whsec_b", &header, body.as_bytes(), 1100).is_err());
        assert!(verify_signature("whsec_a", &header, b"{\"type\":\"pong\"}", 1100).is_err());
        assert!(verify_signature("whsec_a", &header, body.as_bytes(), 1000 + SIGNATURE_TOLERANCE_SECS + 1).is_err());
        assert!(verify_signature("whsec_a", "", body.as_bytes(), 1000).is_err());
        assert!(verify_signature("whsec_a", "t=1000,v1=zz", body.as_bytes(), 1000).is_err());
        assert!(verify_signature("whsec_a", "t=-9223372036854775808,v1=00", body.as_bytes(), 1000).is_err());
        // A rolled secret: one of several v1 values matching is enough.
        let rolled = format!("{},v1={}", sign("whsec_old", 1000, body), &sign("whsec_a", 1000, body)[10..]);
        assert!(verify_signature("whsec_a", &rolled, body.as_bytes(), 1000).is_ok());
    }

    #[test]
    fn only_ended_subscriptions_of_harden_orgs_are_acted_on() {
        let org = OrgId::from_uuid(uuid::Uuid::from_u128(9));
        let event = |kind: &str, status: &str, metadata: serde_json::Value| {
            serde_json::json!({ "type": kind, "data": { "object": { "id": "sub_1", "status": status, "metadata": metadata } } })
                .to_string()
        };
        let ours = serde_json::json!({ ORG_METADATA_KEY: org.to_string() });
        let ended = |reason: &str| WebhookEvent::SubscriptionEnded {
            org_id: org,
            subscription_id: "sub_1".into(),
            reason: reason.into(),
        };
        assert_eq!(
            parse_event(event("customer.subscription.deleted", "canceled", ours.clone()).as_bytes()),
            Ok(ended("deleted"))
        );
        assert_eq!(
            parse_event(event("customer.subscription.updated", "unpaid", ours.clone()).as_bytes()),
            Ok(ended("unpaid"))
        );
        assert_eq!(
            parse_event(event("customer.subscription.updated", "active", ours.clone()).as_bytes()),
            Ok(WebhookEvent::Ignored)
        );
        assert_eq!(
            parse_event(event("customer.subscription.deleted", "canceled", serde_json::json!({})).as_bytes()),
            Ok(WebhookEvent::Ignored)
        );
        assert!(parse_event(b"not json").is_err());
    }
}
