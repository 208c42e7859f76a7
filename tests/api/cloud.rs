//! The Cloud API against a local identity provider (a JWKS server and test keys, `idp`): token
//! verification, onboarding, the role table of every route, invites, org API keys on the Backend
//! and the Proxy, soft deletion, and Svix-signed webhooks.

use jsonwebtoken::{Algorithm, Header};
use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_nowhere_in_the_database, eventually, expect_error, expect_json, spawn_app_with, TestApp};
use crate::idp::{self, Idp};
use crate::replay;

const INVALID_SESSION: &str = "invalid or expired session token";
const NOT_A_MEMBER: &str = "not a member of this organization";

struct Cloud {
    app: TestApp,
    idp: Idp,
}

async fn cloud_app() -> Cloud {
    cloud_app_with(|_, _| {}).await
}

async fn cloud_app_with(customize: impl FnOnce(&Idp, &mut harden::Settings)) -> Cloud {
    let idp = Idp::start().await;
    let app = spawn_app_with(|s| {
        s.cloud_jwt_issuer = Some(idp.issuer.clone());
        s.cloud_jwks_url = Some(idp.jwks_url.clone());
        s.cloud_authorized_parties = idp::AZP.to_owned();
        s.cloud_jwks_min_refresh_ms = 0;
        s.clerk_webhook_secret = Some(SecretString::from(idp::WEBHOOK_SECRET));
        s.api_key_usage_flush_ms = 50;
        customize(&idp, s);
    })
    .await;
    Cloud { app, idp }
}

