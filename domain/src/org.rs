//! The Org aggregate: a tenant, its name, its plan and (for a self-service paid plan) its Stripe
//! subscription.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::OrgId;
use crate::plan::{Plan, PlanLimits, Subscription};
use crate::storage::StorageSettings;
use crate::values::OrgName;

#[derive(Debug, Clone, PartialEq)]
pub enum OrgCommand {
    CreateOrg {
        org_id: OrgId,
        name: OrgName,
        plan: Plan,
        subscription: Option<Subscription>,
    },
    ChangePlan {
        plan: Plan,
    },
    /// Stripe says the subscription ended (deleted, or unpaid): the org falls back to the free
    /// plan's limits. A subscription that is not the org's current one changes nothing.
    EndSubscription {
        subscription_id: String,
        reason: String,
    },
    /// Stores the org's S3 storage settings (checked for reachability by the command side).
    ConfigureStorage {
        settings: StorageSettings,
    },
}

/// Both events carry the limits of the plan they put in force: the append-time limit check reads
/// them (migration 0005), and the history shows what applied when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrgEvent {
    OrgCreated {
        org_id: OrgId,
        name: OrgName,
        plan: Plan,
        limits: PlanLimits,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subscription: Option<Subscription>,
    },
    OrgPlanChanged {
        org_id: OrgId,
        from: Plan,
        to: Plan,
        limits: PlanLimits,
    },
    OrgSubscriptionEnded {
        org_id: OrgId,
        subscription_id: String,
        reason: String,
    },
    OrgStorageConfigured {
        org_id: OrgId,
        settings: StorageSettings,
    },
}

