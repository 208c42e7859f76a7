//! Self-service registration, email verification, Stripe-paid plans, sign-in and Stripe webhooks,
//! against a real SMTP server and a Stripe stand-in on loopback.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, expect_json, spawn_app, spawn_app_with, TestApp};
use crate::stand_ins::{stripe_signature, SmtpServer, StripeStandIn, STRIPE_KEY, WEBHOOK_SECRET};

const PASSWORD: &str = "CorrectHorseBatteryStaple1!";

fn registration(email: &str, plan: &str) -> Value {
    json!({
        "orgName": "Acme Inc",
        "adminName": "Jane Admin",
        "email": email,
        "password": PASSWORD,
        "countryCode": "US",
        "plan": plan,
        "billingCycle": "monthly",
        "stripePaymentMethodId": if plan == "free" { Value::Null } else { json!("pm_card_visa") },
    })
}

fn with_stripe(settings: &mut harden::Settings, stripe: &StripeStandIn) {
    settings.stripe_secret_key = Some(STRIPE_KEY.into());
    settings.stripe_api_base = stripe.url();
    settings.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
    settings.stripe_timeout_ms = 1_000;
    for (field, price) in [
        (&mut settings.stripe_price_starter_monthly, "price_starter_m"),
        (&mut settings.stripe_price_starter_annual, "price_starter_y"),
        (&mut settings.stripe_price_smb_monthly, "price_smb_m"),
        (&mut settings.stripe_price_smb_annual, "price_smb_y"),
        (&mut settings.stripe_price_business_monthly, "price_business_m"),
        (&mut settings.stripe_price_business_annual, "price_business_y"),
    ] {
        *field = price.to_owned();
    }
}

impl TestApp {
    async fn anonymous(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        self.request(method, path, None, body).await
    }

    async fn register(&self, body: Value) -> reqwest::Response {
        self.anonymous(Method::POST, "/auth/orgadmin/register", Some(body)).await
    }

    async fn verify(&self, token: &str) -> reqwest::Response {
        self.anonymous(Method::GET, &format!("/auth/orgadmin/verify?token={token}"), None).await
    }

