use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_json, spawn_app};

#[tokio::test]
async fn each_listener_serves_an_openapi_document_of_its_routes() {
    let app = spawn_app().await;
    let doc =
        expect_json(app.client.get(format!("{}/openapi.json", app.backend)).send().await.unwrap(), StatusCode::OK)
            .await;
    let mut paths: Vec<_> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/admin/orgs",
            "/admin/orgs/{orgId}/plan",
            "/admin/orgs/{orgId}/storage",
            "/admin/orgs/{orgId}/usage",
            "/admin/orgs/{orgId}/users",
            "/admin/orgs/{orgId}/users/{userId}",
            "/admin/orgs/{orgId}/users/{userId}/apikey/rotate",
            "/audit",
            "/auth/orgadmin/login",
            "/auth/orgadmin/register",
            "/auth/orgadmin/verify",
            "/auth/plans",
            "/cloud/invites/{token}/accept",
            "/cloud/onboarding",
            "/cloud/organizations",
            "/cloud/organizations/{org_id}",
            "/cloud/organizations/{org_id}/api-keys",
            "/cloud/organizations/{org_id}/api-keys/{key_id}",
            "/cloud/organizations/{org_id}/invites",
            "/cloud/organizations/{org_id}/invites/{token}",
            "/cloud/organizations/{org_id}/members",
            "/cloud/organizations/{org_id}/members/{clerk_user_id}",
            "/files",
            "/files/shared",
            "/files/shared/{shareId}",
            "/files/{id}",
            "/files/{id}/shares",
            "/files/{id}/shares/{shareId}",
            "/health",
            "/kv",
            "/kv/shared",
            "/kv/shared/{shareId}",
            "/kv/{key}",
            "/kv/{key}/rotate",
            "/kv/{key}/shares",
            "/kv/{key}/shares/{shareId}",
            "/kv/{key}/versions",
            "/ready",
            "/users/me",
            "/users/me/bundle",
            "/users/me/keys",
            "/users/me/pins",
            "/users/me/recovery/complete",
            "/users/me/recovery/pending",
            "/users/me/recovery/restore/{ownerUserId}",
            "/users/me/recovery/shares",
            "/users/me/recovery/shares/{ownerUserId}",
            "/users/me/recovery/trustees",
            "/users/me/recovery/trustees/{trusteeUserId}",
            "/users/org",
            "/users/org/{userId}",
            "/webhooks/clerk",
            "/webhooks/stripe",
        ]
    );
    assert!(doc["components"]["securitySchemes"]["apiKey"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["CreatedUserResponse"].is_object());
    // Every documented path is routed: none of them answers the router's "no such route".
    for path in &paths {
        let concrete = path
            .replace("{orgId}", &uuid::Uuid::new_v4().to_string())
            .replace("{org_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{key_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{clerk_user_id}", "user_abc")
            .replace("{token}", "abc")
            .replace("{userId}", &uuid::Uuid::new_v4().to_string())
            .replace("{key}", "some-key")
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{shareId}", &uuid::Uuid::new_v4().to_string())
            .replace("{ownerUserId}", &uuid::Uuid::new_v4().to_string())
            .replace("{trusteeUserId}", &uuid::Uuid::new_v4().to_string());
        for method in doc["paths"][path].as_object().unwrap().keys() {
            let res = app
                .client
                .request(method.to_uppercase().parse().unwrap(), format!("{}{concrete}", app.backend))
                .send()
                .await
                .unwrap();
            let status = res.status();
            let body = res.text().await.unwrap();
            // A route may answer 404 itself (a missing record, a feature not configured); the
            // router's own 404 and 405 are what "not routed" looks like.
            assert!(!body.contains("no such route"), "{method} {path} is documented but not routed");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
        }
    }
    let proxy =
        expect_json(app.client.get(format!("{}/openapi.json", app.proxy)).send().await.unwrap(), StatusCode::OK).await;
    assert!(proxy["paths"]["/health"].is_object());
    assert!(proxy["paths"]["/ready"].is_object());
    for path in
        ["/v1/files", "/v1/files/{id}", "/v1/files/{fileId}/shares", "/v1/files/shared", "/v1/files/shared/{shareId}"]
    {
        assert!(proxy["paths"][path].is_object(), "{path} in the Proxy's document");
    }
}

/// The statuses a document names for one operation.
fn documented(op: &Value) -> Vec<&str> {
    op["responses"].as_object().unwrap().keys().map(String::as_str).collect()
}

