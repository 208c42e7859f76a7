//! The Cloud API's pages, for people signed in with an identity-provider session token (when the
//! instance has the Cloud API configured): their organizations (or onboarding a first one), and for
//! one organization its members and roles, invites (create, copy the link, revoke) and API keys
//! (the created secret shown once). Every page calls the Cloud API with the session's token, as the
//! spec's TypeScript would from the browser; the Cloud API decides every permission.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    checked, error_box, frame, html_response, json_answer, signed_in, text as s, Session, UiState, COPY_SCRIPT,
};

/// A Cloud API call with the session's identity-provider token; its refusal as a message.
pub async fn cloud_call(
    state: &UiState,
    session: &Session,
    method: Method,
    segments: &[&str],
    body: Option<&Value>,
) -> Result<Value, String> {
    let Some(token) = &session.bearer else {
        return Err("These pages are for people signed in through the identity provider.".into());
    };
    let mut headers = HeaderMap::new();
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
        .map_err(|_| "the session token is unusable: sign in again".to_owned())?;
    bearer.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, bearer);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let url = state.vault.backend.url(segments, None);
    let body = body.map(|b| bytes::Bytes::from(serde_json::to_vec(b).expect("JSON")));
    let answer = state.vault.backend.send(method, url, headers, body).await.map_err(|e| e.message())?;
    json_answer(answer)
}

fn cloud_page(title: &str, session: &Session, body: Markup, status: StatusCode) -> Response {
    html_response(status, frame(title, "/ui/org", Some(session), body, Some(("copy", COPY_SCRIPT.as_str()))))
}

fn shown_once(what: &str, id: &str, value: &str) -> Markup {
    html! {
        div.once role="status" {
            p { (what) }
            p { code id=(id) { (value) } " " button.secondary type="button" data-copy=(format!("#{id}")) { "Copy" } }
        }
    }
}