    async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.anonymous(Method::POST, "/auth/orgadmin/login", Some(json!({ "email": email, "password": password })))
            .await
    }

    /// Registers without email delivery and returns the token from the answer.
    async fn registered_token(&self, body: Value) -> String {
        let answer = expect_json(self.register(body).await, StatusCode::ACCEPTED).await;
        answer["verificationToken"].as_str().expect("the token, as email is off").to_owned()
    }

    async fn orgs(&self) -> Vec<Value> {
        let orgs = expect_json(self.get("/admin/orgs", &self.global_admin_key).await, StatusCode::OK).await;
        orgs.as_array().cloned().unwrap_or_default()
    }

    async fn events_of(&self, aggregate_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
            .bind(aggregate_type)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn every_registration_rule_is_checked_and_nothing_is_recorded_for_a_refusal() {
    let app = spawn_app().await;
    let mut cases = vec![];
    for (field, value, expected) in [
        ("orgName", json!("  "), "orgName must not be empty"),
        ("adminName", json!(""), "adminName must not be empty"),
        ("email", json!("jane@"), "email is not a valid email address"),
        ("email", json!("jane@localhost"), "email is not a valid email address"),
        ("email", json!("jane doe@example.com"), "email is not a valid email address"),
        ("password", json!("short-pw1"), "password must be at least 10 characters"),
        ("password", json!("x".repeat(1025)), "password must be at most 1024 bytes"),
        ("countryCode", json!("FR"), "countryCode 'FR' is not available"),
        ("countryCode", json!("us"), "countryCode 'us' is not available"),
        ("plan", Value::Null, "plan is required"),
        ("plan", json!("gold"), "unknown plan 'gold'"),
        ("plan", json!("enterprise"), "enquiry@hardencloud.com"),
        ("billingCycle", json!("weekly"), "unknown billingCycle 'weekly'"),
    ] {
        let mut body = registration("jane@example.com", "free");
        body[field] = value;
        cases.push((body, expected));
    }
    // A paid plan on a server without Stripe.
    cases.push((registration("jane@example.com", "starter"), "paid plans are not available on this server"));
    // Missing and unknown fields are refused by the body parser.
    let mut missing = registration("jane@example.com", "free");
    missing.as_object_mut().unwrap().remove("email");
    cases.push((missing, "missing field `email`"));
    let mut unknown = registration("jane@example.com", "free");
    unknown["isAdmin"] = json!(true);
    cases.push((unknown, "unknown field `isAdmin`"));
    for (body, expected) in cases {
        let msg = expect_error(app.register(body.clone()).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains(expected), "{body}: expected {expected:?}, got {msg:?}");
    }
    assert_eq!(app.events_of("Registration").await, 0, "no refused registration was recorded");
    // Every accepted country and both cycles pass.
    for country in harden_domain::registration::COUNTRIES {
        let mut body = registration(&format!("{}@example.com", country.to_lowercase()), "free");
        body["countryCode"] = json!(country);
        body["billingCycle"] = json!(if country < "M" { "monthly" } else { "annual" });
        expect_json(app.register(body).await, StatusCode::ACCEPTED).await;
    }
}

#[tokio::test]
async fn paid_plans_need_a_valid_payment_method() {
    let stripe = StripeStandIn::start().await;
    let app = spawn_app_with(|s| with_stripe(s, &stripe)).await;
    let mut body = registration("jane@example.com", "smb");
    body["stripePaymentMethodId"] = Value::Null;
    let msg = expect_error(app.register(body.clone()).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("stripePaymentMethodId is required for paid plans"), "{msg}");
    body["stripePaymentMethodId"] = json!("card_123; DROP");
    let msg = expect_error(app.register(body).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("not a Stripe payment method id"), "{msg}");
}

#[tokio::test]
async fn the_free_plan_flow_goes_from_registration_by_email_to_a_working_key() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(|s| s.smtp_url = Some(smtp.url().into())).await;
    let answer = expect_json(app.register(registration("Jane@Example.com", "free")).await, StatusCode::ACCEPTED).await;
    assert_eq!(answer["requiresVerification"], true);
    assert_eq!(answer["message"], "Verification email sent. Please verify your email to complete registration.");
    assert!(answer["verificationToken"].is_null(), "the token travels only by email");

    let mail = smtp.wait_for("jane@example.com", 1).await.remove(0);
    assert!(mail.subject().contains("Acme Inc"), "{}", mail.subject());
    let token = mail.token().expect("a verification link");
    assert_eq!(token.len(), 43);
    // The token is stored only hashed: it appears nowhere in the database.
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'")
        .bind(&token)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(found, 0);
    // Nor the password: only its Argon2id hash.
    let plain: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'")
        .bind(PASSWORD)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(plain, 0);

    let key = expect_json(app.verify(&token).await, StatusCode::OK).await["apiKey"].as_str().unwrap().to_owned();
    let me = expect_json(app.get("/users/me", &key).await, StatusCode::OK).await;
    assert_eq!(me["isAdmin"], true);
    assert_eq!(me["name"], "Jane Admin");
    let orgs = app.orgs().await;
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0]["name"], "Acme Inc");
    assert_eq!(orgs[0]["plan"], "free");
    assert_eq!(orgs[0]["id"], me["orgId"]);
    // The org admin works as one: creates a user in the org and writes a record.
    expect_json(
        app.post(&format!("/admin/orgs/{}/users", me["orgId"].as_str().unwrap()), &key, json!({ "name": "svc" })).await,
        StatusCode::CREATED,
    )
    .await;
    assert!(app.put_kv("first", &key, 10).await.status().is_success());

    // Single use.
    let msg = expect_error(app.verify(&token).await, StatusCode::CONFLICT).await;
    assert!(msg.contains("already been used"), "{msg}");
    assert_eq!(app.orgs().await.len(), 1);
}

#[tokio::test]
async fn without_email_delivery_the_token_is_in_the_answer() {
    let app = spawn_app().await;
    let answer = expect_json(app.register(registration("jane@example.com", "free")).await, StatusCode::ACCEPTED).await;
    assert_eq!(answer["requiresVerification"], true);
    let token = answer["verificationToken"].as_str().unwrap();
    let key = expect_json(app.verify(token).await, StatusCode::OK).await["apiKey"].as_str().unwrap().to_owned();
    expect_json(app.get("/users/me", &key).await, StatusCode::OK).await;
}

