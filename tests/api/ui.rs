//! The dashboard's server side over HTTP, as a browser speaks to it: the session cookie and its
//! flags, the CSRF token on every state-changing form, the Content-Security-Policy on every page,
//! sign-out ending the session on the server, and the admin pages doing what they show.

use reqwest::{header, StatusCode};

use crate::helpers::{expect_json, spawn_app, TestApp};

/// A browser without redirects followed, keeping the cookies it is given by hand.
pub struct Browser<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: String,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { app, http, cookies: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn take(&mut self, response: reqwest::Response) -> Page {
        for set in response.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !set.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        Page { status: response.status(), headers: response.headers().clone(), body: response.text().await.unwrap() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.app.proxy))
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.take(response).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(format!("{}{path}", self.app.proxy))
            .header(header::COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.take(response).await
    }
}

/// The value of the first hidden `csrf` field on a page.
pub fn csrf(page: &Page) -> String {
    let at = page.body.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    page.body[at..].split('"').next().unwrap().to_owned()
}

fn location(page: &Page) -> &str {
    page.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn sign_in_sessions_csrf_and_the_admin_pages() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let mut browser = Browser::new(&app);

    // Closed pages send to the sign-in page; every page has the strict policy.
    let page = browser.get("/ui/users").await;
    assert_eq!((page.status, location(&page)), (StatusCode::SEE_OTHER, "/ui/sign-in"));
    let sign_in = browser.get("/ui/sign-in").await;
    assert_eq!(sign_in.status, StatusCode::OK);
    let csp = sign_in.headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!sign_in.body.contains("<script"), "no inline script");
    assert!(sign_in.body.contains("<label for=\"api_key\">"), "labelled controls");

    // A sign-in without the form's token, or with a wrong key, opens nothing.
    let refused = browser.post("/ui/sign-in", &[("api_key", &fx.admin_key)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let token = csrf(&refused);
    let wrong = browser.post("/ui/sign-in", &[("csrf", &token), ("api_key", "hk_wrong")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("class=\"error\""), "the error is shown in place");

    // Signed in with the API key: a cookie holding a random id (never the key), with every flag.
    let token = csrf(&wrong);
    let signed = browser.post("/ui/sign-in", &[("csrf", &token), ("api_key", &fx.admin_key)]).await;
    assert_eq!((signed.status, location(&signed)), (StatusCode::SEE_OTHER, "/ui/"));
    let set =
        signed.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
    let session = set.iter().find(|c| c.starts_with("harden_session=")).expect("a session cookie");
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(!session.contains(&fx.admin_key));
    let overview = browser.get("/ui/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("first admin"), "{}", overview.body);
    assert!(overview.headers.get(header::CONTENT_SECURITY_POLICY).is_some());

    // The stylesheet comes from the binary under a content-hashed name, cached for ever.
    let css_path = overview
        .body
        .split("href=\"")
        .find(|s| s.starts_with("/ui/assets/app-"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let css = browser.get(&css_path).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers.get(header::CACHE_CONTROL).unwrap().to_str().unwrap().contains("immutable"));

    // A form without the CSRF token changes nothing.
    let users_before =
        expect_json(app.get(&format!("/admin/orgs/{}/users", fx.org), &fx.admin_key).await, StatusCode::OK).await;
    let forged = browser.post("/ui/users", &[("name", "mallory"), ("is_admin", "true")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let forged = browser.post("/ui/users", &[("csrf", "not-the-token"), ("name", "mallory")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let users_after =
        expect_json(app.get(&format!("/admin/orgs/{}/users", fx.org), &fx.admin_key).await, StatusCode::OK).await;
    assert_eq!(users_before, users_after, "nothing was created");

    // With it: a user is created and its key shown once, and it works.
    let users = browser.get("/ui/users").await;
    let token = csrf(&users);
    let created = browser.post("/ui/users", &[("csrf", &token), ("name", "carol"), ("is_admin", "false")]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = created.body.split("<code id=\"new-key\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let me = expect_json(app.get("/users/me", &key).await, StatusCode::OK).await;
    assert_eq!(me["name"], "carol");
    assert!(!browser.get("/ui/users").await.body.contains(&key), "shown once");
    // Rotating it shows a new key once; the old one stops working.
    let carol = me["id"].as_str().unwrap().to_owned();
    let rotated = browser.post(&format!("/ui/users/{carol}/rotate"), &[("csrf", &token)]).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_key = rotated.body.split("<code id=\"new-key\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(app.get("/users/me", &key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/users/me", &new_key).await.status(), StatusCode::OK);
    // Offboarding without the token does nothing; with it, the key stops working.
    assert_eq!(browser.post(&format!("/ui/users/{carol}/offboard"), &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/users/me", &new_key).await.status(), StatusCode::OK);
    let gone = browser.post(&format!("/ui/users/{carol}/offboard"), &[("csrf", &token)]).await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    assert_eq!(app.get("/users/me", &new_key).await.status(), StatusCode::UNAUTHORIZED);

    // The audit page lists entries and verifies the org's chain; the export is JSON Lines.
    app.put_kv("db-url", &fx.member_key, 8).await;
    let audit = browser.get("/ui/audit?scope=all").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit.body.contains("Intact:"), "{}", audit.body);
    assert!(audit.body.contains("user.create"));
    let export = browser.get("/ui/audit/export").await;
    assert_eq!(export.headers.get(header::CONTENT_TYPE).unwrap(), "application/x-ndjson");
    let lines: Vec<serde_json::Value> = export.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 8 && lines.windows(2).all(|w| w[1]["prevHash"] == w[0]["hash"]));
    sqlx::query("UPDATE audit_entries SET user_id = NULL WHERE org_id = $1 AND action = 'create'")
        .bind(fx.org)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(browser.get("/ui/audit").await.body.contains("BROKEN at entry"), "a tampered chain is shown as broken");

    // Sign-out needs the token, ends the session on the server, and the pages close.
    let session_cookie = browser.cookies.iter().find(|(k, _)| k == "harden_session").unwrap().clone();
    assert_eq!(browser.post("/ui/sign-out", &[]).await.status, StatusCode::FORBIDDEN);
    let out = browser.post("/ui/sign-out", &[("csrf", &token)]).await;
    assert_eq!((out.status, location(&out)), (StatusCode::SEE_OTHER, "/ui/sign-in"));
    browser.cookies.push(session_cookie);
    let closed = browser.get("/ui/").await;
    assert_eq!(
        (closed.status, location(&closed)),
        (StatusCode::SEE_OTHER, "/ui/sign-in"),
        "the old cookie opens nothing"
    );
}

#[tokio::test]
async fn a_wrong_org_admin_password_opens_nothing_and_sessions_expire() {
    use crate::helpers::spawn_app_with;
    let app = spawn_app_with(|s| s.ui_session_secs = 1).await;
    let fx = app.org_with_users("acme").await;
    let mut browser = Browser::new(&app);
    let sign_in = browser.get("/ui/sign-in").await;
    let token = csrf(&sign_in);
    let refused = browser
        .post("/ui/sign-in", &[("csrf", &token), ("email", "nobody@example.com"), ("password", "wrong password!")])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let token = csrf(&refused);
    let signed = browser.post("/ui/sign-in", &[("csrf", &token), ("api_key", &fx.admin_key)]).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/ui/").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let expired = browser.get("/ui/").await;
    assert_eq!((expired.status, location(&expired)), (StatusCode::SEE_OTHER, "/ui/sign-in"), "HARDEN_UI_SESSION_SECS");
}

#[tokio::test]
async fn an_org_admin_signs_in_with_email_and_password() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "orgName": "Password Inc", "adminName": "Pat Admin", "email": "pat@example.com",
        "password": "CorrectHorseBatteryStaple1!", "countryCode": "US", "plan": "free", "billingCycle": "monthly",
    });
    let res = app.proxy(reqwest::Method::POST, "/auth/orgadmin/register", &[], Some(body)).await;
    let token = expect_json(res, StatusCode::ACCEPTED).await["verificationToken"].as_str().unwrap().to_owned();
    let res = app.proxy(reqwest::Method::GET, &format!("/auth/orgadmin/verify?token={token}"), &[], None).await;
    let verified = expect_json(res, StatusCode::OK).await;
    let mut browser = Browser::new(&app);
    let sign_in = browser.get("/ui/sign-in").await;
    let csrf_token = csrf(&sign_in);
    let signed = browser
        .post(
            "/ui/sign-in",
            &[("csrf", &csrf_token), ("email", "pat@example.com"), ("password", "CorrectHorseBatteryStaple1!")],
        )
        .await;
    assert_eq!((signed.status, location(&signed)), (StatusCode::SEE_OTHER, "/ui/"));
    let overview = browser.get("/ui/").await;
    assert!(overview.body.contains("Pat Admin") && overview.body.contains("Plan: free"), "{}", overview.body);
    // The sign-in issued a fresh key: the one the verification answered stops working.
    let old = verified["apiKey"].as_str().unwrap();
    assert_eq!(app.get("/users/me", old).await.status(), StatusCode::UNAUTHORIZED);
}
