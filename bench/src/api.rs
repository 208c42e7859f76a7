//! The few calls of harden's HTTP API the seed and the fault load make, as one small client.
//! Administration goes to the Backend; everything a user does goes through the Proxy, the edge.

use std::time::Duration;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub backend: String,
    pub proxy: String,
}

/// A user of the load: their id, API key and user secret (their keys are generated).
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub api_key: String,
    pub secret: String,
}

/// The body of a Proxy write of `value`.
pub fn value_body(value: &[u8]) -> Value {
    json!({ "valueB64": STANDARD.encode(value) })
}

impl Api {
    pub fn new(backend: &str, proxy: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).pool_max_idle_per_host(256).build()?;
        Ok(Self { http, backend: backend.trim_end_matches('/').into(), proxy: proxy.trim_end_matches('/').into() })
    }

    /// Sends, and answers the JSON body of a success (null for an empty one); fails with the
    /// status and body otherwise.
    async fn call(&self, what: &str, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.with_context(|| format!("{what}: no answer"))?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| format!("{what}: answer cut off"))?;
        if !status.is_success() {
            bail!("{what}: {status} {}", String::from_utf8_lossy(&body));
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).with_context(|| format!("{what}: the answer is not JSON"))
    }

    /// A new org on the business plan (room for every write of a long run) and its first admin's
    /// API key.
    pub async fn org(&self, global_admin_key: &str, name: &str) -> anyhow::Result<(String, String)> {
        let org = self
            .call(
                "create the org",
                self.http
                    .post(format!("{}/admin/orgs", self.backend))
                    .header("X-Api-Key", global_admin_key)
                    .json(&json!({ "name": name, "plan": "business" })),
            )
            .await?;
        let org = org["id"].as_str().context("org id")?.to_owned();
        let admin = self.user(global_admin_key, &org, "org admin", true).await?;
        Ok((org, admin.1))
    }

    /// A user of `org`: their id and API key.
    pub async fn user(&self, key: &str, org: &str, name: &str, is_admin: bool) -> anyhow::Result<(String, String)> {
        let user = self
            .call(
                "create a user",
                self.http
                    .post(format!("{}/admin/orgs/{org}/users", self.backend))
                    .header("X-Api-Key", key)
                    .json(&json!({ "name": name, "isAdmin": is_admin })),
            )
            .await?;
        Ok((user["id"].as_str().context("user id")?.into(), user["apiKey"].as_str().context("api key")?.into()))
    }

    /// `count` users of `org` (created by its admin), each with keys generated through the Proxy
    /// under their own secret.
    pub async fn users_with_keys(&self, org_admin_key: &str, org: &str, count: usize) -> anyhow::Result<Vec<User>> {
        let mut users = Vec::with_capacity(count);
        for i in 0..count {
            let (id, api_key) = self.user(org_admin_key, org, &format!("load user {i}"), false).await?;
            users.push(User { id, api_key, secret: format!("load user {i} secret, 0123456789") });
        }
        // Each generation seals under Argon2id; the Proxy bounds how many run at once.
        let generated = users.iter().map(|user| {
            self.call(
                "generate keys",
                self.http
                    .post(format!("{}/v1/keys/generate", self.proxy))
                    .header("X-Api-Key", &user.api_key)
                    .header("X-User-Secret", &user.secret),
            )
        });
        for outcome in futures::future::join_all(generated).await {
            outcome?;
        }
        Ok(users)
    }

    /// Writes `value` under `key` through the Proxy.
    pub async fn put(&self, user: &User, key: &str, value: &[u8]) -> anyhow::Result<Value> {
        self.call("write a value", self.put_request(user, key, value)).await
    }

    pub fn put_request(&self, user: &User, key: &str, value: &[u8]) -> reqwest::RequestBuilder {
        self.http
            .put(format!("{}/v1/kv/{key}", self.proxy))
            .header("X-Api-Key", &user.api_key)
            .header("X-User-Secret", &user.secret)
            .json(&value_body(value))
    }

    /// Reads and decrypts `key` through the Proxy: its value and version.
    pub async fn get(&self, user: &User, key: &str) -> anyhow::Result<(Vec<u8>, i64)> {
        let value = self
            .call(
                "read a value",
                self.http
                    .get(format!("{}/v1/kv/{key}", self.proxy))
                    .header("X-Api-Key", &user.api_key)
                    .header("X-User-Secret", &user.secret),
            )
            .await?;
        let bytes = STANDARD.decode(value["valueB64"].as_str().context("valueB64")?).context("valueB64 base64")?;
        Ok((bytes, value["version"].as_i64().context("version")?))
    }

    /// Shares `owner`'s `key` with `recipient_id` through the Proxy: the share id.
    pub async fn share(&self, owner: &User, key: &str, recipient_id: &str) -> anyhow::Result<String> {
        let share = self
            .call(
                "share a value",
                self.http
                    .post(format!("{}/v1/kv/{key}/shares", self.proxy))
                    .header("X-Api-Key", &owner.api_key)
                    .header("X-User-Secret", &owner.secret)
                    .json(&json!({ "recipientUserId": recipient_id, "permission": "read", "alias": key })),
            )
            .await?;
        Ok(share["shareId"].as_str().context("share id")?.to_owned())
    }

    /// The Backend's `GET /ready`, whatever its status.
    pub async fn ready(&self) -> anyhow::Result<(u16, Value)> {
        let response = self.http.get(format!("{}/ready", self.backend)).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }
}