#[tokio::test]
async fn invalid_and_expired_tokens_are_clear_4xx() {
    let app = spawn_app_with(|s| s.verification_token_ttl_secs = 1).await;
    let msg = expect_error(app.verify("not-a-token").await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("invalid"), "{msg}");
    let msg = expect_error(app.verify(&"A".repeat(43)).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("invalid"), "{msg}");
    expect_error(app.anonymous(Method::GET, "/auth/orgadmin/verify", None).await, StatusCode::BAD_REQUEST).await;

    let token = app.registered_token(registration("jane@example.com", "free")).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let msg = expect_error(app.verify(&token).await, StatusCode::GONE).await;
    assert!(msg.contains("expired"), "{msg}");
    assert!(app.orgs().await.is_empty());
}

#[tokio::test]
async fn a_second_registration_of_a_known_email_reveals_nothing_and_creates_nothing() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(|s| s.smtp_url = Some(smtp.url().into())).await;
    let first = expect_json(app.register(registration("jane@example.com", "free")).await, StatusCode::ACCEPTED).await;
    let token = smtp.wait_for("jane@example.com", 1).await[0].token().unwrap();
    expect_json(app.verify(&token).await, StatusCode::OK).await;

    let mut again = registration("jane@example.com", "free");
    again["orgName"] = json!("Second Org");
    let second = expect_json(app.register(again).await, StatusCode::ACCEPTED).await;
    assert_eq!(first, second, "the same answer as for a new address");
    let notice = smtp.wait_for("jane@example.com", 2).await.remove(1);
    assert!(notice.text().contains("already has an account"), "{}", notice.text());
    assert!(notice.text().contains("/auth/orgadmin/login"));
    assert!(notice.token().is_none(), "no verification link");
    assert_eq!(app.orgs().await.len(), 1, "no second org");
}

#[tokio::test]
async fn without_email_a_duplicate_token_cannot_make_a_second_org() {
    let app = spawn_app().await;
    let first = app.registered_token(registration("jane@example.com", "free")).await;
    let second = app.registered_token(registration("JANE@example.com", "free")).await;
    expect_json(app.verify(&first).await, StatusCode::OK).await;
    let msg = expect_error(app.verify(&second).await, StatusCode::CONFLICT).await;
    assert!(msg.contains("already exists"), "{msg}");
    assert_eq!(app.orgs().await.len(), 1);
}

#[tokio::test]
async fn two_racing_verifications_of_one_email_make_one_org() {
    let app = spawn_app().await;
    let a = app.registered_token(registration("race@example.com", "free")).await;
    let b = app.registered_token(registration("race@example.com", "free")).await;
    let (ra, rb) = tokio::join!(app.verify(&a), app.verify(&b));
    let mut statuses = [ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    assert_eq!(app.orgs().await.len(), 1);
    assert_eq!(app.events_of("EmailClaim").await, 1);
}

#[tokio::test]
async fn a_paid_plan_is_subscribed_on_stripe_during_verification() {
    let stripe = StripeStandIn::start().await;
    let app = spawn_app_with(|s| with_stripe(s, &stripe)).await;
    let mut body = registration("pay@example.com", "smb");
    body["billingCycle"] = json!("annual");
    let token = app.registered_token(body).await;
    let key = expect_json(app.verify(&token).await, StatusCode::OK).await["apiKey"].as_str().unwrap().to_owned();
    let me = expect_json(app.get("/users/me", &key).await, StatusCode::OK).await;
    let orgs = app.orgs().await;
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0]["plan"], "smb");

    let book = stripe.book();
    assert_eq!(book.customers.len(), 1);
    assert_eq!(book.customers[0]["email"], "pay@example.com");
    assert_eq!(book.subscriptions.len(), 1);
    let subscription = &book.subscriptions[0];
    assert_eq!(subscription["items"]["data"][0]["price"]["id"], "price_smb_y");
    assert_eq!(subscription["default_payment_method"], "pm_card_visa");
    assert_eq!(subscription["metadata"]["harden_org_id"], me["orgId"]);
    // Every Stripe request carried an idempotency key, each step its own.
    assert!(book.requests.iter().all(|(_, _, key)| key.is_some()), "{:?}", book.requests);
    let keys: std::collections::HashSet<_> = book.requests.iter().map(|(_, _, k)| k.clone()).collect();
    assert_eq!(keys.len(), book.requests.len());
}