impl DomainEvent for OrgEvent {
    fn event_type(&self) -> String {
        match self {
            OrgEvent::OrgCreated { .. } => "OrgCreated",
            OrgEvent::OrgPlanChanged { .. } => "OrgPlanChanged",
            OrgEvent::OrgSubscriptionEnded { .. } => "OrgSubscriptionEnded",
            OrgEvent::OrgStorageConfigured { .. } => "OrgStorageConfigured",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrgError {
    #[error("organization already exists")]
    AlreadyExists,
    #[error("organization not found")]
    NotFound,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Org {
    id: Option<OrgId>,
    plan: Option<Plan>,
    /// The live subscription; gone once it ended.
    subscription: Option<Subscription>,
    storage: Option<StorageSettings>,
}

impl Org {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }
    pub fn plan(&self) -> Option<Plan> {
        self.plan
    }
    pub fn storage(&self) -> Option<&StorageSettings> {
        self.storage.as_ref()
    }
}

impl Aggregate for Org {
    const TYPE: &'static str = "Org";
    type Command = OrgCommand;
    type Event = OrgEvent;
    type Error = OrgError;
    type Services = ();

    async fn handle(&mut self, command: OrgCommand, _services: &(), sink: &EventSink<Self>) -> Result<(), OrgError> {
        match command {
            OrgCommand::CreateOrg { org_id, name, plan, subscription } => {
                if self.exists() {
                    return Err(OrgError::AlreadyExists);
                }
                sink.write(OrgEvent::OrgCreated { org_id, name, plan, limits: plan.limits(), subscription }, self)
                    .await;
            }
            OrgCommand::ConfigureStorage { settings } => {
                let org_id = self.id.ok_or(OrgError::NotFound)?;
                if self.storage.as_ref() != Some(&settings) {
                    sink.write(OrgEvent::OrgStorageConfigured { org_id, settings }, self).await;
                }
            }
            OrgCommand::EndSubscription { subscription_id, reason } => {
                let (Some(org_id), Some(from)) = (self.id, self.plan) else {
                    return Err(OrgError::NotFound);
                };
                // A duplicate delivery finds the subscription already ended: nothing twice.
                if self.subscription.as_ref().is_some_and(|s| s.subscription_id == subscription_id) {
                    sink.write(OrgEvent::OrgSubscriptionEnded { org_id, subscription_id, reason }, self).await;
                    if from != Plan::Free {
                        let to = Plan::Free;
                        sink.write(OrgEvent::OrgPlanChanged { org_id, from, to, limits: to.limits() }, self).await;
                    }
                }
            }
            OrgCommand::ChangePlan { plan } => {
                let (Some(org_id), Some(from)) = (self.id, self.plan) else {
                    return Err(OrgError::NotFound);
                };
                // Asking for the plan the org already has changes nothing: a retried request or a
                // duplicate billing webhook must not record a change twice.
                if from != plan {
                    sink.write(OrgEvent::OrgPlanChanged { org_id, from, to: plan, limits: plan.limits() }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: OrgEvent) {
        match event {
            OrgEvent::OrgCreated { org_id, plan, subscription, .. } => {
                self.id = Some(org_id);
                self.plan = Some(plan);
                self.subscription = subscription;
            }
            OrgEvent::OrgPlanChanged { to, .. } => self.plan = Some(to),
            OrgEvent::OrgSubscriptionEnded { .. } => self.subscription = None,
            OrgEvent::OrgStorageConfigured { settings, .. } => self.storage = Some(settings),
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    fn org_id() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(42))
    }

    fn created() -> OrgEvent {
        OrgEvent::OrgCreated {
            org_id: org_id(),
            name: OrgName::parse("acme").unwrap(),
            plan: Plan::Free,
            limits: Plan::Free.limits(),
            subscription: None,
        }
    }

    fn subscription() -> Subscription {
        Subscription { customer_id: "cus_1".to_owned(), subscription_id: "sub_1".to_owned() }
    }

    fn created_paid() -> OrgEvent {
        OrgEvent::OrgCreated {
            org_id: org_id(),
            name: OrgName::parse("acme").unwrap(),
            plan: Plan::Smb,
            limits: Plan::Smb.limits(),
            subscription: Some(subscription()),
        }
    }

    fn end(subscription_id: &str) -> OrgCommand {
        OrgCommand::EndSubscription { subscription_id: subscription_id.to_owned(), reason: "deleted".to_owned() }
    }

    #[test]
    fn an_ended_subscription_moves_the_org_to_the_free_plan_once() {
        let ended = OrgEvent::OrgSubscriptionEnded {
            org_id: org_id(),
            subscription_id: "sub_1".to_owned(),
            reason: "deleted".to_owned(),
        };
        let downgraded =
            OrgEvent::OrgPlanChanged { org_id: org_id(), from: Plan::Smb, to: Plan::Free, limits: Plan::Free.limits() };
        TestFramework::<Org>::with(())
            .given(vec![created_paid()])
            .when(end("sub_1"))
            .then_expect_events(vec![ended.clone(), downgraded.clone()]);
        TestFramework::<Org>::with(())
            .given(vec![created_paid(), ended, downgraded])
            .when(end("sub_1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_subscription_ending_changes_nothing() {
        TestFramework::<Org>::with(()).given(vec![created_paid()]).when(end("sub_other")).then_expect_events(vec![]);
        TestFramework::<Org>::with(()).given(vec![created()]).when(end("sub_1")).then_expect_events(vec![]);
        TestFramework::<Org>::with(())
            .given_no_previous_events()
            .when(end("sub_1"))
            .then_expect_error(OrgError::NotFound);
    }

    #[test]
    fn create_org_records_name_and_plan() {
        TestFramework::<Org>::with(())
            .given_no_previous_events()
            .when(OrgCommand::CreateOrg {
                org_id: org_id(),
                name: OrgName::parse("acme").unwrap(),
                plan: Plan::Free,
                subscription: None,
            })
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn create_org_refuses_an_existing_org() {
        TestFramework::<Org>::with(())
            .given(vec![created()])
            .when(OrgCommand::CreateOrg {
                org_id: org_id(),
                name: OrgName::parse("other").unwrap(),
                plan: Plan::Smb,
                subscription: None,
            })
            .then_expect_error(OrgError::AlreadyExists);
    }

    #[test]
    fn change_plan_records_from_and_to() {
        TestFramework::<Org>::with(())
            .given(vec![created()])
            .when(OrgCommand::ChangePlan { plan: Plan::Business })
            .then_expect_events(vec![OrgEvent::OrgPlanChanged {
                org_id: org_id(),
                from: Plan::Free,
                to: Plan::Business,
                limits: Plan::Business.limits(),
            }]);
    }

    #[test]
    fn change_plan_to_the_current_plan_records_nothing() {
        TestFramework::<Org>::with(())
            .given(vec![created()])
            .when(OrgCommand::ChangePlan { plan: Plan::Free })
            .then_expect_events(vec![]);
    }

    #[test]
    fn change_plan_refuses_a_missing_org() {
        TestFramework::<Org>::with(())
            .given_no_previous_events()
            .when(OrgCommand::ChangePlan { plan: Plan::Starter })
            .then_expect_error(OrgError::NotFound);
    }
}
