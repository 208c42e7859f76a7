//! The Storage page (`/ui/storage`, org admins): the org's S3-compatible bucket for files. Saving
//! runs the Backend's live check (the host resolves to an allowed address, the bucket answers to
//! the credentials) and shows its refusal in place, with what was typed kept (but the secret key).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{call, checked, error_box, html_response, org_of, page, signed_in, Session, UiState};

#[derive(Deserialize, Default)]
pub struct StorageForm {
    csrf: Option<String>,
    service_url: Option<String>,
    bucket: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    region: Option<String>,
    force_path_style: Option<String>,
}

fn field(v: &Value, name: &str) -> String {
    v[name].as_str().unwrap_or_default().to_owned()
}

fn render(session: &Session, current: &Value, notice: Markup, status: StatusCode) -> Response {
    let configured = current.get("bucket").is_some();
    let path_style = current["forcePathStyle"].as_bool().unwrap_or(true);
    let body = html! {
        (notice)
        @if !configured { p.empty { "No storage yet: files cannot be uploaded until the org has a bucket. Fill in the form below." } }
        form.card method="post" action="/ui/storage" {
            h2 { @if configured { "Your org's bucket" } @else { "Set up a bucket" } }
            input type="hidden" name="csrf" value=(session.csrf);
            label for="service_url" { "Service URL" }
            input #service_url type="text" name="service_url" value=(field(current, "serviceUrl")) placeholder="https://s3.example.com" required;
            label for="bucket" { "Bucket" }
            input #bucket type="text" name="bucket" value=(field(current, "bucket")) required;
            label for="access_key" { "Access key" }
            input #access_key type="text" name="access_key" value=(field(current, "accessKey")) autocomplete="off" required;
            label for="secret_key" { "Secret key" }
            input #secret_key type="password" name="secret_key" autocomplete="off" required[!current["hasSecretKey"].as_bool().unwrap_or(false)]
                placeholder=(if current["hasSecretKey"].as_bool().unwrap_or(false) { "kept as it is when left empty" } else { "" });
            label for="region" { "Region" }
            input #region type="text" name="region" value=(current["region"].as_str().unwrap_or("us-east-1"));
            label for="force_path_style" { "Addressing" }
            select #force_path_style name="force_path_style" {
                option value="true" selected[path_style] { "path style (host/bucket)" }
                option value="false" selected[!path_style] { "virtual host (bucket.host)" }
            }
            p { button type="submit" { "Check and save" } }
            p.muted { "harden checks the bucket before it saves: the host must not be on a private network (unless the operator allowed it), and the bucket must answer to these credentials. The secret key is stored sealed under the server's master key and never shown again." }
        }
    };
    html_response(status, page("Storage", "/ui/storage", Some(session), body))
}

pub async fn storage_page(State(state): State<UiState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(to_sign_in) => return *to_sign_in,
    };
    let org = match org_of(&session) {
        Ok(org) => org,
        Err(e) => return render(&session, &Value::Null, error_box(&e), StatusCode::FORBIDDEN),
    };
    match call(&state, &session, Method::GET, &["admin", "orgs", &org, "storage"], None, None).await {
        Ok(current) => render(&session, &current, html! {}, StatusCode::OK),
        Err(e) if e.contains("not configured") || e.contains("no storage") => {
            render(&session, &Value::Null, html! {}, StatusCode::OK)
        }
        Err(e) => render(&session, &Value::Null, error_box(&e), StatusCode::OK),
    }
}

pub async fn save_storage(State(state): State<UiState>, headers: HeaderMap, Form(form): Form<StorageForm>) -> Response {
    let session = match checked(&state, &headers, form.csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let typed = json!({
        "serviceUrl": form.service_url.as_deref().unwrap_or_default().trim(),
        "bucket": form.bucket.as_deref().unwrap_or_default().trim(),
        "accessKey": form.access_key.as_deref().unwrap_or_default().trim(),
        "region": form.region.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or("us-east-1"),
        "forcePathStyle": form.force_path_style.as_deref() != Some("false"),
    });
    let org = match org_of(&session) {
        Ok(org) => org,
        Err(e) => return render(&session, &typed, error_box(&e), StatusCode::FORBIDDEN),
    };
    let mut body = typed.clone();
    if let Some(secret) = form.secret_key.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        body["secretKey"] = json!(secret);
    }
    match call(&state, &session, Method::PUT, &["admin", "orgs", &org, "storage"], None, Some(&body)).await {
        Ok(saved) => render(
            &session,
            &saved,
            html! { p.ok role="status" { "Saved: the bucket answered, and files can be uploaded now." } },
            StatusCode::OK,
        ),
        Err(e) => {
            let mut kept = typed;
            kept["hasSecretKey"] = json!(false);
            render(&session, &kept, error_box(&format!("Not saved: {e}")), StatusCode::BAD_REQUEST)
        }
    }
}