/// `/ui/org`: the caller's organizations, or the form that creates their first.
pub async fn organizations(State(state): State<UiState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(to_sign_in) => return *to_sign_in,
    };
    let listed = cloud_call(&state, &session, Method::GET, &["cloud", "organizations"], None).await;
    let body = html! {
        @match &listed {
            Err(e) => (error_box(e)),
            Ok(list) => {
                @let orgs = list["organizations"].as_array().cloned().unwrap_or_default();
                @if orgs.is_empty() { p.empty { "You are in no organization yet: create yours below, or open an invitation link someone sent you." } }
                @else {
                    div.grid { @for org in &orgs {
                        a.card href=(format!("/ui/org/{}", s(&org["id"]))) { h2 { (s(&org["name"])) } p.muted { (s(&org["slug"])) } }
                    } }
                }
            }
        }
        form.card method="post" action="/ui/org" {
            h2 { "Create an organization" }
            input type="hidden" name="csrf" value=(session.csrf);
            label for="org_name" { "Name" }
            input #org_name type="text" name="org_name" required maxlength="100";
            label for="billing_email" { "Billing email (optional)" }
            input #billing_email type="email" name="billing_email";
            p { button type="submit" { "Create" } }
        }
    };
    cloud_page("Organizations", &session, body, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct OnboardingForm {
    csrf: Option<String>,
    org_name: Option<String>,
    billing_email: Option<String>,
}

pub async fn onboard(State(state): State<UiState>, headers: HeaderMap, Form(form): Form<OnboardingForm>) -> Response {
    let session = match checked(&state, &headers, form.csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let mut body = json!({ "org_name": form.org_name.unwrap_or_default().trim() });
    if let Some(email) = form.billing_email.filter(|e| !e.trim().is_empty()) {
        body["billing_email"] = json!(email.trim());
    }
    match cloud_call(&state, &session, Method::POST, &["cloud", "onboarding"], Some(&body)).await {
        Ok(created) => {
            let id = s(&created["org_id"]);
            Redirect::to(&format!("/ui/org/{id}")).into_response()
        }
        Err(e) => cloud_page("Organizations", &session, error_box(&e), StatusCode::BAD_REQUEST),
    }
}

const ROLES: [&str; 3] = ["admin", "developer", "viewer"];

/// One organization: members, invites and API keys, with `notice` (a secret shown once, an error) on top.
async fn render_org(state: &UiState, session: &Session, org: Uuid, notice: Markup, status: StatusCode) -> Response {
    let id = org.to_string();
    let paths = [
        ["cloud", "organizations", &id, ""],
        ["cloud", "organizations", &id, "members"],
        ["cloud", "organizations", &id, "invites"],
        ["cloud", "organizations", &id, "api-keys"],
    ];
    let segments = |i: usize| if i == 0 { &paths[0][..3] } else { &paths[i][..] };
    let (info, members, invites, keys) = tokio::join!(
        cloud_call(state, session, Method::GET, segments(0), None),
        cloud_call(state, session, Method::GET, segments(1), None),
        cloud_call(state, session, Method::GET, segments(2), None),
        cloud_call(state, session, Method::GET, segments(3), None),
    );
    let title = info.as_ref().ok().map(|o| s(&o["name"]).to_owned()).unwrap_or_else(|| "Organization".into());
    let csrf = session.csrf.as_str();
    let body = html! {
        (notice)
        @if let Err(e) = &info { (error_box(e)) }
        h2 #members { "Members" }
        @match &members {
            Err(e) => (error_box(e)),
            Ok(m) => {
                @let list = m["members"].as_array().cloned().unwrap_or_default();
                div.scroll { table {
                    thead { tr { th { "Member" } th { "Role" } th { "Joined" } th { "" } } }
                    tbody { @for (i, member) in list.iter().enumerate() {
                        @let clerk = s(&member["clerk_user_id"]);
                        @let name = format!("{} {}", s(&member["first_name"]), s(&member["last_name"]));
                        tr {
                            td { (name.trim()) br; span.muted { (member["email"].as_str().unwrap_or(clerk)) } }
                            td { @if member["role"] == "owner" { "owner" } @else {
                                form.inline method="post" action=(format!("/ui/org/{id}/members/{clerk}/role")) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    label.sr for=(format!("role-{i}")) { "Role of " (name.trim()) }
                                    select id=(format!("role-{i}")) name="role" {
                                        @for role in ROLES { option value=(role) selected[member["role"] == role] { (role) } }
                                    }
                                    " " button.secondary type="submit" { "Change" }
                                }
                            } }
                            td.muted { (s(&member["joined_at"])) }
                            td { @if member["role"] != "owner" {
                                form.inline method="post" action=(format!("/ui/org/{id}/members/{clerk}/remove")) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.danger type="submit" aria-label=(format!("Remove {}", name.trim())) { "Remove" }
                                }
                            } }
                        }
                    } }
                } }
            }
        }

        h2 #invites { "Invites" }
        form.card method="post" action=(format!("/ui/org/{id}/invites")) {
            input type="hidden" name="csrf" value=(csrf);
            div.row {
                div { label for="invite-email" { "Email" } input #invite-email type="email" name="email" required; }
                div { label for="invite-role" { "Role" } select #invite-role name="role" { @for role in ROLES { option value=(role) selected[role == "developer"] { (role) } } } }
                div { button type="submit" { "Invite" } }
            }
            p.muted { "The link works only for the person whose verified email it names, for 7 days." }
        }
        @match &invites {
            Err(e) => (error_box(e)),
            Ok(inv) => {
                @let list = inv["invites"].as_array().cloned().unwrap_or_default();
                @if list.is_empty() { p.empty { "No invites yet: invite someone by email above." } }
                @else {
                    div.scroll { table #invite-list {
                        thead { tr { th { "Email" } th { "Role" } th { "State" } th { "Link" } } }
                        tbody { @for (i, invite) in list.iter().enumerate() {
                            @let token = s(&invite["token"]);
                            @let state_text = if invite["accepted_at"].is_string() { "accepted" } else if invite["revoked_at"].is_string() { "revoked" } else { "pending" };
                            tr {
                                td { (s(&invite["email"])) }
                                td { (s(&invite["role"])) }
                                td { (state_text) br; span.muted { "until " (s(&invite["expires_at"])) } }
                                td { @if state_text == "pending" {
                                    code id=(format!("invite-{i}")) data-link=(format!("/ui/invites/{token}")) { "/ui/invites/" (token) }
                                    " " button.secondary type="button" data-copy=(format!("#invite-{i}")) { "Copy link" }
                                    " "
                                    form.inline method="post" action=(format!("/ui/org/{id}/invites/{token}/revoke")) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.danger type="submit" aria-label=(format!("Revoke the invite of {}", s(&invite["email"]))) { "Revoke" }
                                    }
                                } }
                            }
                        } }
                    } }
                }
            }
        }

        h2 #api-keys { "API keys" }
        form.card method="post" action=(format!("/ui/org/{id}/api-keys")) {
            input type="hidden" name="csrf" value=(csrf);
            div.row {
                div { label for="key-name" { "Name" } input #key-name type="text" name="name" maxlength="100" placeholder="Production"; }
                div { button type="submit" { "Create key" } }
            }
            p.muted { "A key is an org-admin credential for the Backend and the Proxy. Its secret is shown once." }
        }
        @match &keys {
            Err(e) => (error_box(e)),
            Ok(k) => {
                @let list = k["api_keys"].as_array().cloned().unwrap_or_default();
                @if list.is_empty() { p.empty { "No API keys yet: create one for a service above." } }
                @else {
                    div.scroll { table #key-list {
                        thead { tr { th { "Name" } th { "Key" } th { "Last used" } th { "" } } }
                        tbody { @for key in &list {
                            tr {
                                td { (s(&key["name"])) }
                                td.mono { (s(&key["key"])) }
                                td.muted { (key["last_used_at"].as_str().unwrap_or("never")) }
                                td { form.inline method="post" action=(format!("/ui/org/{id}/api-keys/{}/revoke", s(&key["id"]))) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.danger type="submit" aria-label=(format!("Revoke the key {}", s(&key["name"]))) { "Revoke" }
                                } }
                            }
                        } }
                    } }
                }
            }
        }
    };
    cloud_page(&title, session, body, status)
}

