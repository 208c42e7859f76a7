//! Self-service sign-up: a pending registration, from the request to the org it becomes.
//!
//! A registration is its own aggregate, with an id the command side derives from its verification
//! token (a keyed hash), so the token is never stored and finding the registration needs no lookup.
//! It records what the applicant asked for (the password only as an Argon2id hash), each payment
//! refusal (which moves the payment attempt on, so a retry is a new request to Stripe and not the
//! replay of a refused one), the subscription once paid, and the completion (single use).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{OrgId, UserId};
use crate::plan::{Plan, Subscription};
use crate::values::{Email, OrgName, UserName};

/// Where self-service sign-up is offered.
pub const COUNTRIES: [&str; 19] =
    ["US", "CA", "GB", "EU", "CH", "NO", "IS", "AL", "AZ", "AM", "TR", "MK", "ME", "AU", "NZ", "SG", "MY", "JP", "KR"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BillingCycle {
    Monthly,
    Annual,
}

impl BillingCycle {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "monthly" => Some(Self::Monthly),
            "annual" => Some(Self::Annual),
            _ => None,
        }
    }
    pub fn key(&self) -> &'static str {
        match self {
            Self::Monthly => "monthly",
            Self::Annual => "annual",
        }
    }
}

/// The applicant's request, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub org_name: OrgName,
    pub admin_name: UserName,
    pub email: Email,
    /// An Argon2id PHC string.
    pub password_hash: String,
    pub country_code: String,
    pub plan: Plan,
    pub billing_cycle: BillingCycle,
    pub payment_method: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationCommand {
    Request {
        registration_id: String,
        application: Application,
        expires_at: DateTime<Utc>,
    },
    /// About to call Stripe for the current attempt: from now on the registration may hold a
    /// subscription, so it can be finished even after its token expired.
    RecordPaymentStarted,
    RecordPaymentRefused {
        reason: String,
    },
    /// The applicant gives another payment method after a refusal (never while a payment may be
    /// in flight, which could then be charged twice).
    ChangePaymentMethod {
        payment_method: String,
    },
    RecordPaid {
        subscription: Subscription,
    },
    /// The org and its admin exist: the token is used. (Expiry is checked before the work starts,
    /// not here: a verification that got as far as creating the org must be able to finish.)
    Complete {
        org_id: OrgId,
        user_id: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RegistrationEvent {
    RegistrationRequested {
        registration_id: String,
        application: Application,
        expires_at: DateTime<Utc>,
    },
    RegistrationPaymentStarted {
        registration_id: String,
        attempt: u32,
    },
    /// Stripe refused (a declined card, a missing payment method): attempt `attempt` is over.
    RegistrationPaymentRefused {
        registration_id: String,
        attempt: u32,
        reason: String,
    },
    RegistrationPaymentMethodChanged {
        registration_id: String,
        payment_method: String,
    },
    RegistrationPaid {
        registration_id: String,
        subscription: Subscription,
    },
    RegistrationCompleted {
        registration_id: String,
        org_id: OrgId,
        user_id: UserId,
    },
}

impl DomainEvent for RegistrationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::RegistrationRequested { .. } => "RegistrationRequested",
            Self::RegistrationPaymentStarted { .. } => "RegistrationPaymentStarted",
            Self::RegistrationPaymentRefused { .. } => "RegistrationPaymentRefused",
            Self::RegistrationPaymentMethodChanged { .. } => "RegistrationPaymentMethodChanged",
            Self::RegistrationPaid { .. } => "RegistrationPaid",
            Self::RegistrationCompleted { .. } => "RegistrationCompleted",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistrationError {
    #[error("the verification token is invalid")]
    NotFound,
    #[error("this registration already exists")]
    AlreadyRequested,
    #[error("this verification token has already been used; sign in with POST /auth/orgadmin/login")]
    AlreadyCompleted,
    #[error("this verification token has expired; register again")]
    Expired,
    #[error("this registration was already paid with another subscription")]
    PaidDifferently,
    #[error("the payment method can be changed only after Stripe refused the last one")]
    PaymentInFlight,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Registration {
    id: Option<String>,
    application: Option<Application>,
    expires_at: Option<DateTime<Utc>>,
    refused_attempts: u32,
    payment_started: bool,
    /// Stripe was called for the current attempt and has not refused it (it may have charged).
    payment_in_flight: bool,
    subscription: Option<Subscription>,
    completed: bool,
}

impl Registration {
    pub fn application(&self) -> Option<&Application> {
        self.application.as_ref()
    }
    /// The current payment attempt: the number of refusals so far.
    pub fn payment_attempt(&self) -> u32 {
        self.refused_attempts
    }
    pub fn subscription(&self) -> Option<&Subscription> {
        self.subscription.as_ref()
    }
    pub fn is_completed(&self) -> bool {
        self.completed
    }
    /// Whether the token can still finish this registration at `now`. One that reached Stripe can
    /// always be finished: the applicant must not pay for an org they never get.
    pub fn check_open(&self, now: DateTime<Utc>) -> Result<(), RegistrationError> {
        match (&self.id, self.expires_at) {
            (None, _) | (_, None) => Err(RegistrationError::NotFound),
            _ if self.completed => Err(RegistrationError::AlreadyCompleted),
            (_, Some(expires)) if now >= expires && !self.payment_started => Err(RegistrationError::Expired),
            _ => Ok(()),
        }
    }
    fn live_id(&self) -> Result<String, RegistrationError> {
        match &self.id {
            None => Err(RegistrationError::NotFound),
            Some(_) if self.completed => Err(RegistrationError::AlreadyCompleted),
            Some(id) => Ok(id.clone()),
        }
    }
}

impl Aggregate for Registration {
    const TYPE: &'static str = "Registration";
    type Command = RegistrationCommand;
    type Event = RegistrationEvent;
    type Error = RegistrationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            RegistrationCommand::Request { registration_id, application, expires_at } => {
                if self.id.is_some() {
                    return Err(RegistrationError::AlreadyRequested);
                }
                sink.write(RegistrationEvent::RegistrationRequested { registration_id, application, expires_at }, self)
                    .await;
            }
            RegistrationCommand::RecordPaymentStarted => {
                let registration_id = self.live_id()?;
                let attempt = self.refused_attempts;
                sink.write(RegistrationEvent::RegistrationPaymentStarted { registration_id, attempt }, self).await;
            }
            RegistrationCommand::RecordPaymentRefused { reason } => {
                let registration_id = self.live_id()?;
                let attempt = self.refused_attempts;
                sink.write(RegistrationEvent::RegistrationPaymentRefused { registration_id, attempt, reason }, self)
                    .await;
            }
            RegistrationCommand::ChangePaymentMethod { payment_method } => {
                let registration_id = self.live_id()?;
                if self.payment_in_flight || self.subscription.is_some() {
                    return Err(RegistrationError::PaymentInFlight);
                }
                if self.application.as_ref().and_then(|a| a.payment_method.as_deref()) != Some(payment_method.as_str())
                {
                    sink.write(
                        RegistrationEvent::RegistrationPaymentMethodChanged { registration_id, payment_method },
                        self,
                    )
                    .await;
                }
            }
            RegistrationCommand::RecordPaid { subscription } => {
                let registration_id = self.live_id()?;
                match &self.subscription {
                    // A resumed verify gets the same subscription back from Stripe: nothing new.
                    Some(existing) if *existing == subscription => {}
                    Some(_) => return Err(RegistrationError::PaidDifferently),
                    None => {
                        sink.write(RegistrationEvent::RegistrationPaid { registration_id, subscription }, self).await
                    }
                }
            }
            RegistrationCommand::Complete { org_id, user_id } => {
                let registration_id = self.live_id()?;
                sink.write(RegistrationEvent::RegistrationCompleted { registration_id, org_id, user_id }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            RegistrationEvent::RegistrationRequested { registration_id, application, expires_at } => {
                self.id = Some(registration_id);
                self.application = Some(application);
                self.expires_at = Some(expires_at);
            }
            RegistrationEvent::RegistrationPaymentStarted { .. } => {
                self.payment_started = true;
                self.payment_in_flight = true;
            }
            RegistrationEvent::RegistrationPaymentRefused { .. } => {
                self.refused_attempts += 1;
                self.payment_in_flight = false;
            }
            RegistrationEvent::RegistrationPaymentMethodChanged { payment_method, .. } => {
                if let Some(application) = self.application.as_mut() {
                    application.payment_method = Some(payment_method);
                }
            }
            RegistrationEvent::RegistrationPaid { subscription, .. } => self.subscription = Some(subscription),
            RegistrationEvent::RegistrationCompleted { .. } => self.completed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, hour, 0, 0).unwrap()
    }
    fn application() -> Application {
        Application {
            org_name: OrgName::parse("Acme Inc").unwrap(),
            admin_name: UserName::parse("Jane Admin").unwrap(),
            email: Email::parse("jane@example.com").unwrap(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            country_code: "US".to_owned(),
            plan: Plan::Starter,
            billing_cycle: BillingCycle::Monthly,
            payment_method: Some("pm_card_visa".to_owned()),
        }
    }
    fn requested() -> RegistrationEvent {
        RegistrationEvent::RegistrationRequested {
            registration_id: "r1".to_owned(),
            application: application(),
            expires_at: at(12),
        }
    }
    fn subscription(n: u8) -> Subscription {
        Subscription { customer_id: format!("cus_{n}"), subscription_id: format!("sub_{n}") }
    }
    fn complete() -> RegistrationCommand {
        RegistrationCommand::Complete {
            org_id: OrgId::from_uuid(Uuid::from_u128(1)),
            user_id: UserId::from_uuid(Uuid::from_u128(2)),
        }
    }
    fn registration(events: Vec<RegistrationEvent>) -> Registration {
        let mut registration = Registration::default();
        for event in events {
            registration.apply(event);
        }
        registration
    }
    fn completed() -> RegistrationEvent {
        RegistrationEvent::RegistrationCompleted {
            registration_id: "r1".to_owned(),
            org_id: OrgId::from_uuid(Uuid::from_u128(1)),
            user_id: UserId::from_uuid(Uuid::from_u128(2)),
        }
    }
    fn framework() -> TestFramework<Registration> {
        TestFramework::with(())
    }

    #[test]
    fn a_request_is_recorded_once() {
        framework()
            .given_no_previous_events()
            .when(RegistrationCommand::Request {
                registration_id: "r1".to_owned(),
                application: application(),
                expires_at: at(12),
            })
            .then_expect_events(vec![requested()]);
        framework()
            .given(vec![requested()])
            .when(RegistrationCommand::Request {
                registration_id: "r1".to_owned(),
                application: application(),
                expires_at: at(12),
            })
            .then_expect_error(RegistrationError::AlreadyRequested);
    }

    #[test]
    fn each_refusal_moves_the_payment_attempt_on() {
        framework()
            .given(vec![
                requested(),
                RegistrationEvent::RegistrationPaymentRefused {
                    registration_id: "r1".to_owned(),
                    attempt: 0,
                    reason: "declined".to_owned(),
                },
            ])
            .when(RegistrationCommand::RecordPaymentRefused { reason: "declined again".to_owned() })
            .then_expect_events(vec![RegistrationEvent::RegistrationPaymentRefused {
                registration_id: "r1".to_owned(),
                attempt: 1,
                reason: "declined again".to_owned(),
            }]);
    }

    #[test]
    fn the_same_subscription_twice_is_recorded_once_and_another_is_refused() {
        let paid =
            RegistrationEvent::RegistrationPaid { registration_id: "r1".to_owned(), subscription: subscription(1) };
        framework()
            .given(vec![requested()])
            .when(RegistrationCommand::RecordPaid { subscription: subscription(1) })
            .then_expect_events(vec![paid.clone()]);
        framework()
            .given(vec![requested(), paid.clone()])
            .when(RegistrationCommand::RecordPaid { subscription: subscription(1) })
            .then_expect_events(vec![]);
        framework()
            .given(vec![requested(), paid])
            .when(RegistrationCommand::RecordPaid { subscription: subscription(2) })
            .then_expect_error(RegistrationError::PaidDifferently);
    }

    #[test]
    fn completion_is_single_use() {
        framework().given(vec![requested()]).when(complete()).then_expect_events(vec![completed()]);
        framework()
            .given(vec![requested(), completed()])
            .when(complete())
            .then_expect_error(RegistrationError::AlreadyCompleted);
        framework().given_no_previous_events().when(complete()).then_expect_error(RegistrationError::NotFound);
    }

    #[test]
    fn the_payment_method_changes_only_when_no_payment_is_in_flight() {
        let started = RegistrationEvent::RegistrationPaymentStarted { registration_id: "r1".to_owned(), attempt: 0 };
        let refused = RegistrationEvent::RegistrationPaymentRefused {
            registration_id: "r1".to_owned(),
            attempt: 0,
            reason: "declined".to_owned(),
        };
        let change = || RegistrationCommand::ChangePaymentMethod { payment_method: "pm_card_mastercard".to_owned() };
        let changed = RegistrationEvent::RegistrationPaymentMethodChanged {
            registration_id: "r1".to_owned(),
            payment_method: "pm_card_mastercard".to_owned(),
        };
        framework()
            .given(vec![requested(), started.clone()])
            .when(change())
            .then_expect_error(RegistrationError::PaymentInFlight);
        framework().given(vec![requested(), started, refused]).when(change()).then_expect_events(vec![changed.clone()]);
        framework().given(vec![requested(), changed]).when(change()).then_expect_events(vec![]);
    }

    #[test]
    fn a_token_is_open_until_expiry_unless_the_payment_started() {
        assert_eq!(registration(vec![requested()]).check_open(at(11)), Ok(()));
        assert_eq!(registration(vec![requested()]).check_open(at(12)), Err(RegistrationError::Expired));
        assert_eq!(
            registration(vec![requested(), completed()]).check_open(at(11)),
            Err(RegistrationError::AlreadyCompleted)
        );
        assert_eq!(Registration::default().check_open(at(1)), Err(RegistrationError::NotFound));
        // Stripe was called before expiry: the registration can still be finished.
        let started = RegistrationEvent::RegistrationPaymentStarted { registration_id: "r1".to_owned(), attempt: 0 };
        assert_eq!(registration(vec![requested(), started]).check_open(at(13)), Ok(()));
    }
}
