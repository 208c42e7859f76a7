//! The web dashboard, served by the public edge under `/ui/`: server-rendered HTML (maud), no
//! script in this first part, one stylesheet served from the binary under a content-hashed name,
//! and nothing fetched from anywhere else. Every page carries a strict Content-Security-Policy.
//!
//! A person signs in with an API key, or as an org admin with email and password (the Backend's
//! sign-in, which issues a fresh API key). The session ([`session`]) keeps that credential on the
//! server; the browser holds only a random id in an `HttpOnly; Secure; SameSite=Strict` cookie.
//! Every state-changing form carries the session's CSRF token, and a request without it changes
//! nothing. The pages call the Backend's routes with the session's credential, as any client does.

mod cloud;
pub mod session;
mod storage;
mod vault;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup, DOCTYPE};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use harden_client::{ApiCredential, Vault};
use session::{NewSession, Session, Sessions};

const CSS: &str = include_str!("app.css");
const COPY_JS: &str = include_str!("copy.js");

/// `/ui/assets/<stem>-<first 16 hex digits of the content's SHA-256>.<ext>`: an asset's path,
/// cached for ever because it changes with the content.
fn hashed_path(stem: &str, ext: &str, content: &str) -> String {
    format!("/ui/assets/{stem}-{}.{ext}", &hex::encode(Sha256::digest(content.as_bytes()))[..16])
}

