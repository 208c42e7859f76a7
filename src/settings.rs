//! Typed settings: defaults, then an optional `harden.toml` (or the file named by `--config` /
//! `HARDEN_CONFIG`), then `HARDEN_*` environment variables. With none of them, harden runs on this
//! machine's local PostgreSQL and NATS. Secrets are `SecretString`s and never print.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Every setting harden reads. The README lists them with their environment names.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `development` or `production`. Production requires an explicit master key.
    pub env: Environment,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// Where the global admin key (and, outside production, the master key) are written.
    pub data_dir: PathBuf,
    pub backend_addr: SocketAddr,
    pub proxy_addr: SocketAddr,
    pub nats_url: String,
    /// JetStream replicas of the stream the relay creates (3 on a 3-node cluster).
    pub nats_stream_replicas: usize,
    /// The JetStream stream events are published to.
    pub nats_stream: String,
    /// Subjects are `<prefix>.<org_id>.<aggregate>.<event_type>`.
    pub nats_subject_prefix: String,
    /// Run the NATS relay in this instance (one instance relays at a time; the others stand by).
    pub nats_relay: bool,
    /// 32 bytes, base64. Required in production; generated into the data dir otherwise.
    pub master_key: Option<SecretString>,
    /// Where the Proxy reaches the Backend. Empty: this instance's own Backend listener.
    pub proxy_backend_url: String,
    /// How long the Proxy keeps a user's unlocked private keys in memory (0: never).
    pub unlock_cache_seconds: u64,
    /// How long a dashboard session (`/ui/`) lasts.
    pub ui_session_secs: u64,
    /// Argon2id parameters for sealing private keys (never below m = 19456 KiB, t = 2, p = 1).
    pub argon2_m_kib: u32,
    pub argon2_t: u32,
    pub argon2_p: u32,
    /// Memory the Proxy may spend on concurrent Argon2id runs; runs beyond it wait.
    pub argon2_memory_budget_mib: u32,
    /// Shortest user secret accepted when generating keys or rekeying.
    pub min_user_secret_chars: usize,
    /// A tracing filter, e.g. `info` or `harden=debug,tower_http=info`.
    pub log: String,
    pub log_format: LogFormat,
    /// How long a write waits for the read models to show it before answering anyway.
    pub read_model_wait_ms: u64,
    /// The followers' poll interval, the fallback to their LISTEN wake-up.
    pub follower_poll_ms: u64,
    /// `idle_in_transaction_session_timeout` for every harden connection.
    pub idle_in_transaction_timeout_ms: u64,
    /// The largest JSON body the API accepts.
    pub max_body_bytes: usize,
    /// Load balancers and proxies (addresses or CIDR blocks, comma-separated) whose
    /// `X-Forwarded-For` names the client; nobody else's is believed.
    pub trusted_proxies: String,
    /// SMTP for verification emails (`smtps://user:pass@host`, `smtp://host:587?tls=required`, ...).
    /// Unset: no email is sent and registration answers the verification token itself.
    pub smtp_url: Option<SecretString>,
    /// The sender of harden's emails.
    pub smtp_from: String,
    /// The public base URL verification links point at. Empty: the Proxy's address.
    pub public_url: String,
    /// How long a verification token works.
    pub verification_token_ttl_secs: u64,
    /// Stripe secret key (`sk_live_…`/`sk_test_…`). Unset: paid plans answer 400.
    pub stripe_secret_key: Option<SecretString>,
    /// Where the Stripe API is (a stand-in in tests).
    pub stripe_api_base: String,
    pub stripe_timeout_ms: u64,
    /// The endpoint secret (`whsec_…`) that signs Stripe's webhooks. Unset: `/webhooks/stripe` is 404.
    pub stripe_webhook_secret: Option<SecretString>,
    /// The Stripe price of each paid plan and billing cycle (all required once Stripe is configured).
    pub stripe_price_starter_monthly: String,
    pub stripe_price_starter_annual: String,
    pub stripe_price_smb_monthly: String,
    pub stripe_price_smb_annual: String,
    pub stripe_price_business_monthly: String,
    pub stripe_price_business_annual: String,
    /// Lets org storage point at loopback, private or link-local addresses: for single-tenant
    /// installs only. Off: a tenant must not make this server call its internal network.
    pub storage_allow_private_networks: bool,
    /// Exact `host:port` pairs org storage may point at whatever they resolve to (comma-separated,
    /// e.g. `minio:9000`): the object store of a multi-tenant stack, and nothing else of its network.
    pub storage_allowed_hosts: String,
    /// How long a trustee's restore stays completable (default 7 days); older ones are void.
    pub recovery_restore_ttl_secs: u64,
    /// How often deleted files' objects still in a bucket (the store was down) are retried.
    pub file_reaper_interval_ms: u64,
    /// The Cloud API is on when an issuer and one of a JWKS URL or a PEM key are set.
    /// The identity provider's token issuer (`iss`), e.g. `https://clerk.example.com`.
    pub cloud_jwt_issuer: Option<String>,
    /// The provider's JWKS, e.g. `https://clerk.example.com/.well-known/jwks.json`.
    pub cloud_jwks_url: Option<String>,
    /// Or the provider's public key as PEM (Clerk's "JWT public key"), for networkless verification.
    pub cloud_jwt_public_key: Option<String>,
    /// The required `aud`. Unset: the `azp` claim, when present, must be one of the authorized parties.
    pub cloud_jwt_audience: Option<String>,
    /// Origins allowed as `azp` (comma-separated), e.g. `https://app.example.com`.
    pub cloud_authorized_parties: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub cloud_jwt_leeway_secs: u64,
    /// Shortest time between two JWKS fetches caused by tokens with unknown key ids.
    pub cloud_jwks_min_refresh_ms: u64,
    /// How long a fetched JWKS is used before it is fetched again.
    pub cloud_jwks_ttl_secs: u64,
    /// The Svix signing secret (`whsec_…`) of the identity provider's webhooks. Unset:
    /// `/webhooks/clerk` is 404.
    pub clerk_webhook_secret: Option<SecretString>,
    /// How often API keys' `last_used_at` times are written (they are batched in memory).
    pub api_key_usage_flush_ms: u64,
    /// How long a process answers a presented API key from what it last looked up; a command that
    /// revokes access waits this long before it answers. 0 turns the cache off.
    pub auth_cache_ms: u64,
    /// A read-model follower that leaves a committed event unapplied this long makes `/ready` 503.
    pub follower_stall_secs: u64,
    /// A request not answered within this is answered 503.
    pub request_timeout_secs: u64,
    /// How long a shutdown (SIGTERM, Ctrl-C) waits for requests in flight.
    pub shutdown_grace_secs: u64,
    /// Origins (comma-separated, e.g. `https://app.example.com`) whose browsers may call the Proxy.
    /// Empty: no CORS.
    pub cors_allowed_origins: String,
    /// Requests per second one client address may make to the anonymous routes (sign-in,
    /// registration, webhooks, plans, health, documents) and to unknown paths, per listener (0: no limit).
    pub anonymous_rate_per_sec: u32,
    /// How many such requests one address may make at once before the rate applies.
    pub anonymous_burst: u32,
    /// Where `/metrics` (Prometheus) is served, e.g. `127.0.0.1:9464`. Unset: not served.
    pub metrics_addr: Option<SocketAddr>,
    /// A PEM certificate chain and its PEM private key: with both set, the Proxy serves HTTPS
    /// (rustls; TLS 1.2 and 1.3) instead of HTTP.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The clock commands are decided at; tests move it. Not a setting anyone can write.
    #[serde(skip)]
    pub clock: harden_commands::clock::Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            env: Environment::Development,
            database_url: SecretString::from("postgres://postgres@127.0.0.1:5432/harden"),
            database_max_connections: 16,
            data_dir: PathBuf::from("./data"),
            backend_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            proxy_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            nats_stream_replicas: 1,
            nats_stream: harden_nats::STREAM.to_owned(),
            nats_subject_prefix: harden_nats::SUBJECT_PREFIX.to_owned(),
            nats_relay: true,
            master_key: None,
            proxy_backend_url: String::new(),
            unlock_cache_seconds: 300,
            ui_session_secs: 8 * 3600,
            argon2_m_kib: 64 * 1024,
            argon2_t: 3,
            argon2_p: 1,
            argon2_memory_budget_mib: 256,
            min_user_secret_chars: 12,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            read_model_wait_ms: 2_000,
            follower_poll_ms: 500,
            idle_in_transaction_timeout_ms: 30_000,
            max_body_bytes: 64 * 1024,
            // The Proxy, which by default runs on this host in front of the Backend.
            trusted_proxies: "127.0.0.1, ::1".to_owned(),
            smtp_url: None,
            smtp_from: "harden <noreply@harden.localhost>".to_owned(),
            public_url: String::new(),
            verification_token_ttl_secs: 24 * 60 * 60,
            stripe_secret_key: None,
            stripe_api_base: "https://api.stripe.com".to_owned(),
            stripe_timeout_ms: 20_000,
            stripe_webhook_secret: None,
            stripe_price_starter_monthly: String::new(),
            stripe_price_starter_annual: String::new(),
            stripe_price_smb_monthly: String::new(),
            stripe_price_smb_annual: String::new(),
            stripe_price_business_monthly: String::new(),
            stripe_price_business_annual: String::new(),
            storage_allow_private_networks: false,
            storage_allowed_hosts: String::new(),
            recovery_restore_ttl_secs: 7 * 24 * 3600,
            file_reaper_interval_ms: 30_000,
            cloud_jwt_issuer: None,
            cloud_jwks_url: None,
            cloud_jwt_public_key: None,
            cloud_jwt_audience: None,
            cloud_authorized_parties: String::new(),
            cloud_jwt_leeway_secs: 5,
            cloud_jwks_min_refresh_ms: 10_000,
            cloud_jwks_ttl_secs: 600,
            clerk_webhook_secret: None,
            api_key_usage_flush_ms: 5_000,
            auth_cache_ms: 250,
            follower_stall_secs: 30,
            request_timeout_secs: 60,
            shutdown_grace_secs: 20,
            cors_allowed_origins: String::new(),
            anonymous_rate_per_sec: 20,
            anonymous_burst: 100,
            metrics_addr: None,
            tls_cert_file: None,
            tls_key_file: None,
            clock: harden_commands::clock::Clock::default(),
        }
    }
}

