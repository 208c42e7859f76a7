//! The outside services harden talks to during onboarding, on loopback, speaking their wire format:
//! a real (small) SMTP server that keeps what it receives, and a Stripe stand-in that answers the
//! Stripe endpoints harden calls with Stripe's form-encoded requests, JSON objects, error objects
//! and idempotency-key replays. harden's production clients are pointed at them by settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------------
// SMTP

#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    /// The message as received (headers and body), dot-unstuffed.
    pub data: String,
}

impl Mail {
    /// The text body, decoded from quoted-printable or base64 if it was sent that way.
    pub fn text(&self) -> String {
        let (headers, body) = self.data.split_once("\r\n\r\n").unwrap_or(("", &self.data));
        let headers = headers.to_ascii_lowercase();
        if headers.contains("content-transfer-encoding: base64") {
            let joined: String = body.split_whitespace().collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(joined).unwrap()).unwrap()
        } else if headers.contains("content-transfer-encoding: quoted-printable") {
            let soft = body.replace("=\r\n", "");
            let mut out = Vec::new();
            let bytes = soft.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() {
                    out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        } else {
            body.to_owned()
        }
    }

    pub fn subject(&self) -> String {
        self.data.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().to_owned()
    }

    /// The verification token of a verification email.
    pub fn token(&self) -> Option<String> {
        let text = self.text();
        let start = text.find("token=")? + "token=".len();
        Some(text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect())
    }
}

pub struct SmtpServer {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn smtp_session(socket: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>, arrived: Arc<Notify>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 stand-in ESMTP\r\n").await;
    let mut to = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-stand-in\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            to.clear();
            b"250 OK\r\n"
        } else if let Some(rcpt) = upper.strip_prefix("RCPT TO:") {
            to.push(rcpt.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase());
            b"250 OK\r\n"
        } else if upper == "DATA" {
            let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
            let mut data = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "." {
                    break;
                }
                data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
                data.push_str("\r\n");
            }
            mails.lock().unwrap().push(Mail { to: std::mem::take(&mut to), data });
            arrived.notify_waiters();
            b"250 OK queued\r\n"
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (m, a) = (mails.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(smtp_session(socket, m.clone(), a.clone()));
            }
        });
        Self { port, mails, arrived, task }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn mails_to(&self, address: &str) -> Vec<Mail> {
        self.mails.lock().unwrap().iter().filter(|m| m.to.iter().any(|t| t == address)).cloned().collect()
    }

    /// Waits (up to 10 s) until `count` mails to `address` have arrived.
    pub async fn wait_for(&self, address: &str, count: usize) -> Vec<Mail> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let waiting = self.arrived.notified();
                let mails = self.mails_to(address);
                if mails.len() >= count {
                    return mails;
                }
                waiting.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no mail to {address} arrived"))
    }
}

// ---------------------------------------------------------------------------------------------
// Stripe

pub const STRIPE_KEY: &str = "sk_test_standin";
pub const WEBHOOK_SECRET: &str = "whsec_standin_secret";

#[derive(Default)]
pub struct StripeBook {
    pub customers: Vec<Value>,
    pub subscriptions: Vec<Value>,
    pub cancelled: Vec<String>,
    /// Every request: method, path, idempotency key.
    pub requests: Vec<(Method, String, Option<String>)>,
    idempotent: HashMap<String, (StatusCode, Value)>,
    /// Decline every subscription (the card is declined when the first invoice is paid).
    pub decline: bool,
    /// Answer subscription creation only after this long (it is recorded at once).
    pub subscription_delay: Option<Duration>,
}

#[derive(Clone)]
pub struct StripeStandIn {
    pub port: u16,
    pub book: Arc<Mutex<StripeBook>>,
}

fn stripe_error(status: StatusCode, kind: &str, code: &str, message: &str) -> (StatusCode, Value) {
    let mut error = json!({ "type": kind, "code": code, "message": message });
    if code == "card_declined" {
        error["decline_code"] = json!("generic_decline");
    }
    (status, json!({ "error": error }))
}

fn form(body: &Bytes) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap().into_iter().collect()
}

