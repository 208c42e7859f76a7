//! The claim on an email address: which registration made it an org admin's sign-in, and with
//! which password. One aggregate per address, its id a keyed hash of the normalized address, so two
//! registrations racing to verify the same address meet on one aggregate and only one can win: a
//! check-then-write through a lookup would let both through.
//!
//! It is also what sign-in reads: the user it belongs to and the password hash, loaded by id from
//! the event store (no read model, so a sign-in right after verification sees it).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{OrgId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum EmailClaimCommand {
    Claim { registration_id: String, org_id: OrgId, user_id: UserId, password_hash: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmailClaimEvent {
    EmailClaimed { registration_id: String, org_id: OrgId, user_id: UserId, password_hash: String },
}

impl DomainEvent for EmailClaimEvent {
    fn event_type(&self) -> String {
        match self {
            Self::EmailClaimed { .. } => "EmailClaimed",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EmailClaimError {
    #[error("an account with this email already exists; sign in with POST /auth/orgadmin/login")]
    Taken,
}

/// Who holds the address, once claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub registration_id: String,
    pub org_id: OrgId,
    pub user_id: UserId,
    pub password_hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EmailClaim {
    holder: Option<Holder>,
}

impl EmailClaim {
    pub fn holder(&self) -> Option<&Holder> {
        self.holder.as_ref()
    }
}

impl Aggregate for EmailClaim {
    const TYPE: &'static str = "EmailClaim";
    type Command = EmailClaimCommand;
    type Event = EmailClaimEvent;
    type Error = EmailClaimError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let EmailClaimCommand::Claim { registration_id, org_id, user_id, password_hash } = command;
        match &self.holder {
            // A resumed verification claims again for the same registration: already done.
            Some(holder) if holder.registration_id == registration_id => Ok(()),
            Some(_) => Err(EmailClaimError::Taken),
            None => {
                sink.write(EmailClaimEvent::EmailClaimed { registration_id, org_id, user_id, password_hash }, self)
                    .await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        let EmailClaimEvent::EmailClaimed { registration_id, org_id, user_id, password_hash } = event;
        self.holder = Some(Holder { registration_id, org_id, user_id, password_hash });
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    fn claim(registration: &str) -> EmailClaimCommand {
        EmailClaimCommand::Claim {
            registration_id: registration.to_owned(),
            org_id: OrgId::from_uuid(Uuid::from_u128(1)),
            user_id: UserId::from_uuid(Uuid::from_u128(2)),
            password_hash: "h".to_owned(),
        }
    }
    fn claimed(registration: &str) -> EmailClaimEvent {
        EmailClaimEvent::EmailClaimed {
            registration_id: registration.to_owned(),
            org_id: OrgId::from_uuid(Uuid::from_u128(1)),
            user_id: UserId::from_uuid(Uuid::from_u128(2)),
            password_hash: "h".to_owned(),
        }
    }

    #[test]
    fn the_first_registration_claims_the_address() {
        TestFramework::<EmailClaim>::with(())
            .given_no_previous_events()
            .when(claim("r1"))
            .then_expect_events(vec![claimed("r1")]);
    }

    #[test]
    fn the_same_registration_claiming_again_changes_nothing() {
        TestFramework::<EmailClaim>::with(()).given(vec![claimed("r1")]).when(claim("r1")).then_expect_events(vec![]);
    }

    #[test]
    fn another_registration_is_refused() {
        TestFramework::<EmailClaim>::with(())
            .given(vec![claimed("r1")])
            .when(claim("r2"))
            .then_expect_error(EmailClaimError::Taken);
    }
}