impl Cloud {
    async fn with_token(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Response {
        let mut req = self.app.client.request(method, format!("{}{path}", self.app.backend)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    /// A request as identity `sub`, with a good token.
    async fn call(&self, method: Method, path: &str, sub: &str, body: Option<Value>) -> Response {
        self.with_token(method, path, &self.idp.token(sub), body).await
    }

    async fn onboard(&self, sub: &str, name: &str) -> Uuid {
        let res = self.call(Method::POST, "/cloud/onboarding", sub, Some(json!({ "org_name": name }))).await;
        let body = expect_json(res, StatusCode::CREATED).await;
        body["org_id"].as_str().unwrap().parse().unwrap()
    }

    /// `sub` joins `org` with `role` through an invite (the token carries `sub`'s verified email).
    async fn join(&self, org: Uuid, admin: &str, sub: &str, role: &str) {
        let invite = self
            .call(
                Method::POST,
                &format!("/cloud/organizations/{org}/invites"),
                admin,
                Some(json!({ "email": format!("{sub}@example.test"), "role": role })),
            )
            .await;
        let token = expect_json(invite, StatusCode::CREATED).await["token"].as_str().unwrap().to_owned();
        let accepted = self.call(Method::POST, &format!("/cloud/invites/{token}/accept"), sub, None).await;
        assert_eq!(expect_json(accepted, StatusCode::OK).await["role"], role);
    }

    async fn webhook(&self, id: &str, timestamp: i64, body: &Value) -> Response {
        let bytes = serde_json::to_vec(body).unwrap();
        let mut req = self.app.client.post(format!("{}/webhooks/clerk", self.app.backend)).body(bytes.clone());
        for (name, value) in idp::svix_headers(idp::WEBHOOK_SECRET, id, timestamp, &bytes) {
            req = req.header(name, value);
        }
        req.header("content-type", "application/json").send().await.unwrap()
    }
}

#[tokio::test]
async fn tokens_are_checked_against_the_providers_keys_issuer_and_audience() {
    let cloud = cloud_app().await;
    let orgs = "/cloud/organizations";
    let res = cloud.app.client.get(format!("{}{orgs}", cloud.app.backend)).send().await.unwrap();
    assert_eq!(expect_error(res, StatusCode::UNAUTHORIZED).await, "Authorization: Bearer <token> header required");
    expect_json(cloud.call(Method::GET, orgs, "user_alice", None).await, StatusCode::OK).await;

    let claims = cloud.idp.claims("user_alice");
    let with = |field: &str, value: Value| {
        let mut c = claims.clone();
        c[field] = value;
        c
    };
    let now = chrono::Utc::now().timestamp();
    let refused = [
        ("expired", cloud.idp.sign(idp::RSA_1, Algorithm::RS256, &with("exp", json!(now - 60)))),
        ("not yet valid", cloud.idp.sign(idp::RSA_1, Algorithm::RS256, &with("nbf", json!(now + 120)))),
        ("wrong issuer", cloud.idp.sign(idp::RSA_1, Algorithm::RS256, &with("iss", json!("https://evil.test")))),
        ("unlisted azp", cloud.idp.sign(idp::RSA_1, Algorithm::RS256, &with("azp", json!("https://evil.test")))),
        ("alg none", cloud.idp.none_token("user_alice")),
        ("HS256 keyed with the public key", cloud.idp.hs256_confusion_token("user_alice")),
        ("kid of another key", {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(idp::EC_1.to_owned());
            cloud.idp.sign_with_header(idp::RSA_1, header, &claims)
        }),
        ("sub not a user id", cloud.idp.sign(idp::RSA_1, Algorithm::RS256, &with("sub", json!("admin")))),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in refused {
        let res = cloud.with_token(Method::GET, orgs, &token, None).await;
        assert_eq!(expect_error(res, StatusCode::UNAUTHORIZED).await, INVALID_SESSION, "{what}");
    }
    // ES256 is accepted as well as RS256.
    let es = cloud.idp.sign(idp::EC_1, Algorithm::ES256, &claims);
    expect_json(cloud.with_token(Method::GET, orgs, &es, None).await, StatusCode::OK).await;

    // A key the provider has not published yet is refused; once it is, the JWKS is fetched again.
    let rotated = cloud.idp.sign(idp::RSA_2, Algorithm::RS256, &claims);
    let res = cloud.with_token(Method::GET, orgs, &rotated, None).await;
    assert_eq!(expect_error(res, StatusCode::UNAUTHORIZED).await, INVALID_SESSION);
    let fetches = cloud.idp.fetches();
    cloud.idp.publish(idp::RSA_2);
    expect_json(cloud.with_token(Method::GET, orgs, &rotated, None).await, StatusCode::OK).await;
    assert!(cloud.idp.fetches() > fetches, "an unknown kid refreshes the key set");

    // With an audience configured, tokens must carry it.
    let strict = cloud_app_with(|_, s| s.cloud_jwt_audience = Some("harden-test".into())).await;
    let res = strict.call(Method::GET, orgs, "user_alice", None).await;
    assert_eq!(expect_error(res, StatusCode::UNAUTHORIZED).await, INVALID_SESSION, "no aud");
    let mut aud = strict.idp.claims("user_alice");
    aud["aud"] = json!("another-app");
    let res = strict.with_token(Method::GET, orgs, &strict.idp.sign(idp::RSA_1, Algorithm::RS256, &aud), None).await;
    assert_eq!(expect_error(res, StatusCode::UNAUTHORIZED).await, INVALID_SESSION, "wrong aud");
    aud["aud"] = json!("harden-test");
    let res = strict.with_token(Method::GET, orgs, &strict.idp.sign(idp::RSA_1, Algorithm::RS256, &aud), None).await;
    expect_json(res, StatusCode::OK).await;

    // A PEM key instead of a JWKS.
    let pem = cloud_app_with(|_, s| {
        s.cloud_jwks_url = None;
        s.cloud_jwt_public_key = Some(idp::RSA_1_PUBLIC_PEM.to_owned());
    })
    .await;
    expect_json(pem.call(Method::GET, orgs, "user_alice", None).await, StatusCode::OK).await;
    let es = pem.idp.sign(idp::EC_1, Algorithm::ES256, &pem.idp.claims("user_alice"));
    assert_eq!(
        expect_error(pem.with_token(Method::GET, orgs, &es, None).await, StatusCode::UNAUTHORIZED).await,
        INVALID_SESSION
    );
}

#[tokio::test]
async fn without_cloud_settings_the_cloud_api_is_not_there() {
    let app = spawn_app_with(|_| {}).await;
    for path in ["/cloud/organizations", &format!("/cloud/organizations/{}/members", Uuid::new_v4())] {
        let res = app.client.get(format!("{}{path}", app.backend)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = app.client.post(format!("{}/cloud/onboarding", app.backend)).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app.client.post(format!("{}/webhooks/clerk", app.backend)).body("{}").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn onboarding_creates_one_org_per_owner_with_a_profile_it_can_edit() {
    let cloud = cloud_app().await;
    let res = cloud.call(Method::POST, "/cloud/onboarding", "user_alice", Some(json!({}))).await;
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST).await, "org_name is required");
    let res = cloud
        .call(
            Method::POST,
            "/cloud/onboarding",
            "user_alice",
            Some(json!({ "org_name": "Acme", "billing_email": "nope" })),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;

    let body = json!({ "org_name": "Acme Corp", "billing_email": "billing@acme.test" });
    let first = expect_json(
        cloud.call(Method::POST, "/cloud/onboarding", "user_alice", Some(body.clone())).await,
        StatusCode::CREATED,
    )
    .await;
    let again =
        expect_json(cloud.call(Method::POST, "/cloud/onboarding", "user_alice", Some(body)).await, StatusCode::OK)
            .await;
    assert_eq!(first, again, "onboarding again returns the same org");
    let org = first["org_id"].as_str().unwrap();
    assert!(first["org_slug"].as_str().unwrap().starts_with("acme-corp-"));

    let listed =
        expect_json(cloud.call(Method::GET, "/cloud/organizations", "user_alice", None).await, StatusCode::OK).await;
    assert_eq!(listed["organizations"].as_array().unwrap().len(), 1);
    assert_eq!(listed["organizations"][0]["id"], org);
    assert_eq!(listed["organizations"][0]["billing_email"], "billing@acme.test");

    let path = format!("/cloud/organizations/{org}");
    let got = expect_json(cloud.call(Method::GET, &path, "user_alice", None).await, StatusCode::OK).await;
    assert_eq!(got["created_by"], "user_alice");
    assert_eq!(got["project_id"], first["project_id"]);
    let res = cloud.call(Method::PATCH, &path, "user_alice", Some(json!({}))).await;
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST).await, "name is required");
    let patched = expect_json(
        cloud.call(Method::PATCH, &path, "user_alice", Some(json!({ "name": "Acme Corp (Renamed)" }))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["name"], "Acme Corp (Renamed)");
    // PATCH semantics: the rename left out billing_email, so it is kept; an explicit null clears it.
    assert_eq!(patched["billing_email"], "billing@acme.test");
    let patch = |body: Value| cloud.call(Method::PATCH, &path, "user_alice", Some(body));
    let cleared = expect_json(patch(json!({ "name": "Acme", "billing_email": null })).await, StatusCode::OK).await;
    assert_eq!(cleared["billing_email"], Value::Null);
    let kept = expect_json(patch(json!({ "name": "Acme Corp" })).await, StatusCode::OK).await;
    assert_eq!(kept["billing_email"], Value::Null, "a cleared email stays cleared");
    let set =
        expect_json(patch(json!({ "name": "Acme Corp", "billing_email": "ap@acme.test" })).await, StatusCode::OK).await;
    assert_eq!(set["billing_email"], "ap@acme.test");
    let got = expect_json(cloud.call(Method::GET, &path, "user_alice", None).await, StatusCode::OK).await;
    assert_eq!((got["name"].as_str(), got["billing_email"].as_str()), (Some("Acme Corp"), Some("ap@acme.test")));
    let bad = patch(json!({ "name": "Acme Corp", "billing_email": "not an address" })).await;
    expect_error(bad, StatusCode::BAD_REQUEST).await;
    // A bad body is 400 before membership is looked at: for someone else's org too.
    let bad = cloud.call(Method::PATCH, &path, "user_mallory", Some(json!({ "name": "" }))).await;
    expect_error(bad, StatusCode::BAD_REQUEST).await;

    // The owner is a member; another user is not, and sees no org.
    let members =
        expect_json(cloud.call(Method::GET, &format!("{path}/members"), "user_alice", None).await, StatusCode::OK)
            .await;
    assert_eq!(members["members"][0]["role"], "owner");
    let res = cloud.call(Method::GET, &path, "user_mallory", None).await;
    assert_eq!(expect_error(res, StatusCode::FORBIDDEN).await, NOT_A_MEMBER);
    let listed =
        expect_json(cloud.call(Method::GET, "/cloud/organizations", "user_mallory", None).await, StatusCode::OK).await;
    assert_eq!(listed["organizations"], json!([]));
    let unknown = format!("/cloud/organizations/{}", Uuid::new_v4());
    expect_error(cloud.call(Method::GET, &unknown, "user_alice", None).await, StatusCode::NOT_FOUND).await;

    // After a deletion, onboarding makes a new org.
    let deleted = expect_json(cloud.call(Method::DELETE, &path, "user_alice", None).await, StatusCode::OK).await;
    assert_eq!(deleted, json!({ "status": "deleted", "org_id": org }));
    let next = expect_json(
        cloud.call(Method::POST, "/cloud/onboarding", "user_alice", Some(json!({ "org_name": "Acme 2" }))).await,
        StatusCode::CREATED,
    )
    .await;
    assert_ne!(next["org_id"], org);
}

/// Who may call what: every org route against owner, admin, developer, viewer and a non-member.
#[tokio::test]
async fn every_org_route_enforces_the_specs_minimum_role() {
    let cloud = cloud_app().await;
    let org = cloud.onboard("user_owner", "Roles").await;
    for (sub, role) in [("user_admin", "admin"), ("user_dev", "developer"), ("user_viewer", "viewer")] {
        cloud.join(org, "user_owner", sub, role).await;
    }
    for extra in ["user_extra1", "user_extra2"] {
        cloud.join(org, "user_owner", extra, "developer").await;
    }
    let base = format!("/cloud/organizations/{org}");
    let callers = ["user_owner", "user_admin", "user_dev", "user_viewer", "user_stranger"];
    let level = |sub: &str| match sub {
        "user_owner" => 4,
        "user_admin" => 3,
        "user_dev" => 2,
        "user_viewer" => 1,
        _ => 0,
    };
    let refusal = |sub: &str, min: &str| {
        if level(sub) == 0 {
            NOT_A_MEMBER.to_owned()
        } else {
            format!("insufficient permissions: {min} role required")
        }
    };

    // Things for the routes that consume one per allowed caller.
    let mut keys = Vec::new();
    let mut invites = Vec::new();
    for i in 0..2 {
        let key = cloud
            .call(Method::POST, &format!("{base}/api-keys"), "user_owner", Some(json!({ "name": format!("k{i}") })))
            .await;
        keys.push(expect_json(key, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned());
        let invite = cloud
            .call(
                Method::POST,
                &format!("{base}/invites"),
                "user_owner",
                Some(json!({ "email": format!("i{i}@example.test") })),
            )
            .await;
        invites.push(expect_json(invite, StatusCode::CREATED).await["token"].as_str().unwrap().to_owned());
    }

    struct Route {
        method: Method,
        min: &'static str,
        min_level: u8,
        /// The path and body for the nth allowed caller (0: owner, 1: admin, ...).
        call: Box<dyn Fn(usize) -> (String, Option<Value>)>,
    }
    let b = base.clone();
    let fixed = move |path: String, body: Option<Value>| -> Box<dyn Fn(usize) -> (String, Option<Value>)> {
        Box::new(move |_| (path.clone(), body.clone()))
    };
    let (keys_c, invites_c) = (keys.clone(), invites.clone());
    let routes = vec![
        Route { method: Method::GET, min: "viewer", min_level: 1, call: fixed(b.clone(), None) },
        Route { method: Method::GET, min: "viewer", min_level: 1, call: fixed(format!("{b}/members"), None) },
        Route { method: Method::GET, min: "viewer", min_level: 1, call: fixed(format!("{b}/invites"), None) },
        Route { method: Method::GET, min: "developer", min_level: 2, call: fixed(format!("{b}/api-keys"), None) },
        Route {
            method: Method::PATCH,
            min: "admin",
            min_level: 3,
            call: fixed(b.clone(), Some(json!({ "name": "Roles" }))),
        },
        Route {
            method: Method::POST,
            min: "admin",
            min_level: 3,
            call: fixed(format!("{b}/api-keys"), Some(json!({ "name": "table" }))),
        },
        Route {
            method: Method::POST,
            min: "admin",
            min_level: 3,
            call: fixed(format!("{b}/invites"), Some(json!({ "email": "table@example.test", "role": "viewer" }))),
        },
        Route {
            method: Method::DELETE,
            min: "admin",
            min_level: 3,
            call: {
                let b = b.clone();
                Box::new(move |n| (format!("{b}/api-keys/{}", keys_c[n]), None))
            },
        },
        Route {
            method: Method::DELETE,
            min: "admin",
            min_level: 3,
            call: {
                let b = b.clone();
                Box::new(move |n| (format!("{b}/invites/{}", invites_c[n]), None))
            },
        },
        Route {
            method: Method::PATCH,
            min: "admin",
            min_level: 3,
            call: {
                let b = b.clone();
                Box::new(move |n| {
                    let role = ["viewer", "admin"][n];
                    (format!("{b}/members/user_extra1"), Some(json!({ "role": role })))
                })
            },
        },
        Route {
            method: Method::DELETE,
            min: "admin",
            min_level: 3,
            call: {
                let b = b.clone();
                Box::new(move |n| (format!("{b}/members/{}", ["user_extra1", "user_extra2"][n]), None))
            },
        },
        Route { method: Method::DELETE, min: "owner", min_level: 4, call: fixed(b.clone(), None) },
    ];
    for route in &routes {
        let mut allowed = 0;
        // The refused first, so that a destructive route's success comes last.
        for sub in callers.iter().rev() {
            if level(sub) >= route.min_level {
                continue;
            }
            let (path, body) = (route.call)(0);
            let res = cloud.call(route.method.clone(), &path, sub, body).await;
            assert_eq!(
                expect_error(res, StatusCode::FORBIDDEN).await,
                refusal(sub, route.min),
                "{} {path} as {sub}",
                route.method
            );
        }
        for sub in callers {
            if level(sub) < route.min_level {
                continue;
            }
            let (path, body) = (route.call)(allowed);
            allowed += 1;
            let res = cloud.call(route.method.clone(), &path, sub, body).await;
            assert!(res.status().is_success(), "{} {path} as {sub}: {}", route.method, res.text().await.unwrap());
        }
    }
    // The org is gone for everyone.
    for sub in ["user_owner", "user_admin"] {
        expect_error(cloud.call(Method::GET, &base, sub, None).await, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn roles_change_within_the_rules_and_admins_are_backend_org_admins() {
    let cloud = cloud_app().await;
    let org = cloud.onboard("user_owner", "Team").await;
    cloud.join(org, "user_owner", "user_bob", "developer").await;
    let base = format!("/cloud/organizations/{org}");
    let member = |who: &str| format!("{base}/members/{who}");

    let res = cloud.call(Method::PATCH, &member("user_bob"), "user_owner", Some(json!({ "role": "owner" }))).await;
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST).await, "role must be one of: admin, developer, viewer");
    let res = cloud.call(Method::PATCH, &member("user_bob"), "user_owner", Some(json!({}))).await;
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST).await, "role must be one of: admin, developer, viewer");
    let res = cloud.call(Method::PATCH, &member("bob"), "user_owner", Some(json!({ "role": "admin" }))).await;
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST).await, "invalid clerk_user_id format");
    let res = cloud.call(Method::PATCH, &member("user_nobody"), "user_owner", Some(json!({ "role": "admin" }))).await;
    expect_error(res, StatusCode::NOT_FOUND).await;

    let changed = expect_json(
        cloud.call(Method::PATCH, &member("user_bob"), "user_owner", Some(json!({ "role": "admin" }))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["role"], "admin");
    assert_eq!(changed["clerk_user_id"], "user_bob");
    let res = cloud.call(Method::PATCH, &member("user_owner"), "user_bob", Some(json!({ "role": "viewer" }))).await;
    assert_eq!(expect_error(res, StatusCode::FORBIDDEN).await, "cannot change the owner's role");
    let res = cloud.call(Method::DELETE, &member("user_owner"), "user_bob", None).await;
    assert_eq!(
        expect_error(res, StatusCode::FORBIDDEN).await,
        "cannot remove the last owner — transfer ownership first"
    );

    // On the Backend, the org's users are its members and its project user; owner and admin are
    // org admins there.
    let key = expect_json(
        cloud.call(Method::POST, &format!("{base}/api-keys"), "user_owner", Some(json!({}))).await,
        StatusCode::CREATED,
    )
    .await;
    let secret = key["secret"].as_str().unwrap();
    let users = expect_json(cloud.app.get(&format!("/admin/orgs/{org}/users"), secret).await, StatusCode::OK).await;
    let role_of = |users: &Value, name: &str| {
        users.as_array().unwrap().iter().find(|u| u["name"] == name).map(|u| u["role"].clone()).unwrap_or(Value::Null)
    };
    assert_eq!(role_of(&users, "user_owner"), "org_admin");
    assert_eq!(role_of(&users, "user_bob"), "org_admin");
    cloud.call(Method::PATCH, &member("user_bob"), "user_owner", Some(json!({ "role": "viewer" }))).await;
    let users = expect_json(cloud.app.get(&format!("/admin/orgs/{org}/users"), secret).await, StatusCode::OK).await;
    assert_eq!(role_of(&users, "user_bob"), "member");

    // A removed member loses access at once.
    let removed =
        expect_json(cloud.call(Method::DELETE, &member("user_bob"), "user_owner", None).await, StatusCode::OK).await;
    assert_eq!(removed, json!({ "status": "removed", "clerk_user_id": "user_bob" }));
    let res = cloud.call(Method::GET, &base, "user_bob", None).await;
    assert_eq!(expect_error(res, StatusCode::FORBIDDEN).await, NOT_A_MEMBER);
    let listed =
        expect_json(cloud.call(Method::GET, "/cloud/organizations", "user_bob", None).await, StatusCode::OK).await;
    assert_eq!(listed["organizations"], json!([]));

    // The Cloud read models and the directory's members are rebuilt the same by a replay.
    let tables = ["cloud_orgs", "cloud_members", "cloud_invites", "cloud_api_keys", "directory_users", "audit_entries"];
    let before = replay::snapshot_of(&cloud.app, &tables).await;
    let out = replay::replay(&cloud.app, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed cloud"));
    assert_eq!(replay::snapshot_of(&cloud.app, &tables).await, before);
}

#[tokio::test]
async fn invites_expire_are_single_use_and_need_the_invited_verified_email() {
    let cloud = cloud_app().await;
    let org = cloud.onboard("user_owner", "Invites").await;
    let invites = format!("/cloud/organizations/{org}/invites");
    let invite = |email: &str, role: Option<&str>| {
        let mut body = json!({ "email": email });
        if let Some(role) = role {
            body["role"] = json!(role);
        }
        cloud.call(Method::POST, &invites, "user_owner", Some(body))
    };
    assert_eq!(
        expect_error(invite("not-an-email", None).await, StatusCode::BAD_REQUEST).await,
        "valid email is required"
    );
    let res = cloud.call(Method::POST, &invites, "user_owner", Some(json!({}))).await;
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST).await, "valid email is required");
    let res = invite("x@example.test", Some("owner")).await;
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST).await, "role must be one of: admin, developer, viewer");

    let created = expect_json(invite("user_bob@example.test", Some("admin")).await, StatusCode::CREATED).await;
    assert_eq!(created["role"], "admin");
    assert_eq!(created["created_by"], "user_owner");
    let token = created["token"].as_str().unwrap().to_owned();
    let cloud = &cloud;
    let accept = |sub: &'static str, token: String| {
        let path = format!("/cloud/invites/{token}/accept");
        async move { cloud.call(Method::POST, &path, sub, None).await }
    };
    let expires = chrono::DateTime::parse_from_rfc3339(created["expires_at"].as_str().unwrap()).unwrap();
    let made = chrono::DateTime::parse_from_rfc3339(created["created_at"].as_str().unwrap()).unwrap();
    assert!((expires - made - chrono::Duration::days(7)).num_seconds().abs() < 5);