impl Settings {
    /// Loads settings from `config` (or `./harden.toml` if it exists) and the environment.
    pub fn load(config: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        match config {
            Some(path) => {
                anyhow::ensure!(path.exists(), "config file {} does not exist", path.display());
                figment = figment.merge(Toml::file_exact(path));
            }
            // A missing ./harden.toml is simply no file settings.
            None if Path::new("harden.toml").exists() => figment = figment.merge(Toml::file_exact("harden.toml")),
            None => {}
        }
        figment.merge(Env::prefixed("HARDEN_").ignore(&["config"])).extract().context("Invalid settings")
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    pub fn read_model_wait(&self) -> Duration {
        Duration::from_millis(self.read_model_wait_ms)
    }

    pub fn follower_poll(&self) -> Duration {
        Duration::from_millis(self.follower_poll_ms)
    }

    pub fn db_config(&self) -> harden_commands::db::DbConfig<'_> {
        harden_commands::db::DbConfig {
            url: secrecy::ExposeSecret::expose_secret(&self.database_url),
            max_connections: self.database_max_connections,
            idle_in_transaction_timeout: self.idle_in_transaction_timeout(),
        }
    }

    pub fn idle_in_transaction_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_in_transaction_timeout_ms)
    }

    pub fn limits(&self) -> harden_api::layers::Limits {
        harden_api::layers::Limits {
            max_body_bytes: self.max_body_bytes,
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
        }
    }

    pub fn anonymous_rate(&self) -> harden_api::rate_limit::AnonymousRate {
        harden_api::rate_limit::AnonymousRate { per_sec: self.anonymous_rate_per_sec, burst: self.anonymous_burst }
    }

    /// The Proxy's certificate and key files, when both are set.
    pub fn tls(&self) -> anyhow::Result<Option<(&Path, &Path)>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => anyhow::bail!("HARDEN_TLS_CERT_FILE and HARDEN_TLS_KEY_FILE must be set together"),
        }
    }

    /// Where org storage may point (see [`harden_commands::storage::NetworkPolicy`]).
    pub fn storage_policy(&self) -> anyhow::Result<harden_commands::storage::NetworkPolicy> {
        harden_commands::storage::NetworkPolicy::new(self.storage_allow_private_networks, &self.storage_allowed_hosts)
            .map_err(|e| anyhow::anyhow!("HARDEN_STORAGE_ALLOWED_HOSTS: {e}"))
    }

    pub fn cors_origins(&self) -> Vec<String> {
        comma_list(&self.cors_allowed_origins)
    }

    /// The Cloud API's token verification settings, if it is configured (an issuer and a key source).
    pub fn cloud_jwt(&self) -> anyhow::Result<Option<harden_api::cloud::jwt::JwtConfig>> {
        let key_source = self.cloud_jwks_url.is_some() || self.cloud_jwt_public_key.is_some();
        let Some(issuer) = self.cloud_jwt_issuer.clone() else {
            anyhow::ensure!(
                !key_source && self.clerk_webhook_secret.is_none(),
                "the Cloud API needs HARDEN_CLOUD_JWT_ISSUER as well as its key source and webhook secret"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            key_source,
            "HARDEN_CLOUD_JWT_ISSUER needs HARDEN_CLOUD_JWKS_URL or HARDEN_CLOUD_JWT_PUBLIC_KEY"
        );
        Ok(Some(harden_api::cloud::jwt::JwtConfig {
            jwks_url: self.cloud_jwks_url.clone(),
            public_key_pem: self.cloud_jwt_public_key.clone(),
            issuer,
            audience: self.cloud_jwt_audience.clone(),
            authorized_parties: comma_list(&self.cloud_authorized_parties),
            leeway_secs: self.cloud_jwt_leeway_secs,
            jwks_min_refresh: Duration::from_millis(self.cloud_jwks_min_refresh_ms),
            jwks_ttl: Duration::from_secs(self.cloud_jwks_ttl_secs),
        }))
    }

    /// The Stripe client's configuration, if a secret key is set.
    pub fn stripe(&self) -> Option<harden_commands::billing::StripeConfig> {
        use harden_domain::registration::BillingCycle::{Annual, Monthly};
        use harden_domain::Plan::{Business, Smb, Starter};
        let key = self.stripe_secret_key.as_ref()?;
        let prices = [
            ((Starter, Monthly), &self.stripe_price_starter_monthly),
            ((Starter, Annual), &self.stripe_price_starter_annual),
            ((Smb, Monthly), &self.stripe_price_smb_monthly),
            ((Smb, Annual), &self.stripe_price_smb_annual),
            ((Business, Monthly), &self.stripe_price_business_monthly),
            ((Business, Annual), &self.stripe_price_business_annual),
        ]
        .into_iter()
        .filter(|(_, price)| !price.is_empty())
        .map(|(plan, price)| (plan, price.clone()))
        .collect();
        Some(harden_commands::billing::StripeConfig {
            secret_key: secrecy::ExposeSecret::expose_secret(key).to_owned(),
            api_base: self.stripe_api_base.clone(),
            timeout: Duration::from_millis(self.stripe_timeout_ms),
            prices,
            webhook_secret: self
                .stripe_webhook_secret
                .as_ref()
                .map(|s| secrecy::ExposeSecret::expose_secret(s).to_owned()),
        })
    }
}