async fn stripe_call(
    State(book): State<Arc<Mutex<StripeBook>>>,
    method: Method,
    uri: axum::http::Uri,
    path: Option<Path<String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut delay = None;
    let (status, value) = {
        let mut book = book.lock().unwrap();
        book.requests.push((method.clone(), uri.path().to_owned(), key.clone()));
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {STRIPE_KEY}")) {
            let (s, v) = stripe_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "api_key_invalid",
                "Invalid API Key provided",
            );
            return (s, Json(v)).into_response();
        }
        if let Some(replayed) = key.as_ref().and_then(|k| book.idempotent.get(k)) {
            let (s, v) = replayed.clone();
            let mut response = (s, Json(v)).into_response();
            response.headers_mut().insert("idempotent-replayed", "true".parse().unwrap());
            return response;
        }
        let params = form(&body);
        let path_id = path.map(|Path(id)| id).unwrap_or_default();
        let created = chrono::Utc::now().timestamp();
        let answer = match (method.as_str(), uri.path()) {
            ("POST", "/v1/customers") => {
                let id = format!("cus_{}", book.customers.len() + 1);
                let customer = json!({
                    "id": id, "object": "customer", "created": created, "livemode": false,
                    "email": params.get("email"), "name": params.get("name"), "metadata": {},
                    "invoice_settings": { "default_payment_method": null }
                });
                book.customers.push(customer.clone());
                (StatusCode::OK, customer)
            }
            ("POST", p) if p.starts_with("/v1/payment_methods/") && p.ends_with("/attach") => (
                StatusCode::OK,
                json!({ "id": path_id, "object": "payment_method", "created": created, "livemode": false,
                    "customer": params.get("customer"), "type": "card", "metadata": {} }),
            ),
            ("POST", p) if p.starts_with("/v1/customers/") => {
                match book.customers.iter_mut().find(|c| c["id"] == path_id) {
                    Some(customer) => {
                        if let Some(pm) = params.get("invoice_settings[default_payment_method]") {
                            customer["invoice_settings"]["default_payment_method"] = json!(pm);
                        }
                        (StatusCode::OK, customer.clone())
                    }
                    None => stripe_error(
                        StatusCode::NOT_FOUND,
                        "invalid_request_error",
                        "resource_missing",
                        "No such customer",
                    ),
                }
            }
            ("POST", "/v1/subscriptions") => {
                if book.decline
                    || params.get("default_payment_method").map(String::as_str) == Some("pm_card_chargeDeclined")
                {
                    stripe_error(StatusCode::PAYMENT_REQUIRED, "card_error", "card_declined", "Your card was declined.")
                } else if !params.contains_key("items[0][price]") {
                    stripe_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "parameter_missing",
                        "Missing required param: items.",
                    )
                } else {
                    let id = format!("sub_{}", book.subscriptions.len() + 1);
                    let metadata: serde_json::Map<String, Value> = params
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_owned(), json!(v)))
                        })
                        .collect();
                    let subscription = json!({
                        "id": id, "object": "subscription", "created": created, "livemode": false, "status": "active",
                        "customer": params.get("customer"), "metadata": metadata,
                        "default_payment_method": params.get("default_payment_method"),
                        "items": { "object": "list", "data": [{ "price": { "id": params.get("items[0][price]") } }] }
                    });
                    book.subscriptions.push(subscription.clone());
                    delay = book.subscription_delay;
                    (StatusCode::OK, subscription)
                }
            }
            ("DELETE", p) if p.starts_with("/v1/subscriptions/") => {
                book.cancelled.push(path_id.clone());
                (StatusCode::OK, json!({ "id": path_id, "object": "subscription", "status": "canceled" }))
            }
            _ => stripe_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                "Unrecognized request URL",
            ),
        };
        if let (Some(key), &Method::POST) = (&key, &method) {
            book.idempotent.insert(key.clone(), answer.clone());
        }
        answer
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    (status, Json(value)).into_response()
}

impl StripeStandIn {
    pub async fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    pub async fn start_on(listener: TcpListener) -> Self {
        let port = listener.local_addr().unwrap().port();
        let book = Arc::new(Mutex::new(StripeBook::default()));
        let app = Router::new()
            .route("/v1/customers", post(stripe_call))
            .route("/v1/customers/{id}", post(stripe_call))
            .route("/v1/payment_methods/{id}/attach", post(stripe_call))
            .route("/v1/subscriptions", post(stripe_call))
            .route("/v1/subscriptions/{id}", delete(stripe_call))
            .fallback(stripe_call)
            .with_state(book.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { port, book }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn book(&self) -> std::sync::MutexGuard<'_, StripeBook> {
        self.book.lock().unwrap()
    }
}

/// A `Stripe-Signature` header for `body`, signed at `timestamp` with `secret`.
pub fn stripe_signature(secret: &str, timestamp: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}
