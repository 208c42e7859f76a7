//! Self-service onboarding: registration, email verification (with Stripe for paid plans), and
//! org-admin sign-in.
//!
//! Verification is a sequence of steps that are each idempotent, so a verification that stopped
//! anywhere (a crash, a timeout, Stripe unreachable) finishes on the next try and never does a step
//! twice: every Stripe request carries an `Idempotency-Key` derived from the registration and its
//! payment attempt; the email is claimed for the registration (one winner per address); the org and
//! its first admin have ids derived from the registration; completing it makes the token single use.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use harden_domain::email_claim::{EmailClaim, EmailClaimCommand};
use harden_domain::org::OrgCommand;
use harden_domain::plan::{Plan, Subscription};
use harden_domain::registration::{
    Application, BillingCycle, Registration, RegistrationCommand, RegistrationError, COUNTRIES,
};
use harden_domain::user::UserCommand;
use harden_domain::values::{Email, OrgName, UserName};
use harden_domain::{OrgId, Role, UserId};

use crate::billing::{BillingError, Checkout, Stripe};
use crate::bus::{Commands, Committed, Meta};
use crate::error::Error;
use crate::keys;
use crate::mail::Mailer;
use crate::passwords::Passwords;
use crate::service::{parse_plan, Harden};
use crate::throttle::{LoginThrottle, Verdict};

pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longer passwords are refused rather than hashed: Argon2id's cost grows with the input.
pub const MAX_PASSWORD_BYTES: usize = 1024;
const TOKEN_BYTES: usize = 32;
pub const PAID_PLANS_UNAVAILABLE: &str = "paid plans are not available on this server";
pub const INVALID_LOGIN: &str = "invalid email or password";

/// A registration as the caller sent it.
pub struct RegistrationRequest<'a> {
    pub org_name: &'a str,
    pub admin_name: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub country_code: &'a str,
    pub plan: Option<&'a str>,
    pub billing_cycle: Option<&'a str>,
    pub payment_method: Option<&'a str>,
}

/// The answer to a registration: the token itself only when no email can carry it.
pub struct Registered {
    pub verification_token: Option<SecretString>,
}

pub struct OnboardingConfig {
    pub token_ttl: Duration,
    /// The public base URL verification links point at (the Proxy, when it is the edge).
    pub public_url: String,
}

pub struct Onboarding {
    harden: Arc<Harden>,
    registrations: Commands<Registration>,
    claims: Commands<EmailClaim>,
    passwords: Passwords,
    throttle: LoginThrottle,
    mailer: Option<Mailer>,
    stripe: Option<Stripe>,
    config: OnboardingConfig,
}

fn parse_payment_method(pm: &str) -> Result<String, Error> {
    let valid = pm.starts_with("pm_") && pm.len() <= 255 && pm.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(Error::invalid("stripePaymentMethodId is not a Stripe payment method id (pm_…)"));
    }
    Ok(pm.to_owned())
}

fn validate(req: &RegistrationRequest<'_>, stripe: bool) -> Result<Application, Error> {
    let org_name = OrgName::parse(req.org_name).map_err(|e| Error::invalid(e.0.replace("name", "orgName")))?;
    let admin_name = UserName::parse(req.admin_name).map_err(|e| Error::invalid(e.0.replace("name", "adminName")))?;
    let email = Email::parse(req.email)?;
    if req.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::invalid(format!("password must be at least {MIN_PASSWORD_CHARS} characters")));
    }
    if req.password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(format!("password must be at most {MAX_PASSWORD_BYTES} bytes")));
    }
    if !COUNTRIES.contains(&req.country_code) {
        return Err(Error::invalid(format!(
            "countryCode '{}' is not available; choose one of {}",
            req.country_code,
            COUNTRIES.join(", ")
        )));
    }
    let plan = parse_plan(req.plan.ok_or_else(|| Error::invalid("plan is required"))?)?;
    let billing_cycle = match req.billing_cycle {
        None => BillingCycle::Monthly,
        Some(raw) => BillingCycle::parse(raw)
            .ok_or_else(|| Error::invalid(format!("unknown billingCycle '{raw}'; choose monthly or annual")))?,
    };
    let payment_method = match (plan.is_paid(), req.payment_method) {
        (false, _) => None,
        (true, _) if !stripe => return Err(Error::invalid(PAID_PLANS_UNAVAILABLE)),
        (true, None) => return Err(Error::invalid("stripePaymentMethodId is required for paid plans")),
        (true, Some(pm)) => {
            let valid =
                pm.starts_with("pm_") && pm.len() <= 255 && pm.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(Error::invalid("stripePaymentMethodId is not a Stripe payment method id (pm_…)"));
            }
            Some(pm.to_owned())
        }
    };
    Ok(Application {
        org_name,
        admin_name,
        email,
        password_hash: String::new(),
        country_code: req.country_code.to_owned(),
        plan,
        billing_cycle,
        payment_method,
    })
}