/// An asset served from the binary under its hashed path.
fn asset(content_type: &'static str, content: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], content)
        .into_response()
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The copy buttons' script.
static COPY_SCRIPT: LazyLock<String> = LazyLock::new(|| hashed_path("copy", "js", COPY_JS));

static CSS_PATH: LazyLock<String> = LazyLock::new(|| hashed_path("app", "css", CSS));

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";

#[derive(Clone)]
pub struct UiState {
    pub vault: Vault,
    pub sessions: Arc<Sessions>,
    /// The Cloud API is configured: people may sign in with an identity-provider session token.
    pub cloud: bool,
}

pub fn router(vault: Vault, session_ttl: Duration, cloud: bool) -> Router {
    let state = UiState { vault, sessions: Arc::new(Sessions::new(session_ttl)), cloud };
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/users", get(users_page).post(create_user))
        .route("/ui/users/{id}/rotate", post(rotate_user))
        .route("/ui/users/{id}/offboard", post(offboard_user))
        .route("/ui/audit", get(audit_page))
        .route("/ui/audit/export", get(audit_export))
        .route("/ui/vault", get(vault::page))
        .route("/ui/storage", get(storage::storage_page).post(storage::save_storage))
        .route("/ui/api/{*path}", axum::routing::any(vault::api))
        .route(&CSS_PATH, get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route(&vault::JS_PATH, get(|| async { asset(JAVASCRIPT, vault::JS) }))
        .route(&COPY_SCRIPT, get(|| async { asset(JAVASCRIPT, COPY_JS) }))
        .route("/ui/org", get(cloud::organizations).post(cloud::onboard))
        .route("/ui/org/{org}", get(cloud::organization))
        .route("/ui/org/{org}/{*action}", post(cloud::change))
        .route("/ui/invites/{token}", get(cloud::invitation).post(cloud::accept))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The routes a person reaches before signing in (rate-limited as every anonymous route).
pub const ANONYMOUS: [&str; 2] = ["/ui", "/ui/sign-in"];

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // A stricter policy set by the handler (the sandbox of a Backend answer passed on) stays.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// The page frame: navigation, sign-out, the content.
fn page(title: &str, current: &str, session: Option<&Session>, body: Markup) -> Markup {
    frame(title, current, session, body, None)
}

/// The page frame with a script of ours (`(page name, script path)`): the only way a page gets one.
fn frame(title: &str, current: &str, session: Option<&Session>, body: Markup, script: Option<(&str, &str)>) -> Markup {
    // A session of the identity provider has the Cloud API's pages; one of an API key the others.
    let nav: &[(&str, &str)] = if session.is_some_and(Session::is_cloud) {
        &[("/ui/org", "Organizations")]
    } else {
        &[
            ("/ui/", "Overview"),
            ("/ui/vault", "Vault"),
            ("/ui/users", "Users"),
            ("/ui/storage", "Storage"),
            ("/ui/audit", "Audit"),
        ]
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · harden" }
                link rel="stylesheet" href=(CSS_PATH.as_str());
                @if let Some(session) = session { meta name="harden-csrf" content=(session.csrf); }
                @if let Some((_, src)) = script { script src=(src) defer {} }
            }
            body data-page=[script.map(|(name, _)| name)] {
                header {
                    span.brand { "harden" }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            @for (href, label) in nav.iter().copied() {
                                @if href == current { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } }
                            }
                        }
                        form.inline method="post" action="/ui/sign-out" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            span.muted { (session.user_name) " " }
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A refusal shown in place.
fn error_box(message: &str) -> Markup {
    html! { p.error role="alert" { (message) } }
}

/// The signed-in session, or the way to the sign-in page.
fn signed_in(state: &UiState, headers: &HeaderMap) -> Result<Arc<Session>, Box<Response>> {
    session::cookie(headers, session::COOKIE)
        .and_then(|id| state.sessions.get(id))
        .ok_or_else(|| Box::new(Redirect::to("/ui/sign-in").into_response()))
}

/// The session, and the form's CSRF token checked against it: 403 and nothing done otherwise.
fn checked(state: &UiState, headers: &HeaderMap, csrf: Option<&str>) -> Result<Arc<Session>, Box<Response>> {
    let session = signed_in(state, headers)?;
    if !csrf.is_some_and(|t| session::same(t, &session.csrf)) {
        let body = page(
            "Refused",
            "",
            Some(&session),
            error_box("This form is missing its security token (reload the page and try again). Nothing was changed."),
        );
        return Err(Box::new(html_response(StatusCode::FORBIDDEN, body)));
    }
    Ok(session)
}

/// A Backend call with the session's credential; the Backend's refusal as a message.
async fn call(
    state: &UiState,
    session: &Session,
    method: Method,
    segments: &[&str],
    query: Option<&str>,
    body: Option<&Value>,
) -> Result<Value, String> {
    let answer = state
        .vault
        .backend
        .call(method, segments, query, ApiCredential::key(&session.api_key), body, &[])
        .await
        .map_err(|e| e.message())?;
    json_answer(answer)
}

/// A Backend answer's JSON (null for an empty body), or its refusal as a message.
fn json_answer(answer: harden_client::backend::Answer) -> Result<Value, String> {
    let answer = answer.ok().map_err(|e| e.message())?;
    if answer.body.is_empty() {
        return Ok(Value::Null);
    }
    answer.json().map_err(|e| e.message())
}

/// A JSON field's text, empty when it is absent or not text.
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Sign-in and sign-out

#[derive(Deserialize)]
struct SignInForm {
    csrf: Option<String>,
    session_token: Option<String>,
    api_key: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

fn sign_in_form(token: &str, error: Option<&str>, cloud: bool) -> Markup {
    html! {
        @if let Some(error) = error { (error_box(error)) }
        div.grid {
            form.card method="post" action="/ui/sign-in" {
                h2 { "With an API key" }
                input type="hidden" name="csrf" value=(token);
                label for="api_key" { "API key" }
                input #api_key type="password" name="api_key" autocomplete="off" required;
                p { button type="submit" { "Sign in" } }
            }
            form.card method="post" action="/ui/sign-in" {
                h2 { "As an org admin" }
                input type="hidden" name="csrf" value=(token);
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                p { button type="submit" { "Sign in" } }
                p.muted { "Signing in this way issues you a new API key; the previous one stops working." }
            }
            @if cloud {
                form.card method="post" action="/ui/sign-in" {
                    h2 { "With your identity provider" }
                    input type="hidden" name="csrf" value=(token);
                    label for="session_token" { "Session token" }
                    input #session_token type="password" name="session_token" autocomplete="off" required;
                    p { button type="submit" { "Sign in" } }
                    p.muted { "For the organization pages (members, invites, API keys). The session ends when the token expires." }
                }
            }
        }
    }
}

async fn sign_in_page(State(state): State<UiState>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).is_ok() {
        return Redirect::to("/ui/").into_response();
    }
    let token = session::token();
    let mut response =
        html_response(StatusCode::OK, page("Sign in", "", None, sign_in_form(&token, None, state.cloud)));
    let cookie = session::set_cookie(session::SIGN_IN_COOKIE, &token, Duration::from_secs(3600));
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a header value"));
    response
}

async fn sign_in(State(state): State<UiState>, headers: HeaderMap, Form(form): Form<SignInForm>) -> Response {
    let expected = session::cookie(&headers, session::SIGN_IN_COOKIE).unwrap_or_default().to_owned();
    let retry = |status: StatusCode, message: &str| {
        let token = session::token();
        let mut response =
            html_response(status, page("Sign in", "", None, sign_in_form(&token, Some(message), state.cloud)));
        let cookie = session::set_cookie(session::SIGN_IN_COOKIE, &token, Duration::from_secs(3600));
        response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a header value"));
        response
    };
    if expected.is_empty() || !form.csrf.as_deref().is_some_and(|t| session::same(t, &expected)) {
        return retry(StatusCode::FORBIDDEN, "The sign-in form expired; please try again.");
    }
    if let Some(token) = form.session_token.filter(|t| !t.trim().is_empty()) {
        return match cloud_session(&state, token.trim()).await {
            Ok(new) => start_session(&state, new, "/ui/org"),
            Err(message) => retry(StatusCode::UNAUTHORIZED, &message),
        };
    }
    let api_key = match (form.api_key.filter(|k| !k.trim().is_empty()), form.email, form.password) {
        (Some(key), _, _) => Zeroizing::new(key.trim().to_owned()),
        (None, Some(email), Some(password)) => {
            let body = json!({ "email": email, "password": password });
            let answer = state
                .vault
                .backend
                .call(Method::POST, &["auth", "orgadmin", "login"], None, ApiCredential::key(""), Some(&body), &[])
                .await;
            match answer.and_then(|a| a.ok()).and_then(|a| a.json::<Value>()) {
                Ok(v) => Zeroizing::new(v["apiKey"].as_str().unwrap_or_default().to_owned()),
                Err(e) => return retry(StatusCode::UNAUTHORIZED, &e.message()),
            }
        }
        _ => return retry(StatusCode::BAD_REQUEST, "Give an API key, or an email and a password."),
    };
    let me = match state
        .vault
        .backend
        .call(Method::GET, &["users", "me"], None, ApiCredential::key(&api_key), None, &[])
        .await
        .and_then(|a| a.ok())
        .and_then(|a| a.json::<Value>())
    {
        Ok(me) => me,
        Err(e) => return retry(StatusCode::UNAUTHORIZED, &e.message()),
    };
    let new = NewSession {
        api_key,
        user_id: me["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default(),
        user_name: me["name"].as_str().unwrap_or_default().to_owned(),
        org_id: me["orgId"].as_str().and_then(|s| s.parse().ok()),
        is_admin: me["isAdmin"].as_bool().unwrap_or(false),
        bearer: None,
        ends_by: None,
    };
    start_session(&state, new, "/ui/")
}

/// An identity-provider session: the token must open the Cloud API (which verifies it); the
/// session ends when the token does. Its claims are read only for the expiry and a name to show.
async fn cloud_session(state: &UiState, token: &str) -> Result<NewSession, String> {
    if !state.cloud {
        return Err("This server's Cloud API is not configured: sign in with an API key.".into());
    }
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|part| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| "That is not a session token.".to_owned())?;
    let mut new = NewSession {
        api_key: Zeroizing::new(String::new()),
        bearer: Some(Zeroizing::new(token.to_owned())),
        ends_by: None,
        user_id: Uuid::nil(),
        user_name: claims["first_name"].as_str().or(claims["sub"].as_str()).unwrap_or("you").to_owned(),
        org_id: None,
        is_admin: false,
    };
    let probe = Session::probe(&new);
    cloud::cloud_call(state, &probe, Method::GET, &["cloud", "organizations"], None).await?;
    let now = chrono::Utc::now().timestamp();
    let left = claims["exp"].as_i64().map(|exp| exp - now).unwrap_or(0);
    if left <= 0 {
        return Err("The session token has expired: get a fresh one.".into());
    }
    new.ends_by = Some(std::time::Instant::now() + Duration::from_secs(left as u64));
    Ok(new)
}

/// Starts the session and sends the browser on to `to` with its cookie.
fn start_session(state: &UiState, new: NewSession, to: &str) -> Response {
    let id = state.sessions.start(new);
    let mut response = Redirect::to(to).into_response();
    let headers = response.headers_mut();
    let cookie = session::set_cookie(session::COOKIE, &id, state.sessions.ttl());
    headers.append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a header value"));
    headers.append(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie(session::SIGN_IN_COOKIE)).expect("a header value"),
    );
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn sign_out(State(state): State<UiState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Err(refused) = checked(&state, &headers, form.csrf.as_deref()) {
        return *refused;
    }
    if let Some(id) = session::cookie(&headers, session::COOKIE) {
        state.sessions.end(id);
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie(session::COOKIE)).expect("a header value"),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Overview

async fn overview(State(state): State<UiState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(to_sign_in) => return *to_sign_in,
    };
    if session.is_cloud() {
        return Redirect::to("/ui/org").into_response();
    }
    let me = call(&state, &session, Method::GET, &["users", "me"], None, None).await;
    let profile =
        me.as_ref().ok().and_then(|v| serde_json::from_value::<harden_client::wire::PublicProfile>(v.clone()).ok());
    let fingerprint = profile.map(harden_client::pins::VerifiedProfile::from).and_then(|p| p.fingerprint);
    let records = call(&state, &session, Method::GET, &["kv"], Some("limit=1000"), None).await;
    let usage = match (session.is_admin, session.org_id) {
        (true, Some(org)) => {
            Some(call(&state, &session, Method::GET, &["admin", "orgs", &org.to_string(), "usage"], None, None).await)
        }
        _ => None,
    };
    let body = html! {
        @if let Some(usage) = &usage { (usage_card(usage)) }
        @match &me {
            Err(e) => (error_box(e)),
            Ok(me) => div.grid {
                div.card {
                    h2 { "You" }
                    p { (me["name"].as_str().unwrap_or("-")) " · " (me["role"].as_str().unwrap_or("-")) }
                    p.muted { "User " code { (me["id"].as_str().unwrap_or("-")) } }
                    p.muted { "Org " code { (me["orgId"].as_str().unwrap_or("-")) } }
                }
                div.card {
                    h2 { "Your keys" }
                    @match &fingerprint {
                        Some(f) => { p { "Fingerprint" } p.mono { (f) } p.muted { "Compare it with the people you share with, out of band." } }
                        None => p.empty { "No keys yet: run " code { "harden keys generate" } " on your machine." }
                    }
                }
                div.card {
                    h2 { "Your records" }
                    @match &records {
                        Ok(r) => {
                            @let n = r["keys"].as_array().map(Vec::len).unwrap_or(0);
                            @if n == 0 { p.empty { "No records yet: store one with " code { "harden kv put NAME" } "." } }
                            @else { p { (n) @if r["nextCursor"].is_string() { "+" } " records" } }
                        }
                        Err(e) => (error_box(e)),
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page("Overview", "/ui/", Some(&session), body))
}

/// The org's plan, each limit with a meter of what is used, and the read models' lag.
fn usage_card(usage: &Result<Value, String>) -> Markup {
    let gauge = |label: &str, g: &Value, bytes: bool| {
        let (used, max) = (g["used"].as_i64().unwrap_or(0), g["max"].as_i64().unwrap_or(0));
        let show = |n: i64| if bytes { format!("{n} B") } else { n.to_string() };
        html! {
            div.gauge {
                span { (label) } " " span.muted { (show(used)) " of " (show(max)) }
                meter min="0" max=(max.max(1)) value=(used) high=(max * 9 / 10) aria-label=(label) {}
            }
        }
    };
    html! {
        div.card #usage {
            @match usage {
                Err(e) => { h2 { "Plan and usage" } (error_box(e)) }
                Ok(u) => {
                    h2 { "Plan: " (u["plan"].as_str().unwrap_or("-")) }
                    div.grid {
                        (gauge("Records", &u["records"], false))
                        (gauge("Largest record (key + value)", &u["largestRecordBytes"], true))
                        (gauge("Files", &u["files"], false))
                        (gauge("Largest file", &u["largestFileBytes"], true))
                    }
                    p.muted { "Files stored: " (u["storedFileBytes"].as_i64().unwrap_or(0)) " bytes. Read models: "
                        @let lags = u["followers"].as_array().cloned().unwrap_or_default();
                        @let worst = lags.iter().filter_map(|l| l["lagSeconds"].as_f64()).fold(0.0f64, f64::max);
                        @if worst < 1.0 { "caught up" } @else { (format!("{worst:.1} s behind at most")) }
                        " (" (lags.len()) " followers)." }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Users (org admins)

fn org_of(session: &Session) -> Result<String, String> {
    session
        .org_id
        .map(|o| o.to_string())
        .ok_or_else(|| "The global admin has no org: sign in as an org admin.".to_owned())
}

/// The users page, with `notice` (a new key shown once, or an error) above the list.
async fn render_users(state: &UiState, session: &Session, notice: Markup, status: StatusCode) -> Response {
    let listed = match org_of(session) {
        Ok(org) => call(state, session, Method::GET, &["admin", "orgs", &org, "users"], None, None).await,
        Err(e) => Err(e),
    };
    let directory = call(state, session, Method::GET, &["users", "org"], None, None).await.unwrap_or(Value::Null);
    let fingerprint_of = |id: &str| -> String {
        directory
            .as_array()
            .and_then(|users| users.iter().find(|u| u["id"] == id))
            .and_then(|u| serde_json::from_value::<harden_client::wire::PublicProfile>(u.clone()).ok())
            .map(harden_client::pins::VerifiedProfile::from)
            .and_then(|p| p.fingerprint.map(|f| if p.keys_verified { f } else { format!("{f} (unverified)") }))
            .unwrap_or_else(|| "no keys yet".into())
    };
    let body = html! {
        (notice)
        form.card method="post" action="/ui/users" {
            h2 { "Add a user" }
            input type="hidden" name="csrf" value=(session.csrf);
            div.row {
                div { label for="name" { "Name" } input #name type="text" name="name" required maxlength="100"; }
                div { label for="is_admin" { "Role" } select #is_admin name="is_admin" { option value="false" { "member" } option value="true" { "org admin" } } }
                div { button type="submit" { "Create user" } }
            }
        }
        @match &listed {
            Err(e) => (error_box(e)),
            Ok(users) => {
                @let users = users.as_array().cloned().unwrap_or_default();
                @if users.is_empty() { p.empty { "No users yet: add the first one above." } }
                @else {
                    div.scroll { table {
                        thead { tr { th { "Name" } th { "Role" } th { "State" } th { "Key fingerprint" } th { "Actions" } } }
                        tbody { @for u in &users {
                            @let id = u["id"].as_str().unwrap_or_default();
                            tr {
                                td { (u["name"].as_str().unwrap_or("-")) br; code.muted { (id) } }
                                td { (u["role"].as_str().unwrap_or("-")) }
                                td { @if u["isActive"].as_bool().unwrap_or(false) { "active" } @else { span.muted { "offboarded" } } }
                                td.mono { (fingerprint_of(id)) }
                                td { @if u["isActive"].as_bool().unwrap_or(false) {
                                    form.inline method="post" action=(format!("/ui/users/{id}/rotate")) {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        button.secondary type="submit" aria-label=(format!("Rotate the API key of {}", u["name"].as_str().unwrap_or("this user"))) { "Rotate key" }
                                    }
                                    " "
                                    form.inline method="post" action=(format!("/ui/users/{id}/offboard")) {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        button.danger type="submit" aria-label=(format!("Offboard {}", u["name"].as_str().unwrap_or("this user"))) { "Offboard" }
                                    }
                                } }
                            }
                        } }
                    } }
                }
            }
        }
    };
    html_response(status, frame("Users", "/ui/users", Some(session), body, Some(("copy", COPY_SCRIPT.as_str()))))
}

fn key_once(who: &str, key: &str) -> Markup {
    html! {
        div.once role="status" {
            p { "The API key of " strong { (who) } ", shown this once. Copy it now and give it to them over a safe channel:" }
            p { code #new-key { (key) } " " button.secondary type="button" data-copy="#new-key" { "Copy" } }
        }
    }
}

async fn users_page(State(state): State<UiState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Ok(session) => render_users(&state, &session, html! {}, StatusCode::OK).await,
        Err(to_sign_in) => *to_sign_in,
    }
}

#[derive(Deserialize)]
struct CreateUserForm {
    csrf: Option<String>,
    name: String,
    #[serde(default)]
    is_admin: Option<String>,
}

async fn create_user(State(state): State<UiState>, headers: HeaderMap, Form(form): Form<CreateUserForm>) -> Response {
    let session = match checked(&state, &headers, form.csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let org = match org_of(&session) {
        Ok(org) => org,
        Err(e) => return render_users(&state, &session, error_box(&e), StatusCode::FORBIDDEN).await,
    };
    let body = json!({ "name": form.name.trim(), "isAdmin": form.is_admin.as_deref() == Some("true") });
    match call(&state, &session, Method::POST, &["admin", "orgs", &org, "users"], None, Some(&body)).await {
        Ok(created) => {
            let notice =
                key_once(created["name"].as_str().unwrap_or_default(), created["apiKey"].as_str().unwrap_or_default());
            render_users(&state, &session, notice, StatusCode::CREATED).await
        }
        Err(e) => render_users(&state, &session, error_box(&e), StatusCode::BAD_REQUEST).await,
    }
}

async fn rotate_user(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match checked(&state, &headers, form.csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let org = org_of(&session).unwrap_or_default();
    let user = id.to_string();
    match call(&state, &session, Method::POST, &["admin", "orgs", &org, "users", &user, "apikey", "rotate"], None, None)
        .await
    {
        Ok(rotated) => {
            // The user's sessions held the old key: they end. One's own too, after showing the new key.
            state.sessions.end_user(id);
            if id == session.user_id {
                let body = html! {
                    (key_once("you", rotated["apiKey"].as_str().unwrap_or_default()))
                    p { a href="/ui/sign-in" { "Sign in again with the new key" } }
                };
                return html_response(StatusCode::OK, page("Your new key", "", None, body));
            }
            render_users(
                &state,
                &session,
                key_once(&user, rotated["apiKey"].as_str().unwrap_or_default()),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => render_users(&state, &session, error_box(&e), StatusCode::BAD_REQUEST).await,
    }
}

async fn offboard_user(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match checked(&state, &headers, form.csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let org = org_of(&session).unwrap_or_default();
    let user = id.to_string();
    match call(&state, &session, Method::DELETE, &["admin", "orgs", &org, "users", &user], None, None).await {
        Ok(_) => {
            state.sessions.end_user(id);
            render_users(
                &state,
                &session,
                html! { p.ok role="status" { "User " code { (user) } " was offboarded: their key no longer works." } },
                StatusCode::OK,
            )
            .await
        }
        Err(e) => render_users(&state, &session, error_box(&e), StatusCode::BAD_REQUEST).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Audit (org admins)

#[derive(Deserialize, Default)]
struct AuditFilter {
    key: Option<String>,
    since: Option<String>,
    scope: Option<String>,
    cursor: Option<String>,
}

fn audit_query(filter: &AuditFilter, limit: usize) -> String {
    let mut parts = vec![format!("limit={limit}")];
    for (name, value) in
        [("key", &filter.key), ("since", &filter.since), ("scope", &filter.scope), ("cursor", &filter.cursor)]
    {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{name}={}", harden_client::backend::encode_query_value(v)));
        }
    }
    parts.join("&")
}

/// Every entry of the org's chain, every scope, oldest first.
async fn whole_chain(state: &UiState, session: &Session) -> Result<Vec<Value>, String> {
    let api_key = ApiCredential::key(&session.api_key);
    harden_client::audit::entries(&state.vault.backend, api_key, &[("scope", "all")], None)
        .await
        .map_err(|e| e.message())
}

async fn audit_page(State(state): State<UiState>, headers: HeaderMap, Query(filter): Query<AuditFilter>) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(to_sign_in) => return *to_sign_in,
    };
    let listed = call(&state, &session, Method::GET, &["audit"], Some(&audit_query(&filter, 50)), None).await;
    let verdict = match (session.org_id, whole_chain(&state, &session).await) {
        (Some(org), Ok(chain)) => {
            let entries: Result<Vec<harden_domain::audit_chain::Served>, _> =
                chain.into_iter().map(serde_json::from_value).collect();
            match entries {
                Ok(entries) => match harden_domain::audit_chain::verify(org, &entries, None) {
                    Ok(()) => Ok(format!(
                        "Intact: {} entries, each hash recomputed and linked to the one before it; head {}",
                        entries.len(),
                        entries.last().map(|e| e.hash.as_str()).unwrap_or("-")
                    )),
                    Err(broken) => Err(format!("BROKEN at entry {}: {}", broken.seq, broken.reason)),
                },
                Err(e) => Err(format!("the server answered entries of an unexpected shape: {e}")),
            }
        }
        (None, _) => Err("the global admin has no org audit".into()),
        (_, Err(e)) => Err(e),
    };
    let next = listed.as_ref().ok().and_then(|l| l["nextCursor"].as_str().map(str::to_owned));
    let body = html! {
        div.card {
            h2 { "Chain" }
            @match &verdict { Ok(text) => p.ok role="status" { (text) }, Err(text) => p.error role="alert" { (text) } }
            p { a href="/ui/audit/export" download="audit.jsonl" { "Export the whole chain as JSON Lines" } }
        }
        form.card method="get" action="/ui/audit" {
            h2 { "Filter" }
            div.row {
                div { label for="key" { "Record name" } input #key type="text" name="key" value=(filter.key.clone().unwrap_or_default()); }
                div { label for="since" { "Since (RFC 3339)" } input #since type="text" name="since" placeholder="2026-12-01T00:00:00Z" value=(filter.since.clone().unwrap_or_default()); }
                div { label for="scope" { "Scope" } select #scope name="scope" {
                    option value="kv" selected[filter.scope.as_deref() != Some("all")] { "records" }
                    option value="all" selected[filter.scope.as_deref() == Some("all")] { "everything" }
                } }
                div { button type="submit" { "Show" } }
            }
        }
        @match &listed {
            Err(e) => (error_box(e)),
            Ok(listed) => {
                @let entries = listed["entries"].as_array().cloned().unwrap_or_default();
                @if entries.is_empty() { p.empty { "No audit entries match: entries appear as records are written, shared and deleted." } }
                @else {
                    div.scroll { table {
                        thead { tr { th { "#" } th { "Time" } th { "Action" } th { "Record" } th { "Version" } th { "By" } } }
                        tbody { @for e in &entries { tr {
                            td { (e["seq"]) } td { (e["timestampUtc"].as_str().unwrap_or("-")) } td { (e["action"].as_str().unwrap_or("-")) }
                            td { (e["key"].as_str().unwrap_or("-")) } td { (e["version"].as_i64().map(|v| v.to_string()).unwrap_or("-".into())) }
                            td.mono { (e["userId"].as_str().unwrap_or("-")) }
                        } } }
                    } }
                    @if let Some(next) = &next {
                        @let more = AuditFilter { cursor: Some(next.clone()), key: filter.key.clone(), since: filter.since.clone(), scope: filter.scope.clone() };
                        p { a href=(format!("/ui/audit?{}", audit_query(&more, 50).split_once('&').map(|(_, q)| q).unwrap_or(""))) { "Next page" } }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page("Audit", "/ui/audit", Some(&session), body))
}

async fn audit_export(State(state): State<UiState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(to_sign_in) => return *to_sign_in,
    };
    match whole_chain(&state, &session).await {
        Ok(entries) => {
            let mut lines = String::new();
            for entry in entries {
                lines.push_str(&entry.to_string());
                lines.push('\n');
            }
            (
                [
                    (header::CONTENT_TYPE, "application/x-ndjson"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"audit.jsonl\""),
                ],
                lines,
            )
                .into_response()
        }
        Err(e) => html_response(StatusCode::BAD_GATEWAY, page("Audit", "/ui/audit", Some(&session), error_box(&e))),
    }
}
