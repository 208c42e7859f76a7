//! One tenant of the isolation matrix, built through the public routes only: an org onboarded
//! through the Cloud API with an owner, an admin, a developer and a viewer; its Cloud API key (an
//! org admin on the Backend and the Proxy); Backend users with keys; and one of everything, or one
//! per destructive route that consumes it: records with versions and shares, files and file shares
//! in a bucket of the shared S3 server, recovery trustees with pending restores, invites, a second
//! API key, and a registration waiting for its verification.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{expect_json, spawn_app_with, TestApp};
use crate::idp::{self, Idp};

/// Every Backend user's `X-User-Secret` (in both orgs: a secret is not an identifier).
pub const SECRET: &str = "the isolation matrix user secret";
/// The temporary secret trustees seal restores under.
pub const RECOVERY: &str = "a trustee's temporary secret";
/// The answer that masks recovery shares.
pub const ANSWER: &str = "the name of my first dog";
/// The password of the pending self-service registration.
pub const PASSWORD: &str = "CorrectHorseBatteryStaple1!";
/// Stripe's webhook signing secret (webhooks only: no Stripe API call is made).
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_isolation_stripe";

/// harden with the Cloud API (against the local identity provider), Stripe webhooks, Clerk
/// webhooks and private-network storage (the shared S3 server is on loopback).
pub struct Env {
    pub app: TestApp,
    pub idp: Idp,
}

impl Env {
    pub async fn start() -> Env {
        let idp = Idp::start().await;
        let app = spawn_app_with(|s| {
            s.cloud_jwt_issuer = Some(idp.issuer.clone());
            s.cloud_jwks_url = Some(idp.jwks_url.clone());
            s.cloud_authorized_parties = idp::AZP.to_owned();
            s.clerk_webhook_secret = Some(SecretString::from(idp::WEBHOOK_SECRET));
            s.storage_allow_private_networks = true;
            // Webhooks only; the API base is never called (registrations here are on the free plan).
            s.stripe_secret_key = Some("sk_test_isolation".into());
            s.stripe_api_base = "http://127.0.0.1:9".to_owned();
            s.stripe_webhook_secret = Some(STRIPE_WEBHOOK_SECRET.into());
            for price in [
                &mut s.stripe_price_starter_monthly,
                &mut s.stripe_price_starter_annual,
                &mut s.stripe_price_smb_monthly,
                &mut s.stripe_price_smb_annual,
                &mut s.stripe_price_business_monthly,
                &mut s.stripe_price_business_annual,
            ] {
                *price = "price_isolation".to_owned();
            }
        })
        .await;
        Env { app, idp }
    }

    /// A Cloud API call as identity `sub`, with a freshly minted session token.
    async fn cloud(&self, method: Method, path: &str, sub: &str, body: Option<Value>) -> Value {
        let mut req = self
            .app
            .client
            .request(method.clone(), format!("{}{path}", self.app.backend))
            .bearer_auth(self.idp.token(sub));
        if let Some(body) = body {
            req = req.json(&body);
        }
        ok(req.send().await.unwrap(), &format!("{method} {path}")).await
    }

