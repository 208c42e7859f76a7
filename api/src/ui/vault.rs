//! The vault page (`/ui/vault`): the caller's secrets and files, what others shared with them, and
//! the forms to write, upload and share. The server renders what it may see (record names,
//! versions, sizes, sealed names as ciphertext); the page's script (`web/`, built into
//! `vault.js`) asks for the user secret once for the page's life, unlocks the keys in the browser
//! and does every decryption and encryption there. It reaches the Backend's routes through
//! `/ui/api/…`, which adds the session's credential: a short allowlist of the caller's own routes,
//! each change carrying the session's CSRF token in `X-CSRF-Token`.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use reqwest::Method;
use serde_json::{json, Value};

use super::{call, error_box, frame, html_response, session, signed_in, text as s, UiState};

/// The page's script, built from `web/` by `scripts/build-ui` (reproducible; checked by scripts/test).
pub const JS: &str = include_str!("vault.js");

/// `/ui/assets/vault-<first 16 hex digits of its SHA-256>.js`.
pub static JS_PATH: LazyLock<String> = LazyLock::new(|| super::hashed_path("vault", "js", JS));

const CSRF_HEADER: &str = "x-csrf-token";

/// Whether the page may reach `path` with `method` through the session: the caller's own profile,
/// pins and bundle, the org's directory, and the caller's records and files. Nothing else (no key
/// rotation, no admin route, no recovery).
fn allowed(method: &HttpMethod, path: &str) -> bool {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    match *method {
        HttpMethod::GET => path == "/users/me" || under("/users/org") || under("/kv") || under("/files"),
        HttpMethod::PUT => matches!(path, "/users/me/pins" | "/users/me/bundle") || under("/kv"),
        HttpMethod::POST | HttpMethod::DELETE => under("/kv") || under("/files"),
        _ => false,
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// `/ui/api/{path}`: the Backend's route `path` with the session's API key, streamed both ways.
pub async fn api(State(state): State<UiState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(session) = signed_in(&state, &parts.headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "your session ended: sign in again");
    };
    if parts.method != HttpMethod::GET {
        let token = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !token.is_some_and(|t| session::same(t, &session.csrf)) {
            return refuse(StatusCode::FORBIDDEN, "this request is missing its security token: nothing was changed");
        }
    }
    let path = parts.uri.path().strip_prefix("/ui/api").unwrap_or_default();
    if !allowed(&parts.method, path) {
        return refuse(StatusCode::NOT_FOUND, "the dashboard does not reach this route");
    }
    let Some(url) = crate::proxy::forward::backend_url(state.vault.backend.url(&[], None), path, parts.uri.query())
    else {
        return refuse(StatusCode::BAD_REQUEST, "invalid path");
    };
    let mut headers = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ACCEPT] {
        if let Some(value) = parts.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    match HeaderValue::from_str(&session.api_key) {
        Ok(key) => headers.insert(HeaderName::from_static("x-api-key"), key),
        Err(_) => return refuse(StatusCode::UNAUTHORIZED, "your session's key is unusable: sign in again"),
    };
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let answer = match state.vault.backend.send_streaming(parts.method.clone(), url, headers, body).await {
        Ok(answer) => answer,
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let mut response = Response::builder().status(answer.status());
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
        if let Some(value) = answer.headers().get(&name) {
            response = response.header(name, value);
        }
    }
    let mut response = response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "the Backend's answer could not be passed on"));
    crate::proxy::forward::inert(response.headers_mut());
    response
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The cells every revealable row has: where the plaintext goes, a note, an error, a hide button.
fn reveal_slots() -> Markup {
    html! {
        code.plaintext data-plaintext hidden {}
        p.muted data-note hidden {}
        p.error data-error hidden {}
        button.secondary type="button" data-hide hidden { "Hide" }
    }
}

/// A share form: to a user of the org (a select of the directory), optionally until a date, with
/// the fingerprint the owner compared out of band (needed when the recipient's keys changed).
fn share_form(target: Markup, users: &[(String, String)], alias: bool, id: &str) -> Markup {
    html! {
        form.share data-share-form { fieldset disabled data-needs-script {
            (target)
            input type="hidden" name="permission" value="read";
            div.row {
                div {
                    label for=(format!("to-{id}")) { "Share with" }
                    select id=(format!("to-{id}")) name="recipient" required {
                        @for (uid, name) in users { option value=(uid) { (name) } }
                    }
                }
                @if alias {
                    div { label for=(format!("alias-{id}")) { "Name they see" } input id=(format!("alias-{id}")) type="text" name="alias" maxlength="256"; }
                } @else { input type="hidden" name="alias" value=""; }
                div { label for=(format!("until-{id}")) { "Until (optional)" } input id=(format!("until-{id}")) type="datetime-local" name="expires"; }
                div { label for=(format!("fp-{id}")) { "Their fingerprint (if their keys changed)" } input id=(format!("fp-{id}")) type="text" name="fingerprint" autocomplete="off"; }
                div { button type="submit" { "Share" } }
            }
            p data-result hidden {}
        } }
    }
}