/// Every operation documents what its extractors answer before the handler runs: 401 where it takes
/// credentials, 400 for a malformed path or query parameter, and for a request body 400 and 413,
/// with 415 for a JSON document body. schemathesis (`bench/schemathesis`) refuses an answer its
/// document does not name; before this, 45 of the 97 operations left out at least one of these.
#[tokio::test]
async fn every_operation_documents_the_answers_of_its_extractors() {
    let app = spawn_app().await;
    for listener in [&app.backend, &app.proxy] {
        let doc =
            expect_json(app.client.get(format!("{listener}/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
        let mut missing = Vec::new();
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, op) in operations.as_object().unwrap() {
                let mut needs = Vec::new();
                if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                    needs.push("401");
                }
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                if params.iter().any(|p| p["in"] == "path" || p["in"] == "query") {
                    needs.push("400");
                }
                if let Some(body) = op.get("requestBody") {
                    needs.extend(["400", "413"]);
                    if body["content"]["application/json"]["schema"].get("$ref").is_some() {
                        needs.push("415");
                    }
                }
                let documented = documented(op);
                for status in needs {
                    if !documented.contains(&status) {
                        missing.push(format!("{} {path}: {status}", method.to_uppercase()));
                    }
                }
            }
        }
        missing.dedup();
        assert!(missing.is_empty(), "answers missing from {listener}/openapi.json: {missing:#?}");
    }
}

/// The schema a document names for an answer, with its `$ref` resolved.
fn answer_schema<'d>(doc: &'d Value, path: &str, method: &str, status: &str) -> &'d Value {
    let schema = &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    match schema["$ref"].as_str() {
        Some(reference) => &doc["components"]["schemas"][reference.trim_start_matches("#/components/schemas/")],
        None => schema,
    }
}

/// `GET /v1/files/shared/{shareId}` was documented as the owner's file (`id`, no `shareId`): a
/// schemathesis run found the answer violating its schema.
#[tokio::test]
async fn a_shared_file_read_through_the_proxy_has_the_fields_its_document_names() {
    let app = crate::files::app().await;
    let team = crate::files::file_team(&app, "starter").await;
    let file =
        expect_json(crate::files::upload(&app, &team.owner, "notes.txt", b"hello").await, StatusCode::CREATED).await;
    let share = crate::files::with_secret(
        &app,
        Method::POST,
        &format!("/v1/files/{}/shares", file["id"].as_str().unwrap()),
        &team.owner,
        Some(json!({ "recipientUserId": team.member_id, "permission": "read" })),
    )
    .await;
    let share_id = expect_json(share, StatusCode::CREATED).await["shareId"].as_str().unwrap().to_owned();
    let path = format!("/v1/files/shared/{share_id}");
    let read =
        expect_json(crate::files::with_secret(&app, Method::GET, &path, &team.member, None).await, StatusCode::OK)
            .await;

    let doc =
        expect_json(app.client.get(format!("{}/openapi.json", app.proxy)).send().await.unwrap(), StatusCode::OK).await;
    // The owner's own read too: `ownerSealed` is documented and always there.
    let own_path = format!("/v1/files/{}", file["id"].as_str().unwrap());
    let own =
        expect_json(crate::files::with_secret(&app, Method::GET, &own_path, &team.owner, None).await, StatusCode::OK)
            .await;
    assert_eq!(own["ownerSealed"], true);
    for (path, answer) in [("/v1/files/shared/{shareId}", &read), ("/v1/files/{id}", &own)] {
        let schema = answer_schema(&doc, path, "get", "200");
        let mut fields: Vec<&str> = answer.as_object().unwrap().keys().map(String::as_str).collect();
        let mut named: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut required: Vec<&str> =
            schema["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        fields.sort();
        named.sort();
        required.sort();
        assert_eq!(fields, named, "{path}: the answer's fields are the documented ones");
        assert_eq!(required, named, "{path}: all of them are always there");
    }
    assert_eq!(read["shareId"], share_id.as_str());
    assert_eq!(read["fileName"], "notes.txt");
    let shared_value = &doc["components"]["schemas"]["SharedValue"]["properties"];
    assert!(shared_value["versionBound"].is_object(), "versionBound is documented: {shared_value}");
    let entry = &doc["components"]["schemas"]["ProxyFileEntry"]["properties"];
    assert!(entry["ownerSealed"].is_object(), "ownerSealed is documented on the listing: {entry}");
}

#[tokio::test]
async fn both_documents_name_both_forms_of_an_api_key_on_every_route_that_takes_one() {
    let app = spawn_app().await;
    for base in [&app.backend, &app.proxy] {
        let doc =
            expect_json(app.client.get(format!("{base}/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["apiKey"]["name"], "X-Api-Key", "{base}");
        assert_eq!(schemes["apiKeyId"]["name"], "X-API-Key", "{base}");
        assert_eq!(schemes["apiKeySecret"]["name"], "X-API-Secret", "{base}");
        let mut with_key = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(security) = op["security"].as_array() else { continue };
                for alone in security.iter().filter(|r| r.get("apiKey").is_some()) {
                    with_key += 1;
                    // The pair stands beside the key alone, with the same other requirements.
                    let mut wanted = alone.as_object().unwrap().clone();
                    wanted.remove("apiKey");
                    wanted.insert("apiKeyId".into(), json!([]));
                    wanted.insert("apiKeySecret".into(), json!([]));
                    assert!(security.contains(&Value::Object(wanted)), "{base} {method} {path}: {security:?}");
                }
            }
        }
        assert!(with_key > 10, "{base}: only {with_key} operations take an API key");
    }
}
