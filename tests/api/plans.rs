use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{expect_json, spawn_app};

#[tokio::test]
async fn plans_list_the_spec_catalog_and_the_enterprise_contact_without_auth() {
    let app = spawn_app().await;
    let res = app.client.get(format!("{}/auth/plans", app.backend)).send().await.unwrap();
    let body = expect_json(res, StatusCode::OK).await;
    let expected = [
        ("free", "Free", false, 1_000, 1_024, 0, 0),
        ("starter", "Starter", true, 10_000, 2_048, 1_000, 1_048_576),
        ("smb", "SMB", true, 25_000, 4_096, 2_500, 4_194_304),
        ("business", "Business", true, 100_000, 8_192, 10_000, 8_388_608),
    ];
    let plans = body["plans"].as_array().unwrap();
    assert_eq!(plans.len(), expected.len());
    for (plan, (key, name, paid, records, bytes, files, size)) in plans.iter().zip(expected) {
        assert_eq!(plan["key"], key);
        assert_eq!(plan["name"], name, "{key}");
        assert_eq!(plan["isPaid"], paid, "{key}");
        assert_eq!(
            plan["limits"],
            json!({ "maxRecords": records, "maxKeyPlusValueBytes": bytes, "maxFiles": files, "maxFileSizeBytes": size }),
            "{key}"
        );
    }
    assert_eq!(plans[1]["pricing"], json!({ "annualTotalUsd": 120, "monthlyUsd": 12.0 }));
    assert_eq!(
        body["enterprise"],
        json!({ "key": "enterprise", "label": "Enterprise", "contact": "enquiry@hardencloud.com" })
    );
}