pub async fn organization(State(state): State<UiState>, headers: HeaderMap, Path(org): Path<String>) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(to_sign_in) => return *to_sign_in,
    };
    match org.parse() {
        Ok(org) => render_org(&state, &session, org, html! {}, StatusCode::OK).await,
        Err(_) => cloud_page("Organization", &session, error_box("No such organization."), StatusCode::NOT_FOUND),
    }
}

#[derive(Deserialize)]
pub struct OrgForm {
    csrf: Option<String>,
    role: Option<String>,
    email: Option<String>,
    name: Option<String>,
}

/// A change to one organization: `action` is `members/{id}/role`, `members/{id}/remove`,
/// `invites`, `invites/{token}/revoke`, `api-keys` or `api-keys/{id}/revoke`.
pub async fn change(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path((org, action)): Path<(String, String)>,
    Form(form): Form<OrgForm>,
) -> Response {
    let session = match checked(&state, &headers, form.csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let Ok(org) = org.parse::<Uuid>() else {
        return cloud_page("Organization", &session, error_box("No such organization."), StatusCode::NOT_FOUND);
    };
    let id = org.to_string();
    let parts: Vec<&str> = action.split('/').collect();
    let request: Option<(Method, Vec<&str>, Option<Value>)> = match parts.as_slice() {
        ["members", member, "role"] => Some((
            Method::PATCH,
            vec!["members", member],
            Some(json!({ "role": form.role.clone().unwrap_or_default() })),
        )),
        ["members", member, "remove"] => Some((Method::DELETE, vec!["members", member], None)),
        ["invites"] => {
            let mut body = json!({ "email": form.email.as_deref().unwrap_or_default().trim() });
            if let Some(role) = form.role.as_deref().filter(|r| !r.is_empty()) {
                body["role"] = json!(role);
            }
            Some((Method::POST, vec!["invites"], Some(body)))
        }
        ["invites", token, "revoke"] => Some((Method::DELETE, vec!["invites", token], None)),
        ["api-keys"] => {
            let name = form.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
            Some((Method::POST, vec!["api-keys"], Some(json!({ "name": name }))))
        }
        ["api-keys", key, "revoke"] => Some((Method::DELETE, vec!["api-keys", key], None)),
        _ => None,
    };
    let answer = match request {
        Some((method, tail, body)) => {
            let segments: Vec<&str> = ["cloud", "organizations", id.as_str()].into_iter().chain(tail).collect();
            cloud_call(&state, &session, method, &segments, body.as_ref()).await
        }
        None => Err("No such action.".into()),
    };
    let notice = match (&answer, parts.as_slice()) {
        (Err(e), _) => error_box(e),
        (Ok(created), ["api-keys"]) => html! {
            (shown_once("The new key's secret, shown this once: send it as X-Api-Key to the Backend or the Proxy (or the pair: key as X-API-Key, secret as X-API-Secret).", "new-secret", s(&created["secret"])))
            p.muted { "Key " code { (s(&created["key"])) } }
        },
        (Ok(invite), ["invites"]) => {
            let link = format!("/ui/invites/{}", s(&invite["token"]));
            html! { div.once role="status" {
                p { "Invited " strong { (s(&invite["email"])) } ". Send them this link:" }
                p { code #new-invite data-link=(link) { (link) } " " button.secondary type="button" data-copy="#new-invite" { "Copy link" } }
            } }
        }
        (Ok(_), _) => html! { p.ok role="status" { "Done." } },
    };
    let status = if answer.is_ok() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    render_org(&state, &session, org, notice, status).await
}

/// `/ui/invites/{token}`: the invitation a member sent, to accept while signed in with the
/// identity provider.
pub async fn invitation(State(state): State<UiState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(to_sign_in) => return *to_sign_in,
    };
    let body = html! {
        form.card method="post" action=(format!("/ui/invites/{token}")) {
            input type="hidden" name="csrf" value=(session.csrf);
            p { "You were invited to join an organization. Accepting needs your verified email to be the one the invitation names." }
            p { button type="submit" { "Accept the invitation" } }
        }
    };
    cloud_page("Invitation", &session, body, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: Option<String>,
}

pub async fn accept(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let session = match checked(&state, &headers, form.csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    match cloud_call(&state, &session, Method::POST, &["cloud", "invites", &token, "accept"], Some(&json!({}))).await {
        Ok(joined) => {
            let org = s(&joined["org_id"]);
            Redirect::to(&format!("/ui/org/{org}")).into_response()
        }
        Err(e) => cloud_page("Invitation", &session, error_box(&e), StatusCode::BAD_REQUEST),
    }
}
