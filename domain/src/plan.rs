//! The plan catalog: what each plan allows and costs. The limits are the spec's table; prices for
//! starter are the spec's, the others follow its shape (annual = ten months).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Starter,
    Smb,
    Business,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLimits {
    pub max_records: u64,
    pub max_key_plus_value_bytes: u64,
    pub max_files: u64,
    pub max_file_size_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanPricing {
    pub annual_total_usd: u32,
    pub monthly_usd: f64,
}

/// A paid plan's Stripe subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub customer_id: String,
    pub subscription_id: String,
}

const MIB: u64 = 1024 * 1024;

/// The enterprise plan is not self-service: this is where people are sent instead.
pub const ENTERPRISE_CONTACT: &str = "enquiry@hardencloud.com";

impl Plan {
    pub const ALL: [Plan; 4] = [Plan::Free, Plan::Starter, Plan::Smb, Plan::Business];

    pub fn key(&self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Starter => "starter",
            Plan::Smb => "smb",
            Plan::Business => "business",
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Plan::Free => "Free",
            Plan::Starter => "Starter",
            Plan::Smb => "SMB",
            Plan::Business => "Business",
        }
    }

    pub fn parse(key: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|p| p.key() == key)
    }

    pub fn is_paid(&self) -> bool {
        !matches!(self, Plan::Free)
    }

    pub fn limits(&self) -> PlanLimits {
        let (max_records, max_key_plus_value_bytes, max_files, max_file_size_bytes) = match self {
            Plan::Free => (1_000, 1_024, 0, 0),
            Plan::Starter => (10_000, 2_048, 1_000, MIB),
            Plan::Smb => (25_000, 4_096, 2_500, 4 * MIB),
            Plan::Business => (100_000, 8_192, 10_000, 8 * MIB),
        };
        PlanLimits { max_records, max_key_plus_value_bytes, max_files, max_file_size_bytes }
    }

    /// The largest file any plan accepts (what request bodies must leave room for).
    pub fn largest_file_size_bytes() -> u64 {
        Plan::ALL.iter().map(|p| p.limits().max_file_size_bytes).max().unwrap_or(0)
    }

    pub fn pricing(&self) -> PlanPricing {
        let (annual_total_usd, monthly_usd) = match self {
            Plan::Free => (0, 0.0),
            Plan::Starter => (120, 12.0),
            Plan::Smb => (300, 30.0),
            Plan::Business => (800, 80.0),
        };
        PlanPricing { annual_total_usd, monthly_usd }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_matches_the_spec_table() {
        assert_eq!(
            Plan::Free.limits(),
            PlanLimits { max_records: 1_000, max_key_plus_value_bytes: 1_024, max_files: 0, max_file_size_bytes: 0 }
        );
        assert_eq!(Plan::Starter.limits().max_file_size_bytes, 1_048_576);
        assert_eq!(Plan::Smb.limits().max_records, 25_000);
        assert_eq!(Plan::Business.limits().max_files, 10_000);
        assert_eq!(Plan::Business.limits().max_file_size_bytes, 8 * 1_048_576);
        assert_eq!(Plan::Starter.pricing().annual_total_usd, 120);
        assert!(!Plan::Free.is_paid() && Plan::Smb.is_paid());
    }

    #[test]
    fn plan_keys_round_trip_and_enterprise_is_not_a_plan() {
        for plan in Plan::ALL {
            assert_eq!(Plan::parse(plan.key()), Some(plan));
        }
        assert_eq!(Plan::parse("enterprise"), None);
        assert_eq!(Plan::parse("Free"), None);
    }
}