pub async fn page(State(state): State<UiState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(to_sign_in) => return *to_sign_in,
    };
    let (records, inbox, files, shared_files, directory) = tokio::join!(
        call(&state, &session, Method::GET, &["kv"], Some("limit=200"), None),
        call(&state, &session, Method::GET, &["kv", "shared"], None, None),
        call(&state, &session, Method::GET, &["files"], Some("limit=200"), None),
        call(&state, &session, Method::GET, &["files", "shared"], None, None),
        call(&state, &session, Method::GET, &["users", "org"], None, None),
    );
    let me = session.user_id.to_string();
    let users: Vec<(String, String)> = directory
        .as_ref()
        .ok()
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter(|u| s(&u["id"]) != me && u["publicKeyEccB64"].is_string())
                .map(|u| (s(&u["id"]).to_owned(), s(&u["name"]).to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let names_of = |id: &str| -> String {
        directory
            .as_ref()
            .ok()
            .and_then(Value::as_array)
            .and_then(|all| all.iter().find(|u| s(&u["id"]) == id))
            .map(|u| s(&u["name"]).to_owned())
            .unwrap_or_else(|| id.to_owned())
    };
    let body = html! {
        noscript { p.error { "The vault decrypts in this page with JavaScript, which is off: nothing here can be revealed or written without it." } }
        form.card #unlock { fieldset disabled data-needs-script {
            h2 { "Unlock" }
            p.muted { "Revealing, writing and sharing happen in this page: your user secret and your values never leave the browser. The secret is asked once while this page is open; the unlocked keys stay in its memory only and are forgotten when you lock, leave or reload it." }
            label for="user-secret" { "Your user secret" }
            input #user-secret type="password" name="secret" autocomplete="off" required;
            p { button type="submit" { "Unlock" } " " span.muted #unlock-status role="status" {} }
            progress #unlock-progress max="1" value="0" hidden aria-label="Unlocking" {}
            p.error #unlock-error hidden {}
        } }
        div.card.row #locked-bar hidden {
            span.ok { "Unlocked in this page." }
            button.secondary #lock type="button" { "Lock" }
        }

        h2 #secrets { "Secrets" }
        form.card #put-secret { fieldset disabled data-needs-script {
            div.row {
                div { label for="secret-name" { "Name" } input #secret-name type="text" name="name" required maxlength="256" autocomplete="off"; }
                div { label for="secret-value" { "Value" } input #secret-value type="password" name="value" required autocomplete="off"; }
                div { button type="submit" { "Store" } }
            }
            p data-result hidden {}
        } }
        @match &records {
            Err(e) => (error_box(e)),
            Ok(r) => {
                @let keys = r["keys"].as_array().cloned().unwrap_or_default();
                @if keys.is_empty() { p.empty { "No secrets yet: store one above, or with " code { "harden kv put NAME" } "." } }
                @else {
                    div.scroll { table #records {
                        thead { tr { th { "Name" } th { "Version" } th { "Updated" } th { "Value" } } }
                        tbody { @for (i, k) in keys.iter().enumerate() {
                            @let name = s(&k["key"]);
                            tr data-row {
                                td { code { (name) } }
                                td { (k["version"]) }
                                td.muted { (s(&k["updatedUtc"])) }
                                td {
                                    button type="button" data-reveal=(name) aria-label=(format!("Reveal {name}")) { "Reveal" }
                                    (reveal_slots())
                                    details data-details=(name) {
                                        summary { "History and sharing" }
                                        p.error data-error hidden {}
                                        h3 { "Versions" } ul data-versions {}
                                        h3 { "Open shares" } ul data-shares {}
                                        @if users.is_empty() { p.empty { "Nobody else in your org has keys yet to share with." } }
                                        @else { (share_form(html! { input type="hidden" name="name" value=(name); }, &users, true, &format!("kv{i}"))) }
                                    }
                                }
                            }
                        } }
                    } }
                    @if r["nextCursor"].is_string() { p.muted { "The first 200 are shown; the CLI lists all (" code { "harden kv ls" } ")." } }
                }
            }
        }

        h2 #inbox { "Shared with you" }
        @match &inbox {
            Err(e) => (error_box(e)),
            Ok(items) => {
                @let items = items.as_array().cloned().unwrap_or_default();
                @if items.is_empty() { p.empty { "Nothing is shared with you yet. When someone shares a secret with you, it appears here." } }
                @else {
                    div.scroll { table #shared-secrets {
                        thead { tr { th { "Name" } th { "From" } th { "Version" } th { "Until" } th { "Value" } } }
                        tbody { @for it in &items {
                            tr data-row {
                                td data-sealed-name data-alias=(s(&it["encryptedAliasB64"])) data-alias-key=(s(&it["key"])) data-owner=(s(&it["ownerUserId"])) { "locked" }
                                td { (names_of(s(&it["ownerUserId"]))) }
                                td { (it["version"]) }
                                td.muted { (it["expiresUtc"].as_str().unwrap_or("no end")) }
                                td { button type="button" data-share=(s(&it["shareId"])) { "Reveal" } (reveal_slots()) }
                            }
                        } }
                    } }
                }
            }
        }

        h2 #files { "Files" }
        form.card #upload { fieldset disabled data-needs-script {
            div.row {
                div { label for="file" { "File" } input #file type="file" name="file" required; }
                div { label for="filename" { "Name (optional)" } input #filename type="text" name="filename" maxlength="1024"; }
                div { button type="submit" { "Encrypt and upload" } }
            }
            progress max="1" value="0" hidden aria-label="Upload progress" {}
            p data-result hidden {}
        } }
        @match &files {
            Err(e) => (error_box(e)),
            Ok(f) => {
                @let list = f["files"].as_array().cloned().unwrap_or_default();
                @if list.is_empty() { p.empty { "No files yet: upload one above, or with " code { "harden files put PATH" } "." } }
                @else {
                    div.scroll { table #file-list {
                        thead { tr { th { "Name" } th { "Size" } th { "Uploaded" } th { "" } } }
                        tbody { @for (i, file) in list.iter().enumerate() {
                            @let id = s(&file["id"]);
                            tr data-row {
                                td data-sealed-name data-encrypted-file-name-b64=(s(&file["encryptedFileNameB64"]))
                                    data-encrypted-aes-key-ecc-b64=(s(&file["encryptedAesKeyEccB64"]))
                                    data-encrypted-aes-key-kyber-b64=(s(&file["encryptedAesKeyKyberB64"])) { "locked" }
                                td { (size(file["sizeBytes"].as_u64().unwrap_or(0))) }
                                td.muted { (s(&file["createdUtc"])) }
                                td {
                                    button type="button" data-download=(id) { "Download" }
                                    p.ok data-done hidden {} p.error data-error hidden {}
                                    details {
                                        summary { "Share" }
                                        @if users.is_empty() { p.empty { "Nobody else in your org has keys yet to share with." } }
                                        @else { (share_form(html! { input type="hidden" name="file" value=(id); }, &users, false, &format!("f{i}"))) }
                                    }
                                }
                            }
                        } }
                    } }
                }
            }
        }

        h2 #shared-files { "Files shared with you" }
        @match &shared_files {
            Err(e) => (error_box(e)),
            Ok(items) => {
                @let items = items.as_array().cloned().unwrap_or_default();
                @if items.is_empty() { p.empty { "No files are shared with you yet." } }
                @else {
                    div.scroll { table #shared-file-list {
                        thead { tr { th { "Name" } th { "From" } th { "Size" } th { "" } } }
                        tbody { @for it in &items {
                            tr data-row {
                                td data-sealed-name data-alias=(s(&it["encryptedAliasB64"])) data-alias-key=(s(&it["fileId"])) data-owner=(s(&it["ownerUserId"])) { "locked" }
                                td { (names_of(s(&it["ownerUserId"]))) }
                                td { (size(it["sizeBytes"].as_u64().unwrap_or(0))) }
                                td { button type="button" data-shared-file=(s(&it["shareId"])) { "Download" } p.ok data-done hidden {} p.error data-error hidden {} }
                            }
                        } }
                    } }
                }
            }
        }
    };
    html_response(StatusCode::OK, frame("Vault", "/ui/vault", Some(&session), body, Some(("vault", JS_PATH.as_str()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_reaches_only_the_callers_own_routes() {
        for (method, path) in [
            (HttpMethod::GET, "/users/me"),
            (HttpMethod::GET, "/users/org/0b1e"),
            (HttpMethod::PUT, "/users/me/pins"),
            (HttpMethod::PUT, "/kv/db-url"),
            (HttpMethod::POST, "/files"),
            (HttpMethod::DELETE, "/kv/a/shares/b"),
        ] {
            assert!(allowed(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (HttpMethod::POST, "/users/me/apikey/rotate"),
            (HttpMethod::PUT, "/users/me/keys"),
            (HttpMethod::GET, "/admin/orgs"),
            (HttpMethod::GET, "/audit"),
            (HttpMethod::GET, "/kvx"),
            (HttpMethod::POST, "/users/me/recovery/complete"),
            (HttpMethod::PATCH, "/kv/a"),
        ] {
            assert!(!allowed(&method, path), "{method} {path}");
        }
    }
}