impl Onboarding {
    pub fn new(
        harden: Arc<Harden>,
        passwords: Passwords,
        mailer: Option<Mailer>,
        stripe: Option<Stripe>,
        config: OnboardingConfig,
    ) -> Self {
        let (registrations, claims) = {
            let wakeup = harden.wakeup();
            (Commands::new(harden.pool().clone(), wakeup.clone()), Commands::new(harden.pool().clone(), wakeup))
        };
        Self { harden, registrations, claims, passwords, throttle: LoginThrottle::default(), mailer, stripe, config }
    }

    /// Prepares what the first sign-in would otherwise pay for (the dummy hash).
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        self.passwords.warm_up().await
    }

    pub fn stripe(&self) -> Option<&Stripe> {
        self.stripe.as_ref()
    }

    fn registration_id(&self, token: &str) -> String {
        self.harden.ids().hash("registration", token)
    }

    fn claim_id(&self, email: &Email) -> String {
        self.harden.ids().hash("email", email.as_str())
    }

    /// Records a pending registration and sends the verification email (or, to an address that
    /// already has an account, an email saying so: the answer is the same either way).
    pub async fn register(
        &self,
        req: RegistrationRequest<'_>,
        client: IpAddr,
        meta: Meta,
    ) -> Result<Registered, Error> {
        let mut application = validate(&req, self.stripe.is_some())?;
        // Each registration costs an Argon2id hash and sends an email: bounded per client address.
        self.throttle
            .register(client)
            .map_err(|retry_after| Error::Throttled { retry_after_secs: retry_after.as_secs() })?;
        application.password_hash = self.passwords.hash(req.password).await?;
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = SecretString::from(URL_SAFE_NO_PAD.encode(bytes));
        let registration_id = self.registration_id(token.expose_secret());
        let expires_at = Utc::now() + self.config.token_ttl;
        let email = application.email.clone();
        let org_name = application.org_name.as_str().to_owned();
        let command =
            RegistrationCommand::Request { registration_id: registration_id.clone(), application, expires_at };
        self.registrations.execute(&registration_id, command, &meta).await?;
        let Some(mailer) = &self.mailer else {
            return Ok(Registered { verification_token: Some(token) });
        };
        let exists = self.claims.load(&self.claim_id(&email)).await?.holder().is_some();
        let base = self.config.public_url.trim_end_matches('/');
        let (subject, body) = if exists {
            (
                "Your harden account".to_owned(),
                format!(
                    "Someone asked to register a new harden organization with this email address, which already \
                     has an account.\n\nIf it was you, sign in instead: POST {base}/auth/orgadmin/login with your \
                     email and password.\nIf it was not, you can ignore this email: nothing was created.\n"
                ),
            )
        } else {
            (
                format!("Verify your email to create {org_name} on harden"),
                format!(
                    "Welcome to harden.\n\nTo create the organization \"{org_name}\", verify your email address by \
                     opening:\n\n{base}/auth/orgadmin/verify?token={}\n\nThe link works once and expires at {} (UTC). \
                     If you did not ask for this, ignore this email.\n",
                    token.expose_secret(),
                    expires_at.format("%Y-%m-%d %H:%M")
                ),
            )
        };
        mailer.send(email.as_str(), &subject, body).await.map_err(|e| {
            tracing::warn!(error = format!("{e:#}"), "sending a registration email failed");
            Error::Upstream("the verification email could not be sent; try registering again later".into())
        })?;
        Ok(Registered { verification_token: None })
    }

    /// Finishes the registration `token` names: pays (paid plans), claims the email, creates the
    /// org and its first admin, and answers the admin's API key.
    pub async fn verify(
        &self,
        token: &str,
        payment_method: Option<&str>,
        meta: Meta,
    ) -> Result<(SecretString, Committed), Error> {
        let invalid = || Error::invalid("the verification token is invalid");
        if token.len() != 43 || URL_SAFE_NO_PAD.decode(token).is_err() {
            return Err(invalid());
        }
        let payment_method = payment_method.map(parse_payment_method).transpose()?;
        let registration_id = self.registration_id(token);
        let mut registration = self.registrations.load(&registration_id).await?;
        // Another card after a refusal: recorded first, then used by this attempt.
        if let Some(pm) = payment_method {
            registration.check_open(Utc::now())?;
            if !registration.application().is_some_and(|a| a.plan.is_paid()) {
                return Err(Error::invalid("stripePaymentMethodId is only for paid plans"));
            }
            let change = RegistrationCommand::ChangePaymentMethod { payment_method: pm };
            self.registrations.execute(&registration_id, change, &meta).await?;
            registration = self.registrations.load(&registration_id).await?;
        }
        let application = registration.application().ok_or_else(invalid)?.clone();
        let claim_id = self.claim_id(&application.email);
        let holder = self.claims.load(&claim_id).await?.holder().map(|h| h.registration_id.clone());
        match registration.check_open(Utc::now()) {
            // Expired, but this registration already holds the email (it stopped after claiming
            // it): finish it rather than strand the address.
            Err(RegistrationError::Expired) if holder.as_deref() == Some(registration_id.as_str()) => {}
            other => other?,
        }
        if holder.as_ref().is_some_and(|h| *h != registration_id) {
            // Another registration of this address won; if this one had paid, undo the payment.
            self.cancel_payment(&registration_id, registration.subscription()).await;
            return Err(Error::Conflict(harden_domain::email_claim::EmailClaimError::Taken.to_string()));
        }
        let org_id = OrgId::of_registration(&registration_id);
        let user_id = UserId::first_admin_of(org_id);
        let subscription = match (application.plan.is_paid(), registration.subscription()) {
            (false, _) => None,
            (true, Some(paid)) => Some(paid.clone()),
            (true, None) => Some(self.pay(&registration_id, &registration, &application, org_id, &meta).await?),
        };
        let claim = EmailClaimCommand::Claim {
            registration_id: registration_id.clone(),
            org_id,
            user_id,
            password_hash: application.password_hash.clone(),
        };
        if let Err(e) = self.claims.execute(&claim_id, claim, &meta).await {
            // Another registration of this address won the race after this one paid: undo the
            // payment rather than leave a subscription without an org.
            if matches!(e, Error::Conflict(_)) {
                self.cancel_payment(&registration_id, subscription.as_ref()).await;
            }
            return Err(e);
        }
        let org_meta = meta.clone().with_org(org_id);
        let org = org_id.to_string();
        if !self.harden.orgs.load(&org).await?.exists() {
            let create = OrgCommand::CreateOrg {
                org_id,
                name: application.org_name.clone(),
                plan: application.plan,
                subscription: subscription.clone(),
            };
            match self.harden.orgs.execute(&org, create, &org_meta).await {
                // A concurrent verification of the same token created it: the same org.
                Err(Error::Conflict(_)) => {}
                other => {
                    other?;
                }
            }
        }
        let key = keys::draw();
        let user = user_id.to_string();
        let create = UserCommand::CreateUser {
            user_id,
            org_id,
            name: application.admin_name.clone(),
            role: Role::OrgAdmin,
            public_keys: None,
            key: Some(key.issued.clone()),
        };
        // Created by an earlier try that stopped before completing, or by a concurrent one: this
        // request's key goes in only if it is the one that completes the registration, so of two
        // verifications of one token the key answered is the key that works.
        let existed = match self.harden.users.execute(&user, create, &org_meta).await {
            Err(Error::Conflict(_)) => true,
            other => other.map(|_| false)?,
        };
        let complete = RegistrationCommand::Complete { org_id, user_id };
        let mut committed = self.registrations.execute(&registration_id, complete, &org_meta).await?;
        if existed {
            let rotate = UserCommand::RotateApiKey { key: key.issued };
            committed = self.harden.users.execute(&user, rotate, &org_meta).await?;
        }
        Ok((key.plaintext, committed))
    }

    async fn pay(
        &self,
        registration_id: &str,
        registration: &Registration,
        application: &Application,
        org_id: OrgId,
        meta: &Meta,
    ) -> Result<Subscription, Error> {
        let stripe = self.stripe.as_ref().ok_or_else(|| Error::invalid(PAID_PLANS_UNAVAILABLE))?;
        let payment_method = application
            .payment_method
            .as_deref()
            .ok_or_else(|| Error::invalid("stripePaymentMethodId is required for paid plans"))?;
        let checkout = Checkout {
            registration_id,
            attempt: registration.payment_attempt(),
            email: application.email.as_str(),
            admin_name: application.admin_name.as_str(),
            org_name: application.org_name.as_str(),
            org_id,
            payment_method,
            plan: application.plan,
            billing_cycle: application.billing_cycle,
        };
        self.registrations.execute(registration_id, RegistrationCommand::RecordPaymentStarted, meta).await?;
        match stripe.subscribe(&checkout).await {
            Ok(subscription) => {
                let record = RegistrationCommand::RecordPaid { subscription: subscription.clone() };
                self.registrations.execute(registration_id, record, meta).await?;
                Ok(subscription)
            }
            Err(BillingError::Refused(reason)) => {
                // The next try is a new attempt: new idempotency keys, so Stripe does not replay this.
                let record = RegistrationCommand::RecordPaymentRefused { reason: reason.clone() };
                self.registrations.execute(registration_id, record, meta).await?;
                Err(Error::PaymentRefused(format!("Stripe refused the payment: {reason}")))
            }
            Err(BillingError::Unavailable(reason)) => {
                tracing::warn!(reason = %reason, "Stripe unavailable during verification");
                Err(Error::Upstream(format!("Stripe could not be reached ({reason}); try the same link again later")))
            }
        }
    }

    /// Cancels the subscription of a registration that cannot become an org (best effort: logged
    /// when it fails, for an operator to finish in Stripe).
    async fn cancel_payment(&self, registration_id: &str, subscription: Option<&Subscription>) {
        if let (Some(paid), Some(stripe)) = (subscription, &self.stripe) {
            if let Err(e) = stripe.cancel(&paid.subscription_id, registration_id).await {
                tracing::error!(error = %e, subscription = %paid.subscription_id, "cancelling the subscription of a registration that lost its email failed; cancel it in Stripe");
            }
        }
    }

    /// Signs an org admin in: a fresh API key, and the previous ones stop working. Every failure
    /// is the same 401 after the same work (an unknown email is checked against a dummy hash).
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        meta: Meta,
    ) -> Result<(SecretString, Committed), Error> {
        let email = Email::parse(email)?;
        let account = self.claim_id(&email);
        let delay = match self.throttle.attempt(client, &account) {
            Verdict::Refuse { retry_after } => {
                return Err(Error::Throttled { retry_after_secs: retry_after.as_secs() })
            }
            Verdict::Proceed { delay } => delay,
        };
        let claim = self.claims.load(&account).await?;
        let holder = claim.holder();
        let matched = password.len() <= MAX_PASSWORD_BYTES
            && self.passwords.verify(holder.map(|h| h.password_hash.as_str()), password).await?;
        if let (true, Some(holder)) = (matched, holder) {
            let key = keys::draw();
            let rotate = UserCommand::RotateApiKey { key: key.issued };
            match self.harden.users.execute(&holder.user_id.to_string(), rotate, &meta.with_org(holder.org_id)).await {
                Ok(committed) => {
                    self.throttle.succeeded(client, &account);
                    return Ok((key.plaintext, committed));
                }
                // Offboarded since: the same answer as a wrong password.
                Err(Error::Conflict(_) | Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        tokio::time::sleep(delay).await;
        Err(Error::Unauthorized(INVALID_LOGIN.to_owned()))
    }

    /// A Stripe webhook's subscription ended: the org it belongs to falls back to the free plan.
    pub async fn subscription_ended(
        &self,
        org_id: OrgId,
        subscription_id: &str,
        reason: &str,
        meta: Meta,
    ) -> Result<(), Error> {
        // An unpaid subscription would bill again once its invoice is paid, while the org is already
        // on the free plan: end it in Stripe too.
        if reason == "unpaid" {
            if let Some(stripe) = &self.stripe {
                if let Err(e) = stripe.cancel(subscription_id, &format!("unpaid-{org_id}")).await {
                    tracing::warn!(error = %e, "cancelling an unpaid subscription failed; Stripe will deliver again");
                    return Err(Error::Upstream(format!("cancelling the unpaid subscription failed: {e}")));
                }
            }
        }
        let command =
            OrgCommand::EndSubscription { subscription_id: subscription_id.to_owned(), reason: reason.to_owned() };
        match self.harden.orgs.execute(&org_id.to_string(), command, &meta.with_org(org_id)).await {
            // Not an org of this server: nothing to do, and nothing for Stripe to retry.
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The plans a configured Stripe needs a price for.
pub fn paid_plans() -> impl Iterator<Item = (Plan, BillingCycle)> {
    Plan::ALL
        .into_iter()
        .filter(Plan::is_paid)
        .flat_map(|plan| [(plan, BillingCycle::Monthly), (plan, BillingCycle::Annual)])
}