#[tokio::test]
async fn a_declined_card_leaves_nothing_behind_and_the_same_link_works_once_fixed() {
    let stripe = StripeStandIn::start().await;
    let app = spawn_app_with(|s| with_stripe(s, &stripe)).await;
    let token = app.registered_token(registration("decline@example.com", "starter")).await;
    let users_before = app.events_of("User").await;
    stripe.book().decline = true;
    let msg = expect_error(app.verify(&token).await, StatusCode::PAYMENT_REQUIRED).await;
    assert!(msg.contains("Your card was declined."), "{msg}");
    assert!(msg.contains("generic_decline"), "{msg}");
    assert!(app.orgs().await.is_empty(), "no org");
    assert_eq!(app.events_of("User").await, users_before, "no user");
    assert_eq!(app.events_of("EmailClaim").await, 0, "the email is not claimed");
    assert!(stripe.book().subscriptions.is_empty());

    // Fixed: the same link, and Stripe gets a new attempt rather than a replay of the refusal.
    stripe.book().decline = false;
    let key = expect_json(app.verify(&token).await, StatusCode::OK).await["apiKey"].as_str().unwrap().to_owned();
    expect_json(app.get("/users/me", &key).await, StatusCode::OK).await;
    assert_eq!(app.orgs().await.len(), 1);
    let book = stripe.book();
    assert_eq!(book.customers.len(), 1, "one customer across both attempts");
    assert_eq!(book.subscriptions.len(), 1);
}

#[tokio::test]
async fn after_a_decline_the_same_link_takes_another_card() {
    let stripe = StripeStandIn::start().await;
    let app = spawn_app_with(|s| with_stripe(s, &stripe)).await;
    let mut body = registration("newcard@example.com", "starter");
    body["stripePaymentMethodId"] = json!("pm_card_chargeDeclined");
    let token = app.registered_token(body).await;
    expect_error(app.verify(&token).await, StatusCode::PAYMENT_REQUIRED).await;
    let with_card = |pm: &str| format!("/auth/orgadmin/verify?token={token}&stripePaymentMethodId={pm}");
    expect_error(app.anonymous(Method::GET, &with_card("not-a-pm"), None).await, StatusCode::BAD_REQUEST).await;
    expect_json(app.anonymous(Method::GET, &with_card("pm_card_visa"), None).await, StatusCode::OK).await;
    let book = stripe.book();
    assert_eq!(book.subscriptions.len(), 1);
    assert_eq!(book.subscriptions[0]["default_payment_method"], "pm_card_visa");
    assert_eq!(book.customers.len(), 1, "the same customer");
}

#[tokio::test]
async fn two_verifications_of_one_token_answer_one_working_key() {
    let app = spawn_app().await;
    let token = app.registered_token(registration("twice@example.com", "free")).await;
    let (a, b) = tokio::join!(app.verify(&token), app.verify(&token));
    let mut keys = vec![];
    for res in [a, b] {
        match res.status() {
            StatusCode::OK => keys.push(res.json::<Value>().await.unwrap()["apiKey"].as_str().unwrap().to_owned()),
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(keys.len(), 1, "exactly one verification wins");
    expect_json(app.get("/users/me", &keys[0]).await, StatusCode::OK).await;
    assert_eq!(app.orgs().await.len(), 1);
}

#[tokio::test]
async fn stripe_out_of_reach_is_a_502_and_the_link_works_when_it_is_back() {
    // A port nothing listens on, which the stand-in takes over later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let app = spawn_app_with(|s| {
        let placeholder = StripeStandIn { port, book: Default::default() };
        with_stripe(s, &placeholder);
    })
    .await;
    let token = app.registered_token(registration("down@example.com", "business")).await;
    let msg = expect_error(app.verify(&token).await, StatusCode::BAD_GATEWAY).await;
    assert!(msg.contains("Stripe could not be reached"), "{msg}");
    assert!(app.orgs().await.is_empty());

    let stripe = StripeStandIn::start_on(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap()).await;
    expect_json(app.verify(&token).await, StatusCode::OK).await;
    assert_eq!(app.orgs().await.len(), 1);
    assert_eq!(stripe.book().subscriptions.len(), 1);
}