fn comma_list(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment's large error
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        figment::Jail::expect_with(|_| {
            let s = Settings::load(None).unwrap();
            assert_eq!(s.backend_addr.to_string(), "127.0.0.1:8080");
            assert_eq!(s.proxy_addr.to_string(), "127.0.0.1:8081");
            assert_eq!(s.database_url.expose_secret(), "postgres://postgres@127.0.0.1:5432/harden");
            assert_eq!(s.env, Environment::Development);
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file_which_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("harden.toml", "backend_addr = \"127.0.0.1:9000\"\nnats_url = \"nats://file:4222\"")?;
            jail.set_env("HARDEN_NATS_URL", "nats://env:4222");
            jail.set_env("HARDEN_DATA_DIR", "/tmp/harden-data");
            let s = Settings::load(None).unwrap();
            assert_eq!(s.backend_addr.to_string(), "127.0.0.1:9000");
            assert_eq!(s.nats_url, "nats://env:4222");
            assert_eq!(s.data_dir, PathBuf::from("/tmp/harden-data"));
            Ok(())
        });
    }

    #[test]
    fn unknown_settings_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HARDEN_DATABSE_URL", "typo");
            assert!(Settings::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings { master_key: Some(SecretString::from("c2VjcmV0")), ..Settings::default() };
        let printed = format!("{s:?}");
        assert!(!printed.contains("c2VjcmV0"));
        assert!(!printed.contains("postgres://postgres@"));
    }
}