    // Someone else with the token (a viewer who listed it, say) cannot use it.
    let res = accept("user_eve", token.clone()).await;
    assert!(expect_error(res, StatusCode::FORBIDDEN).await.contains("another email address"));
    // Nor can the invitee with an unverified email.
    let mut unverified = cloud.idp.claims("user_bob");
    unverified["email_verified"] = json!(false);
    let res = cloud
        .with_token(
            Method::POST,
            &format!("/cloud/invites/{token}/accept"),
            &cloud.idp.sign(idp::RSA_1, Algorithm::RS256, &unverified),
            None,
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;

    let accepted = expect_json(accept("user_bob", token.clone()).await, StatusCode::OK).await;
    assert_eq!(accepted, json!({ "status": "accepted", "org_id": org.to_string(), "role": "admin" }));
    let res = accept("user_bob", token.clone()).await;
    assert_eq!(expect_error(res, StatusCode::CONFLICT).await, "invite has already been accepted");
    let again = expect_json(invite("user_bob@example.test", None).await, StatusCode::CREATED).await;
    let res = accept("user_bob", again["token"].as_str().unwrap().to_owned()).await;
    assert_eq!(expect_error(res, StatusCode::CONFLICT).await, "you are already a member of this organization");

    // Revoked and unknown tokens.
    let revoked = expect_json(invite("user_carol@example.test", None).await, StatusCode::CREATED).await;
    let revoked_token = revoked["token"].as_str().unwrap().to_owned();
    let res = cloud.call(Method::DELETE, &format!("{invites}/{revoked_token}"), "user_owner", None).await;
    assert_eq!(expect_json(res, StatusCode::OK).await, json!({ "status": "revoked" }));
    let res = cloud.call(Method::DELETE, &format!("{invites}/{revoked_token}"), "user_owner", None).await;
    assert_eq!(expect_error(res, StatusCode::NOT_FOUND).await, "invite not found or already revoked");
    let res = accept("user_carol", revoked_token).await;
    assert_eq!(expect_error(res, StatusCode::NOT_FOUND).await, "invite not found or already revoked");
    let res = accept("user_carol", "0123abcd".to_owned()).await;
    assert_eq!(expect_error(res, StatusCode::NOT_FOUND).await, "invite not found or already revoked");

    // Seven days on, a pending invite has expired.
    let late = expect_json(invite("user_dan@example.test", Some("viewer")).await, StatusCode::CREATED).await;
    cloud.app.settings.clock.advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    let res = accept("user_dan", late["token"].as_str().unwrap().to_owned()).await;
    assert_eq!(expect_error(res, StatusCode::GONE).await, "invite has expired");

    let listed = expect_json(cloud.call(Method::GET, &invites, "user_bob", None).await, StatusCode::OK).await;
    let listed = listed["invites"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().any(|i| i["token"] == token && !i["accepted_at"].is_null()));
    assert!(listed.iter().any(|i| !i["revoked_at"].is_null()));
}

/// A request with the Cloud API's documented key pair, in whatever case the client writes the names.
async fn with_pair(
    app: &TestApp,
    base: &str,
    method: Method,
    path: &str,
    pair: (&str, &str),
    extra: &[(&str, &str)],
) -> Response {
    let mut req =
        app.client.request(method, format!("{base}{path}")).header("x-api-key", pair.0).header("X-API-SECRET", pair.1);
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_documented_key_and_secret_pair_authenticates_on_the_backend_and_through_the_proxy() {
    let cloud = cloud_app().await;
    let app = &cloud.app;
    let org = cloud.onboard("user_owner", "Pairs").await;
    let keys = format!("/cloud/organizations/{org}/api-keys");
    let create = || cloud.call(Method::POST, &keys, "user_owner", Some(json!({ "name": "CI" })));
    let one = expect_json(create().await, StatusCode::CREATED).await;
    let two = expect_json(create().await, StatusCode::CREATED).await;
    let pair = (one["key"].as_str().unwrap(), one["secret"].as_str().unwrap());

    // "Use key as X-API-Key and secret as X-API-Secret": on the Backend, and through the Proxy,
    // which passes both halves on.
    let me = expect_json(with_pair(app, &app.backend, Method::GET, "/users/me", pair, &[]).await, StatusCode::OK).await;
    assert_eq!(me["orgId"], org.to_string());
    let users = format!("/admin/orgs/{org}/users");
    expect_json(with_pair(app, &app.proxy, Method::GET, &users, pair, &[]).await, StatusCode::OK).await;
    expect_json(with_pair(app, &app.proxy, Method::GET, "/users/me", pair, &[]).await, StatusCode::OK).await;
    // The Proxy's own routes too: keys, then a value written and read with the pair.
    let secret = [("X-User-Secret", "the project's user secret")];
    let generated = with_pair(app, &app.proxy, Method::POST, "/v1/keys/generate", pair, &secret).await;
    expect_json(generated, StatusCode::CREATED).await;
    let put = app
        .client
        .put(format!("{}/v1/kv/deploy-token", app.proxy))
        .header("X-Api-Key", pair.0)
        .header("X-Api-Secret", pair.1)
        .header("X-User-Secret", secret[0].1)
        .json(&json!({ "valueB64": "dG9rZW4=" }))
        .send()
        .await
        .unwrap();
    expect_json(put, StatusCode::CREATED).await;
    let got = with_pair(app, &app.proxy, Method::GET, "/v1/kv/deploy-token", pair, &secret).await;
    assert_eq!(expect_json(got, StatusCode::OK).await["valueB64"], "dG9rZW4=");
    // The secret alone keeps working.
    expect_json(cloud.app.get("/users/me", pair.1).await, StatusCode::OK).await;

    // One credential: a right key with another key's secret, a made-up secret, or the key alone is 401.
    let crossed = (pair.0, two["secret"].as_str().unwrap());
    let made_up = (pair.0, "hk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let secret_as_key = (pair.1, pair.1);
    for (case, pair) in [("crossed halves", crossed), ("made-up secret", made_up), ("secret as key", secret_as_key)] {
        for base in [&app.backend, &app.proxy] {
            let res = with_pair(app, base, Method::GET, "/users/me", pair, &[]).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{case} at {base}");
        }
    }
    for base in [&app.backend, &app.proxy] {
        let res = app.client.get(format!("{base}/users/me")).header("X-Api-Key", pair.0).send().await.unwrap();
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    // Revoked: the pair is dead too, before the revocation's answer returns.
    let id = one["id"].as_str().unwrap();
    let revoked = cloud.call(Method::DELETE, &format!("{keys}/{id}"), "user_owner", None).await;
    expect_json(revoked, StatusCode::OK).await;
    for base in [&app.backend, &app.proxy] {
        let res = with_pair(app, base, Method::GET, "/users/me", pair, &[]).await;
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    let other = (two["key"].as_str().unwrap(), two["secret"].as_str().unwrap());
    expect_json(with_pair(app, &app.backend, Method::GET, "/users/me", other, &[]).await, StatusCode::OK).await;
}

#[tokio::test]
async fn org_api_keys_work_on_the_backend_and_proxy_until_revoked_or_the_org_is_deleted() {
    let cloud = cloud_app().await;
    let org = cloud.onboard("user_owner", "Keys").await;
    cloud.join(org, "user_owner", "user_dev", "developer").await;
    let base = format!("/cloud/organizations/{org}");
    let keys = format!("{base}/api-keys");
    let create = |name: Option<&str>| {
        let body = name.map(|n| json!({ "name": n })).unwrap_or(json!({}));
        cloud.call(Method::POST, &keys, "user_owner", Some(body))
    };
    let prod = expect_json(create(Some("Production")).await, StatusCode::CREATED).await;
    let ci = expect_json(create(None).await, StatusCode::CREATED).await;
    assert!(ci["name"].as_str().unwrap().starts_with("Key "), "default name: {}", ci["name"]);
    let (secret, label) = (prod["secret"].as_str().unwrap().to_owned(), prod["key"].as_str().unwrap().to_owned());

    // The secret is an X-Api-Key of the org's project user, on the Backend and through the Proxy.
    let me = expect_json(cloud.app.get("/users/me", &secret).await, StatusCode::OK).await;
    assert_eq!(me["orgId"], org.to_string());
    let proxied =
        cloud.app.proxy(Method::GET, &format!("/admin/orgs/{org}/users"), &[("X-Api-Key", &secret)], None).await;
    expect_json(proxied, StatusCode::OK).await;
    // The listed key alone never authenticates.
    expect_error(cloud.app.get("/users/me", &label).await, StatusCode::UNAUTHORIZED).await;

    // Listed without secrets; the use shows up in last_used_at.
    let list = |sub: &'static str| cloud.call(Method::GET, &keys, sub, None);
    let listed = expect_json(list("user_dev").await, StatusCode::OK).await;
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&secret));
    assert!(listed["api_keys"].as_array().unwrap().iter().all(|k| k.get("secret").is_none() && k["active"] == true));
    eventually("last_used_at is written", || async {
        let listed = expect_json(list("user_dev").await, StatusCode::OK).await;
        listed["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["key"] == label.as_str() && !k["last_used_at"].is_null())
    })
    .await;
    assert_nowhere_in_the_database(&cloud.app, &secret, &[]).await;

    // Revoked: its next request is 401, and it leaves the list.
    let id = prod["id"].as_str().unwrap();
    let revoked = expect_json(
        cloud.call(Method::DELETE, &format!("{base}/api-keys/{id}"), "user_owner", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revoked, json!({ "status": "revoked", "id": id }));
    expect_error(cloud.app.get("/users/me", &secret).await, StatusCode::UNAUTHORIZED).await;
    let res = cloud.call(Method::DELETE, &format!("{base}/api-keys/{id}"), "user_owner", None).await;
    assert_eq!(expect_error(res, StatusCode::NOT_FOUND).await, "api key not found");
    assert_eq!(expect_json(list("user_owner").await, StatusCode::OK).await["api_keys"].as_array().unwrap().len(), 1);

    // Deleting the org: its other key stops working, members lose access, the audit stays.
    let ci_secret = ci["secret"].as_str().unwrap();
    expect_json(cloud.app.get("/users/me", ci_secret).await, StatusCode::OK).await;
    expect_json(cloud.call(Method::DELETE, &base, "user_owner", None).await, StatusCode::OK).await;
    expect_error(cloud.app.get("/users/me", ci_secret).await, StatusCode::UNAUTHORIZED).await;
    expect_error(cloud.call(Method::GET, &format!("{base}/members"), "user_dev", None).await, StatusCode::NOT_FOUND)
        .await;
    let listed =
        expect_json(cloud.call(Method::GET, "/cloud/organizations", "user_dev", None).await, StatusCode::OK).await;
    assert_eq!(listed["organizations"], json!([]));
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_entries WHERE org_id = $1 AND action = 'org.delete'")
            .bind(org)
            .fetch_one(&cloud.app.pool)
            .await
            .unwrap();
    assert_eq!(audited, 1);
}

fn clerk_user(id: &str, email: &str, first: &str) -> Value {
    json!({
        "id": id,
        "object": "user",
        "first_name": first,
        "last_name": "Smith",
        "image_url": "https://img.example.test/a.png",
        "primary_email_address_id": "idn_1",
        "email_addresses": [
            { "id": "idn_0", "email_address": "old@example.test", "verification": { "status": "unverified" } },
            { "id": "idn_1", "email_address": email, "verification": { "status": "verified" } }
        ]
    })
}

#[tokio::test]
async fn webhooks_are_verified_applied_once_and_keep_the_identity_cache() {
    let cloud = cloud_app().await;
    let org = cloud.onboard("user_owner", "Hooks").await;
    let now = chrono::Utc::now().timestamp();
    let created = json!({ "type": "user.created", "object": "event", "data": clerk_user("user_owner", "alice@acme.test", "Alice") });
    // Delivered through the Proxy, the public edge.
    let bytes = serde_json::to_vec(&created).unwrap();
    let headers = idp::svix_headers(idp::WEBHOOK_SECRET, "msg_1", now, &bytes);
    let mut req = cloud.app.client.post(format!("{}/webhooks/clerk", cloud.app.proxy)).body(bytes);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    assert_eq!(req.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let members_path = format!("/cloud/organizations/{org}/members");
    let members = expect_json(cloud.call(Method::GET, &members_path, "user_owner", None).await, StatusCode::OK).await;
    assert_eq!(members["members"][0]["email"], "alice@acme.test");
    assert_eq!(members["members"][0]["first_name"], "Alice");
    assert_eq!(members["members"][0]["last_name"], "Smith");

    // Tampered, stale, future, unsigned, or signed with another secret: 401, and nothing changes.
    let updated = json!({ "type": "user.updated", "data": clerk_user("user_owner", "mallory@evil.test", "Mallory") });
    let bytes = serde_json::to_vec(&updated).unwrap();
    let signed = idp::svix_headers(idp::WEBHOOK_SECRET, "msg_2", now, &serde_json::to_vec(&created).unwrap());
    let mut tampered = cloud.app.client.post(format!("{}/webhooks/clerk", cloud.app.backend)).body(bytes.clone());
    for (name, value) in &signed {
        tampered = tampered.header(name, value);
    }
    assert_eq!(
        expect_error(tampered.send().await.unwrap(), StatusCode::UNAUTHORIZED).await,
        "invalid webhook signature"
    );
    assert_eq!(cloud.webhook("msg_3", now - 301, &updated).await.status(), StatusCode::UNAUTHORIZED);
    // From the time of this request, with room for a slow machine: `now` is seconds old by now, and
    // `now + 301` is within five minutes of the server's clock once one second has passed.
    let future = chrono::Utc::now().timestamp() + 330;
    assert_eq!(cloud.webhook("msg_4", future, &updated).await.status(), StatusCode::UNAUTHORIZED);
    let res = cloud
        .app
        .client
        .post(format!("{}/webhooks/clerk", cloud.app.backend))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let mut other = cloud.app.client.post(format!("{}/webhooks/clerk", cloud.app.backend)).body(bytes.clone());
    for (name, value) in idp::svix_headers("whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=", "msg_5", now, &bytes) {
        other = other.header(name, value);
    }
    assert_eq!(other.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // A replayed delivery id is acknowledged and ignored, even with a new (validly signed) body.
    assert_eq!(cloud.webhook("msg_1", now, &updated).await.status(), StatusCode::NO_CONTENT);
    let members = expect_json(cloud.call(Method::GET, &members_path, "user_owner", None).await, StatusCode::OK).await;
    assert_eq!(members["members"][0]["email"], "alice@acme.test");
    // A delivery that fails is not marked seen, so its retry lands.
    let broken = json!({ "type": "user.updated", "data": { "id": "not-a-user-id" } });
    assert_eq!(cloud.webhook("msg_6", now, &broken).await.status(), StatusCode::BAD_REQUEST);
    let seen: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE svix_id = 'msg_6')")
        .fetch_one(&cloud.app.pool)
        .await
        .unwrap();
    assert!(!seen);
    // Other event types are acknowledged and ignored.
    let session = json!({ "type": "session.created", "data": { "id": "sess_1" } });
    assert_eq!(cloud.webhook("msg_7", now, &session).await.status(), StatusCode::NO_CONTENT);

    // The identity cache's verified email lets its owner accept an invite whose token had no email.
    cloud.join(org, "user_owner", "user_bob", "viewer").await;
    let bob = json!({ "type": "user.created", "data": clerk_user("user_carl", "carl@acme.test", "Carl") });
    assert_eq!(cloud.webhook("msg_8", now, &bob).await.status(), StatusCode::NO_CONTENT);
    let invite = cloud
        .call(
            Method::POST,
            &format!("/cloud/organizations/{org}/invites"),
            "user_owner",
            Some(json!({ "email": "carl@acme.test" })),
        )
        .await;
    let token = expect_json(invite, StatusCode::CREATED).await["token"].as_str().unwrap().to_owned();
    let mut bare = cloud.idp.claims("user_carl");
    for claim in ["email", "email_verified", "first_name", "last_name"] {
        bare.as_object_mut().unwrap().remove(claim);
    }
    let res = cloud
        .with_token(
            Method::POST,
            &format!("/cloud/invites/{token}/accept"),
            &cloud.idp.sign(idp::RSA_1, Algorithm::RS256, &bare),
            None,
        )
        .await;
    expect_json(res, StatusCode::OK).await;

    // user.deleted ends every membership of the identity; a second delivery changes nothing more.
    let deleted = json!({ "type": "user.deleted", "data": { "id": "user_bob", "object": "user", "deleted": true } });
    assert_eq!(cloud.webhook("msg_9", now, &deleted).await.status(), StatusCode::NO_CONTENT);
    let res = cloud.call(Method::GET, &members_path, "user_bob", None).await;
    assert_eq!(expect_error(res, StatusCode::FORBIDDEN).await, NOT_A_MEMBER);
    let events = cloud.app.event_count().await;
    assert_eq!(cloud.webhook("msg_10", now, &deleted).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(cloud.app.event_count().await, events);
    let members = expect_json(cloud.call(Method::GET, &members_path, "user_owner", None).await, StatusCode::OK).await;
    let ids: Vec<&str> =
        members["members"].as_array().unwrap().iter().map(|m| m["clerk_user_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["user_owner", "user_carl"]);
}