#[tokio::test]
async fn a_verification_cut_off_after_stripe_subscribed_resumes_without_charging_twice() {
    let stripe = StripeStandIn::start().await;
    let app = spawn_app_with(|s| with_stripe(s, &stripe)).await;
    let token = app.registered_token(registration("resume@example.com", "starter")).await;
    // Stripe subscribes, but its answer comes after harden stopped waiting (1 s).
    stripe.book().subscription_delay = Some(Duration::from_millis(2_500));
    expect_error(app.verify(&token).await, StatusCode::BAD_GATEWAY).await;
    assert_eq!(stripe.book().subscriptions.len(), 1, "Stripe did subscribe");
    assert!(app.orgs().await.is_empty());

    stripe.book().subscription_delay = None;
    expect_json(app.verify(&token).await, StatusCode::OK).await;
    assert_eq!(app.orgs().await.len(), 1, "one org");
    let book = stripe.book();
    assert_eq!(book.subscriptions.len(), 1, "one subscription");
    assert_eq!(book.customers.len(), 1, "one customer");
}

#[tokio::test]
async fn login_returns_a_fresh_key_and_failures_look_the_same() {
    let app = spawn_app().await;
    let token = app.registered_token(registration("login@example.com", "free")).await;
    let first = expect_json(app.verify(&token).await, StatusCode::OK).await["apiKey"].as_str().unwrap().to_owned();

    let second = expect_json(app.login("Login@Example.com", PASSWORD).await, StatusCode::OK).await["apiKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    expect_json(app.get("/users/me", &second).await, StatusCode::OK).await;
    expect_error(app.get("/users/me", &first).await, StatusCode::UNAUTHORIZED).await;

    let wrong = app.login("login@example.com", "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong_body = wrong.text().await.unwrap();
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.text().await.unwrap(), wrong_body, "the same answer");
    assert_eq!(wrong_body, r#"{"error":"invalid email or password"}"#);
    // A failed login changed nothing.
    expect_json(app.get("/users/me", &second).await, StatusCode::OK).await;
    expect_error(app.login("not an email", PASSWORD).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn repeated_failures_are_refused_with_429_per_client_address() {
    let app = spawn_app_with(|s| s.trusted_proxies = "127.0.0.1".to_owned()).await;
    let token = app.registered_token(registration("target@example.com", "free")).await;
    expect_json(app.verify(&token).await, StatusCode::OK).await;
    let login_from = |addr: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(format!("{}/auth/orgadmin/login", app.backend))
                .header("X-Forwarded-For", addr)
                .json(&json!({ "email": "target@example.com", "password": password }))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        assert_eq!(login_from("203.0.113.1", "wrong password!").await.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = login_from("203.0.113.1", PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("retry-after").is_some());
    // Not a lock on the email: the admin, from elsewhere, still signs in.
    assert_eq!(login_from("198.51.100.2", PASSWORD).await.status(), StatusCode::OK);

    // Without trusting the peer, X-Forwarded-For is ignored: all of these come from 127.0.0.1.
    let untrusting = spawn_app_with(|s| s.trusted_proxies = String::new()).await;
    let token = untrusting.registered_token(registration("target@example.com", "free")).await;
    expect_json(untrusting.verify(&token).await, StatusCode::OK).await;
    for n in 0..5 {
        let res = untrusting
            .client
            .post(format!("{}/auth/orgadmin/login", untrusting.backend))
            .header("X-Forwarded-For", format!("203.0.113.{n}"))
            .json(&json!({ "email": "target@example.com", "password": "wrong password!" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    expect_error(untrusting.login("target@example.com", PASSWORD).await, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn through_the_proxy_with_default_settings_an_attacker_cannot_lock_the_admin_out() {
    // The Proxy appends the address it sees to X-Forwarded-For, and the Backend trusts the Proxy on
    // this host by default: each client of the edge is counted on its own.
    let app = spawn_app().await;
    let token = app.registered_token(registration("edge-admin@example.com", "free")).await;
    expect_json(app.verify(&token).await, StatusCode::OK).await;
    let via_proxy = |client: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.proxy(
                Method::POST,
                "/auth/orgadmin/login",
                &[("X-Forwarded-For", client)],
                Some(json!({ "email": "edge-admin@example.com", "password": password })),
            )
            .await
        }
    };
    for _ in 0..5 {
        assert_eq!(via_proxy("203.0.113.66", "guessing wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(via_proxy("203.0.113.66", "guessing wrong").await.status(), StatusCode::TOO_MANY_REQUESTS);
    expect_json(via_proxy("198.51.100.5", PASSWORD).await, StatusCode::OK).await;
}

#[tokio::test]
async fn registrations_from_one_address_are_limited() {
    let app = spawn_app().await;
    for n in 0..harden_commands::throttle::MAX_REGISTRATIONS_PER_ADDRESS {
        expect_json(app.register(registration(&format!("r{n}@example.com"), "free")).await, StatusCode::ACCEPTED).await;
    }
    let res = app.register(registration("one-more@example.com", "free")).await;
    assert!(res.headers().get("retry-after").is_some());
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn registration_works_through_the_proxy() {
    let app = spawn_app().await;
    let res =
        app.proxy(Method::POST, "/auth/orgadmin/register", &[], Some(registration("edge@example.com", "free"))).await;
    let token = expect_json(res, StatusCode::ACCEPTED).await["verificationToken"].as_str().unwrap().to_owned();
    let res = app.proxy(Method::GET, &format!("/auth/orgadmin/verify?token={token}"), &[], None).await;
    expect_json(res, StatusCode::OK).await;
    let res = app
        .proxy(
            Method::POST,
            "/auth/orgadmin/login",
            &[],
            Some(json!({ "email": "edge@example.com", "password": PASSWORD })),
        )
        .await;
    expect_json(res, StatusCode::OK).await;
}

async fn webhook(app: &TestApp, body: &str, signature: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/webhooks/stripe", app.backend))
        .header("Stripe-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_deleted_subscription_moves_the_org_to_the_free_plan_once() {
    let stripe = StripeStandIn::start().await;
    let app = spawn_app_with(|s| with_stripe(s, &stripe)).await;
    let token = app.registered_token(registration("hook@example.com", "business")).await;
    let key = expect_json(app.verify(&token).await, StatusCode::OK).await["apiKey"].as_str().unwrap().to_owned();
    let org = expect_json(app.get("/users/me", &key).await, StatusCode::OK).await["orgId"].as_str().unwrap().to_owned();
    let subscription = stripe.book().subscriptions[0].clone();
    let body = json!({
        "id": "evt_1", "object": "event", "type": "customer.subscription.deleted",
        "data": { "object": subscription }
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();

    // A wrong signature, a wrong secret, a stale timestamp: refused, nothing changes.
    for bad in [
        "t=1,v1=00".to_owned(),
        stripe_signature("whsec_not_ours", now, &body),
        stripe_signature(WEBHOOK_SECRET, now - 3_600, &body),
        stripe_signature(WEBHOOK_SECRET, now, &body.replace("deleted", "updated")),
    ] {
        expect_error(webhook(&app, &body, &bad).await, StatusCode::BAD_REQUEST).await;
    }
    assert_eq!(app.orgs().await[0]["plan"], "business");

    let signature = stripe_signature(WEBHOOK_SECRET, now, &body);
    // Delivered to the public edge, the Proxy, which passes it on.
    let res = app
        .client
        .post(format!("{}/webhooks/stripe", app.proxy))
        .header("Stripe-Signature", &signature)
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let received = expect_json(res, StatusCode::OK).await;
    assert_eq!(received["received"], true);
    let plan_changes = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type IN ('OrgPlanChanged', 'OrgSubscriptionEnded')",
        )
        .bind(&org)
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    assert_eq!(plan_changes().await, 2);
    // A duplicate delivery changes nothing twice.
    expect_json(webhook(&app, &body, &signature).await, StatusCode::OK).await;
    assert_eq!(plan_changes().await, 2);
    crate::helpers::eventually("the directory shows the free plan", || async { app.orgs().await[0]["plan"] == "free" })
        .await;
    // The audit records why.
    crate::helpers::eventually("the audit shows the subscription's end", || async {
        let audit = expect_json(app.get("/audit?scope=all", &key).await, StatusCode::OK).await;
        audit.to_string().contains("org.subscription_end")
    })
    .await;
}

#[tokio::test]
async fn webhooks_are_404_without_a_webhook_secret() {
    let app = spawn_app().await;
    expect_error(webhook(&app, "{}", "t=1,v1=00").await, StatusCode::NOT_FOUND).await;
}