    async fn backend(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Value {
        ok(self.app.request(method.clone(), path, Some(key), body).await, &format!("{method} {path}")).await
    }

    async fn proxy(&self, method: Method, path: &str, key: &str, extra: &[(&str, &str)], body: Option<Value>) -> Value {
        let mut headers = vec![("X-Api-Key", key), ("X-User-Secret", SECRET)];
        headers.extend_from_slice(extra);
        ok(self.app.proxy(method.clone(), path, &headers, body).await, &format!("{method} {path}")).await
    }

    /// `sub` joins `org` with `role` through an invite the owner makes.
    async fn join(&self, org: Uuid, owner: &str, sub: &str, role: &str) {
        let invite = self
            .cloud(
                Method::POST,
                &format!("/cloud/organizations/{org}/invites"),
                owner,
                Some(json!({ "email": format!("{sub}@example.test"), "role": role })),
            )
            .await;
        let token = text(&invite["token"]);
        self.cloud(Method::POST, &format!("/cloud/invites/{token}/accept"), sub, None).await;
    }
}

/// Asserts a 2xx answer (naming the request otherwise) and returns its JSON body (null if none).
async fn ok(res: Response, what: &str) -> Value {
    let status = res.status();
    let body = res.text().await.unwrap();
    assert!(status.is_success(), "fixture: {what} answered {status}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_owned()
}

fn id(v: &Value) -> Uuid {
    text(v).parse().unwrap()
}

/// A Backend user: id, API key, name.
pub struct User {
    pub id: Uuid,
    pub key: String,
    pub name: String,
}

/// A KV record of the tenant's user, shared with its admin.
pub struct Record {
    pub name: String,
    pub share: Uuid,
    pub version: i64,
    pub key_epoch: i64,
    pub ciphertext: String,
    pub wrap_ecc: String,
    pub wrap_kyber: String,
}

/// A file of the tenant's user, shared with its admin.
pub struct File {
    pub id: Uuid,
    pub name: String,
    pub share: Uuid,
    pub encrypted_name: String,
}

pub struct Tenant {
    pub org: Uuid,
    pub name: String,
    pub slug: String,
    /// Cloud members (identity-provider subjects).
    pub owner: String,
    pub cloud_admin: String,
    pub developer: String,
    pub viewer: String,
    /// Members whose role is changed and who are removed.
    pub promoted: String,
    pub removed: String,
    /// An identity with an invite of its own, not a member yet.
    pub joiner: String,
    /// A pending invite (revoked by the positive control) and the joiner's invite.
    pub invite: String,
    pub join_invite: String,
    /// The Cloud API key: `key.key` is its secret, `key.id` the project user.
    pub key: User,
    pub key_id: Uuid,
    pub key_label: String,
    /// A second Cloud API key, revoked by the positive control.
    pub spare_key_id: Uuid,
    pub admin: User,
    pub user: User,
    /// Users without keys (key generation and storage), one to offboard, one whose key is rotated.
    pub fresh: User,
    pub fresh2: User,
    pub leaver: User,
    pub rotated: User,
    /// The user's records (two versions each), each shared with the admin. The positive control
    /// reads and updates [0], then the admin gives its share up and the user deletes it on the
    /// Backend; rotates [1] and revokes its share on the Backend; shares [2] with the project user on
    /// the Backend, then revokes the admin's share and deletes it through the Proxy; shares [3] with
    /// the project user through the Proxy, and the admin gives its share up there.
    pub records: Vec<Record>,
    /// The user's files, each shared with the admin. The positive control reads [0], shares it with
    /// the project user and the admin gives its share up on the Backend; shares [1] through the
    /// Proxy, revokes the admin's share and deletes it on the Backend; does that to [2] through the
    /// Proxy; and the admin gives [3]'s share up through the Proxy.
    pub files: Vec<File>,
    pub bucket: String,
    /// A registration waiting for verification.
    pub reg_email: String,
    pub reg_token: String,
    /// The project user's sealed private keys as `GET /users/me` shows them.
    pub key_sealed: (String, String),
    /// The project user's answer to its pending restore's challenge (base64).
    pub key_challenge_answer: String,
    /// The user's self-signed key bundle (base64).
    pub user_bundle: String,
    /// Everything that identifies this tenant: no answer to another tenant may contain any of it.
    pub markers: Vec<String>,
}

impl Tenant {
    /// `with_restores`: the user and the project user have a restore pending (the trustee's side
    /// of recovery is set up either way).
    pub async fn build(env: &Env, label: &'static str, with_restores: bool) -> Tenant {
        let tag = format!("{}{}", label.to_lowercase(), &Uuid::new_v4().simple().to_string()[..10]);
        let sub = |role: &str| format!("user_{tag}{role}");
        let (owner, cloud_admin, developer, viewer) = (sub("owner"), sub("admin"), sub("developer"), sub("viewer"));
        let (promoted, removed, joiner) = (sub("promoted"), sub("removed"), sub("joiner"));
        let app = &env.app;

        // The org, its members, invites and API keys, through the Cloud API.
        let name = format!("Org {tag}");
        let onboarded = env.cloud(Method::POST, "/cloud/onboarding", &owner, Some(json!({ "org_name": name }))).await;
        let org = id(&onboarded["org_id"]);
        let slug = text(&onboarded["org_slug"]);
        let base = format!("/cloud/organizations/{org}");
        for (member, role) in [
            (&cloud_admin, "admin"),
            (&developer, "developer"),
            (&viewer, "viewer"),
            (&promoted, "developer"),
            (&removed, "developer"),
        ] {
            env.join(org, &owner, member, role).await;
        }
        let invite_email = format!("pending-{tag}@example.test");
        let invite =
            env.cloud(Method::POST, &format!("{base}/invites"), &owner, Some(json!({ "email": invite_email }))).await;
        let join_invite = env
            .cloud(
                Method::POST,
                &format!("{base}/invites"),
                &owner,
                Some(json!({ "email": format!("{joiner}@example.test"), "role": "viewer" })),
            )
            .await;
        let key = env.cloud(Method::POST, &format!("{base}/api-keys"), &owner, Some(json!({ "name": tag }))).await;
        let spare_key = env
            .cloud(Method::POST, &format!("{base}/api-keys"), &owner, Some(json!({ "name": format!("{tag}-spare") })))
            .await;
        let key = (
            User { id: id(&onboarded["project_id"]), key: text(&key["secret"]), name: text(&key["name"]) },
            id(&key["id"]),
            text(&key["key"]),
        );

        // Files need a paid plan and storage: a bucket of its own on the shared S3 server.
        let plan = format!("/admin/orgs/{org}/plan");
        env.backend(Method::PUT, &plan, &app.global_admin_key, Some(json!({ "plan": "starter" }))).await;
        let bucket = crate::storage::new_bucket().await;
        let storage = crate::storage::body(&bucket);
        env.backend(Method::PUT, &format!("/admin/orgs/{org}/storage"), &key.0.key, Some(storage)).await;

        // Backend users; the admin, the user and the project user get keys.
        let mut users = Vec::new();
        for (role, is_admin) in [
            ("admin", true),
            ("user", false),
            ("fresh", false),
            ("fresh2", false),
            ("leaver", false),
            ("rotated", false),
        ] {
            let name = format!("{tag}-{role}");
            let created = env
                .backend(
                    Method::POST,
                    &format!("/admin/orgs/{org}/users"),
                    &key.0.key,
                    Some(json!({ "name": name, "isAdmin": is_admin })),
                )
                .await;
            users.push(User { id: id(&created["id"]), key: text(&created["apiKey"]), name });
        }
        let [admin, user, fresh, fresh2, leaver, rotated] = <[User; 6]>::try_from(users).ok().unwrap();
        for k in [&admin.key, &user.key, &key.0.key] {
            env.proxy(Method::POST, "/v1/keys/generate", k, &[], None).await;
        }

        // Records (two versions each) and files of the user, each shared with the admin.
        let future = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let mut records = Vec::new();
        let mut files = Vec::new();
        for i in 1..=4 {
            let record = format!("rec{i}-{tag}");
            for version in 1..=2 {
                let value = STANDARD.encode(format!("value {version} of {record}"));
                let body = json!({ "valueB64": value });
                env.proxy(Method::PUT, &format!("/v1/kv/{record}"), &user.key, &[], Some(body)).await;
            }
            let share = env
                .proxy(
                    Method::POST,
                    &format!("/v1/kv/{record}/shares"),
                    &user.key,
                    &[],
                    Some(json!({ "recipientUserId": admin.id, "permission": "read", "alias": format!("alias of {record}"), "expiresUtc": future })),
                )
                .await;
            let stored = env.backend(Method::GET, &format!("/kv/{record}"), &user.key, None).await;
            records.push(Record {
                name: record,
                share: id(&share["shareId"]),
                version: stored["version"].as_i64().unwrap(),
                key_epoch: stored["keyEpoch"].as_i64().unwrap(),
                ciphertext: text(&stored["ciphertextB64"]),
                wrap_ecc: text(&stored["encryptedAesKeyEccB64"]),
                wrap_kyber: text(&stored["encryptedAesKeyKyberB64"]),
            });

            let file_name = format!("file{i}-{tag}.txt");
            let content = STANDARD.encode(format!("the content of {file_name}"));
            let upload = json!({ "fileName": file_name, "contentB64": content, "contentType": "text/plain" });
            let file = id(&env.proxy(Method::POST, "/v1/files", &user.key, &[], Some(upload)).await["id"]);
            let share = env
                .proxy(
                    Method::POST,
                    &format!("/v1/files/{file}/shares"),
                    &user.key,
                    &[],
                    Some(json!({ "recipientUserId": admin.id, "permission": "read" })),
                )
                .await;
            let meta = env.backend(Method::GET, &format!("/files/{file}?content=false"), &user.key, None).await;
            files.push(File {
                id: file,
                name: file_name,
                share: id(&share["shareId"]),
                encrypted_name: text(&meta["encryptedFileNameB64"]),
            });
        }

        // Recovery: the user and the project user name the admin as trustee, and the admin restores
        // both, so each has a pending restore.
        let masked = json!({ "xorApplied": true, "xorSaltHint": "dog", "xorAnswer": ANSWER });
        for (owner_key, owner_id, body) in
            [(&user.key, user.id, masked), (&key.0.key, key.0.id, json!({ "xorApplied": false }))]
        {
            env.proxy(Method::PUT, &format!("/v1/recovery/trustees/{}", admin.id), owner_key, &[], Some(body)).await;
            if !with_restores {
                continue;
            }
            let path = format!("/v1/recovery/restore/{owner_id}");
            env.proxy(Method::POST, &path, &admin.key, &[("X-Recovery-Secret", RECOVERY)], None).await;
        }
        let me = env.backend(Method::GET, "/users/me", &key.0.key, None).await;
        let key_sealed = (text(&me["encryptedPrivateKeyEccB64"]), text(&me["encryptedPrivateKeyKyberB64"]));
        // The user's bundle, as their Proxy published it with their keys.
        let user_bundle = text(&env.backend(Method::GET, "/users/me", &user.key, None).await["keyBundleB64"]);
        // The project user's answer to its pending restore's challenge, opened with its own keys
        // (what its Proxy would send), so that it can complete recovery in the matrix.
        let key_challenge_answer = if with_restores {
            let pending = env.backend(Method::GET, "/users/me/recovery/pending", &key.0.key, None).await;
            challenge_answer(org, key.0.id, &key_sealed, &pending)
        } else {
            String::new()
        };

        // A self-service registration waiting for its verification.
        let reg_email = format!("reg-{tag}@example.test");
        let registration = json!({
            "orgName": format!("Registered {tag}"), "adminName": format!("{tag} registrant"), "email": reg_email,
            "password": PASSWORD, "countryCode": "US", "plan": "free",
        });
        let res = app.request(Method::POST, "/auth/orgadmin/register", None, Some(registration)).await;
        let reg_token = text(&expect_json(res, StatusCode::ACCEPTED).await["verificationToken"]);

        let mut tenant = Tenant {
            org,
            name,
            slug,
            owner,
            cloud_admin,
            developer,
            viewer,
            promoted,
            removed,
            joiner,
            invite: text(&invite["token"]),
            join_invite: text(&join_invite["token"]),
            key: key.0,
            key_id: key.1,
            key_label: key.2,
            spare_key_id: id(&spare_key["id"]),
            admin,
            user,
            fresh,
            fresh2,
            leaver,
            rotated,
            records,
            files,
            bucket,
            reg_email,
            reg_token,
            key_sealed,
            key_challenge_answer,
            user_bundle,
            markers: vec![tag, invite_email],
        };
        tenant.markers.extend(tenant.identifiers());
        tenant.markers.sort();
        tenant.markers.dedup();
        tenant
    }

    /// Ids, names, keys, tokens and ciphertexts of this tenant.
    fn identifiers(&self) -> Vec<String> {
        let mut out = vec![self.org.to_string(), self.name.clone(), self.slug.clone(), self.bucket.clone()];
        for sub in
            [&self.owner, &self.cloud_admin, &self.developer, &self.viewer, &self.promoted, &self.removed, &self.joiner]
        {
            out.extend([sub.clone(), format!("{sub}@example.test")]);
        }
        out.extend([self.invite.clone(), self.join_invite.clone(), self.key_label.clone()]);
        out.extend([self.key_id.to_string(), self.spare_key_id.to_string()]);
        for user in [&self.key, &self.admin, &self.user, &self.fresh, &self.fresh2, &self.leaver, &self.rotated] {
            out.extend([user.id.to_string(), user.key.clone(), user.name.clone()]);
        }
        for r in &self.records {
            out.extend([r.name.clone(), r.share.to_string(), r.ciphertext.clone(), r.wrap_ecc.clone()]);
            out.push(r.wrap_kyber.clone());
        }
        for f in &self.files {
            out.extend([f.id.to_string(), f.name.clone(), f.share.to_string(), f.encrypted_name.clone()]);
        }
        out.extend([
            self.reg_email.clone(),
            self.reg_token.clone(),
            self.key_sealed.0.clone(),
            self.key_sealed.1.clone(),
        ]);
        out
    }
}

/// Opens a pending restore's challenge with the owner's keys, unsealed with [`SECRET`].
fn challenge_answer(org: Uuid, owner: Uuid, sealed: &(String, String), pending: &Value) -> String {
    use harden_domain::crypto;
    let (ecc, kyber) = (STANDARD.decode(&sealed.0).unwrap(), STANDARD.decode(&sealed.1).unwrap());
    let (params, salt) = crypto::seal_header(&ecc).unwrap();
    let kek = crypto::derive_kek(SECRET.as_bytes(), salt, params).unwrap();
    let keys = crypto::open_private_keys(&kek, owner, &ecc, &kyber).unwrap();
    let restore_id: Uuid = text(&pending["restoreId"]).parse().unwrap();
    let context = harden_commands::recovery::challenge_context(org.into(), owner.into(), &restore_id);
    let challenge = STANDARD.decode(text(&pending["challengeB64"])).unwrap();
    STANDARD.encode(crypto::open_sealed(&keys, owner, &context, &challenge).unwrap().as_slice())
}
