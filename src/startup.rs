//! Start-up: connect (creating and migrating the database if needed), make sure the master key and
//! the global admin exist, start the followers, bind the listeners.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use axum::Router;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::tls::TlsListener;

use std::time::Duration;

use harden_api::cloud::auth::CloudAuth;
use harden_api::extract::TrustedProxies;
use harden_api::layers::Edge;
use harden_api::metrics::Metrics;
use harden_api::proxy::{Backend, ProxyState, Unlocker};
use harden_api::AppState;
use harden_commands::billing::Stripe;
use harden_commands::bootstrap;
use harden_commands::credentials::KeyUsage;
use harden_commands::db;
use harden_commands::mail::Mailer;
use harden_commands::onboarding::{Onboarding, OnboardingConfig};
use harden_commands::passwords::Passwords;
use harden_commands::storage::NetworkPolicy;
use harden_commands::Harden;
use harden_domain::crypto::KdfParams;
use harden_nats::relay::{Relay, RelayConfig};
use harden_projections::audit::Audit;
use harden_projections::cloud::Cloud;
use harden_projections::directory::Directory;
use harden_projections::files::Files;
use harden_projections::kv::Kv;
use harden_projections::recovery::RecoveryShares;
use harden_projections::replay;
use harden_projections::shares::Shares;
use harden_projections::{wake, Follower, FollowerConfig, ReadModels};

use crate::settings::Settings;

/// Which listeners `harden serve` runs. The Backend can be deployed privately behind the Proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Surfaces {
    #[default]
    Both,
    Backend,
    Proxy,
}

struct Listener {
    listener: TcpListener,
    router: Router,
    /// Serve HTTPS with this instead of HTTP.
    tls: Option<TlsAcceptor>,
}

pub struct Application {
    backend: Option<Listener>,
    proxy: Option<Listener>,
    metrics: Option<Listener>,
    followers: Vec<Background>,
    /// Written once more at shutdown, so a clean stop loses no "last used" time.
    key_usage: Option<(KeyUsage, PgPool)>,
    /// How long a shutdown waits for requests in flight.
    shutdown_grace: Duration,
}

/// A background task (follower, relay) that ends with the application that started it, even when
/// the application is dropped rather than shut down.
struct Background(JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes, now and then, the objects of deleted files that the store did not take at deletion
/// (it was down). Every instance may run it: removing an object twice is harmless, and the File
/// aggregate records the removal once.
/// Writes API keys' batched `last_used_at` times every `every`.
async fn flush_key_usage(usage: KeyUsage, pool: PgPool, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = usage.flush(&pool).await {
            tracing::warn!(error = %e, "could not write API key use times; they are kept for the next try");
        }
    }
}

async fn reap_deleted_objects(harden: Arc<Harden>, files: Files, every: Duration, policy: NetworkPolicy) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match files.pending_removals(100).await {
            Ok(pending) if pending.is_empty() => {}
            Ok(pending) => {
                let ids = pending.into_iter().map(|p| p.file_id).collect();
                let removed = harden.remove_deleted_objects(ids, &policy).await;
                tracing::debug!(removed, "file reaper pass");
            }
            Err(e) => tracing::warn!(error = %e, "the file reaper could not read its queue"),
        }
    }
}

/// Connects to the configured database, creating it if missing, and migrates it.
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<PgPool> {
    let pool = db::connect(&settings.db_config()).await?;
    db::migrate(&pool).await?;
    Ok(pool)
}

impl Application {
    pub async fn build(settings: &Settings, surfaces: Surfaces) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let trusted_proxies = Arc::new(
            TrustedProxies::parse(&settings.trusted_proxies)
                .map_err(|e| anyhow::anyhow!("HARDEN_TRUSTED_PROXIES: {e}"))?,
        );
        let edge = |surface| Edge {
            surface,
            limits: settings.limits(),
            metrics: metrics.clone(),
            anonymous_rate: settings.anonymous_rate(),
            clients: trusted_proxies.clone(),
        };
        let mut app = Application {
            backend: None,
            proxy: None,
            metrics: None,
            followers: Vec::new(),
            key_usage: None,
            shutdown_grace: Duration::from_secs(settings.shutdown_grace_secs),
        };
        if surfaces != Surfaces::Proxy {
            let pool = connect_and_migrate(settings).await?;
            let master_key =
                bootstrap::master_key(settings.master_key.as_ref(), settings.is_production(), &settings.data_dir)?;
            let harden = Arc::new(
                Harden::new(pool.clone(), &master_key)
                    .with_restore_ttl(Duration::from_secs(settings.recovery_restore_ttl_secs))
                    .with_auth_cache(Duration::from_millis(settings.auth_cache_ms)),
            );
            let admin = bootstrap::ensure_global_admin(&harden, &settings.data_dir).await?;

            // One LISTEN connection wakes every follower and the relay, and drops cached principals when
            // any instance revokes.
            let wake = wake::spawn_with(pool.clone(), Some(harden.wakeup().credentials().clone()));
            let (read_models, followers) = start_read_models(&pool, settings, &wake).await?;
            app.followers.extend(followers.into_iter().map(Background));
            let mut watched: Vec<String> = read_models.names().into_iter().map(str::to_owned).collect();
            if settings.nats_relay {
                app.followers.push(Background(tokio::spawn(relay(&pool, settings, wake)?.run())));
                watched.push(harden_nats::relay::NAME.to_owned());
            }
            metrics.watch_event_store(pool.clone(), watched, harden.wakeup());
            // A fresh installation answers GET /users/me for its global admin from the first request.
            if let bootstrap::GlobalAdmin::Created(_, committed) = admin {
                read_models.wait_for(committed.position).await;
            }

            harden_commands::install_crypto_provider();
            let passwords = Passwords::new(
                KdfParams { m_kib: settings.argon2_m_kib, t: settings.argon2_t, p: settings.argon2_p },
                settings.argon2_memory_budget_mib,
            )?;
            let mailer = settings
                .smtp_url
                .as_ref()
                .map(|url| Mailer::new(secrecy::ExposeSecret::expose_secret(url), &settings.smtp_from))
                .transpose()?;
            let stripe = settings.stripe().map(Stripe::new).transpose()?;
            let public_url = if settings.public_url.is_empty() {
                format!("http://{}", settings.proxy_addr)
            } else {
                settings.public_url.clone()
            };
            let onboarding = Onboarding::new(
                harden.clone(),
                passwords,
                mailer,
                stripe,
                OnboardingConfig { token_ttl: Duration::from_secs(settings.verification_token_ttl_secs), public_url },
            );
            // The dummy password hash is made now, so no sign-in pays for it.
            onboarding.warm_up().await?;
            let storage_policy = settings.storage_policy()?;
            let files = Files::new(pool.clone());
            app.followers.push(Background(tokio::spawn(reap_deleted_objects(
                harden.clone(),
                files.clone(),
                Duration::from_millis(settings.file_reaper_interval_ms.max(10)),
                storage_policy.clone(),
            ))));
            let cloud_auth = match settings.cloud_jwt()? {
                None => None,
                Some(config) => {
                    let secret = settings.clerk_webhook_secret.as_ref().map(ExposeSecret::expose_secret);
                    let auth = CloudAuth::new(config, secret).map_err(|e| anyhow::anyhow!("Cloud API: {e}"))?;
                    Some(Arc::new(auth))
                }
            };
            let key_usage = KeyUsage::default();
            app.key_usage = Some((key_usage.clone(), pool.clone()));
            app.followers.push(Background(tokio::spawn(flush_key_usage(
                key_usage.clone(),
                pool.clone(),
                Duration::from_millis(settings.api_key_usage_flush_ms.max(10)),
            ))));
            let state = AppState {
                cloud: Cloud::new(pool.clone()),
                cloud_auth,
                clock: settings.clock.clone(),
                key_usage,
                follower_stall: Duration::from_secs(settings.follower_stall_secs),
                onboarding: Arc::new(onboarding),
                trusted_proxies: trusted_proxies.clone(),
                storage_policy,
                harden,
                directory: Directory::new(pool.clone()),
                kv: Kv::new(pool.clone()),
                files,
                shares: Shares::new(pool.clone()),
                recovery: RecoveryShares::new(pool.clone()),
                audit: Audit::new(pool),
                read_models,
            };
            app.backend = Some(Listener {
                listener: bind(settings.backend_addr, "backend").await?,
                router: harden_api::layers::cors(
                    harden_api::backend::router(state, &edge("backend")),
                    &settings.cors_origins(),
                )
                .map_err(|e| anyhow::anyhow!("HARDEN_CORS_ALLOWED_ORIGINS: {e}"))?,
                tls: None,
            });
        }
        if surfaces != Surfaces::Backend {
            // With the Backend in this process and no other named, the Proxy calls its router
            // directly (no loopback HTTP); its streamed requests still use the listener.
            let local = match (&settings.proxy_backend_url, &app.backend) {
                (url, Some(backend)) if url.is_empty() => Some(backend.router.clone()),
                _ => None,
            };
            let backend_url = match (&settings.proxy_backend_url, &app.backend) {
                (url, _) if !url.is_empty() => url.clone(),
                (_, Some(backend)) => format!("http://{}", backend.listener.local_addr()?),
                (_, None) => format!("http://{}", settings.backend_addr),
            };
            let params = KdfParams { m_kib: settings.argon2_m_kib, t: settings.argon2_t, p: settings.argon2_p };
            let unlocker = Unlocker::new(
                params,
                Duration::from_secs(settings.unlock_cache_seconds),
                settings.argon2_memory_budget_mib,
            )?;
            metrics.watch_unlocks(unlocker.counts());
            let backend = Backend::new(&backend_url)?;
            let backend = match local {
                Some(router) => {
                    backend.in_process(Arc::new(harden_api::backend::in_process::LocalBackend::new(router)))
                }
                None => backend,
            };
            let state = ProxyState {
                vault: harden_api::proxy::Vault { backend, unlocker: Arc::new(unlocker) },
                min_secret_chars: settings.min_user_secret_chars,
                max_body_bytes: settings.max_body_bytes,
                request_timeout: settings.limits().request_timeout,
                ui_session_ttl: Duration::from_secs(settings.ui_session_secs),
                ui_cloud: settings.cloud_jwt_issuer.is_some(),
            };
            let router =
                harden_api::layers::cors(harden_api::proxy::router(state, &edge("proxy")), &settings.cors_origins())
                    .map_err(|e| anyhow::anyhow!("HARDEN_CORS_ALLOWED_ORIGINS: {e}"))?;
            let tls = settings.tls()?.map(|(cert, key)| crate::tls::acceptor(cert, key)).transpose()?;
            app.proxy = Some(Listener { listener: bind(settings.proxy_addr, "proxy").await?, router, tls });
        }
        if let Some(addr) = settings.metrics_addr {
            app.metrics =
                Some(Listener { listener: bind(addr, "metrics").await?, router: metrics.router(), tls: None });
        }
        Ok(app)
    }

    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().and_then(|l| l.listener.local_addr().ok()).map(|a| a.port())
    }

    pub fn backend_port(&self) -> Option<u16> {
        self.backend.as_ref().and_then(|l| l.listener.local_addr().ok()).map(|a| a.port())
    }

    pub fn proxy_port(&self) -> Option<u16> {
        self.proxy.as_ref().and_then(|l| l.listener.local_addr().ok()).map(|a| a.port())
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut servers = Vec::new();
        for (name, listener) in [("backend", self.backend), ("proxy", self.proxy), ("metrics", self.metrics)] {
            let Some(Listener { listener, router, tls }) = listener else { continue };
            tracing::info!(surface = name, addr = %listener.local_addr()?, https = tls.is_some(), "listening");
            let mut stop = stop_tx.subscribe();
            let stopped = async move {
                let _ = stop.recv().await;
            };
            servers.push(match tls {
                None => tokio::spawn(serve(listener, router, stopped)),
                Some(acceptor) => {
                    // `tap_io` only makes axum hand the peer address (ConnectInfo) to the handlers.
                    let listener = TlsListener::new(listener, acceptor)?.tap_io(|_| {});
                    tokio::spawn(serve(listener, router, stopped))
                }
            });
        }
        shutdown.await;
        tracing::info!(grace_secs = self.shutdown_grace.as_secs(), "shutting down: finishing requests in flight");
        let _ = stop_tx.send(());
        let finished = tokio::time::timeout(self.shutdown_grace, async {
            for server in servers {
                server.await.context("server task failed")??;
            }
            anyhow::Ok(())
        })
        .await;
        match finished {
            Ok(result) => result?,
            Err(_) => tracing::warn!("requests still in flight after the shutdown grace period were dropped"),
        }
        if let Some((usage, pool)) = &self.key_usage {
            if let Err(e) = usage.flush(pool).await {
                tracing::warn!(error = %e, "could not write the last API key use times");
            }
        }
        drop(self.followers);
        Ok(())
    }
}

/// Serves `router` on `listener` until `stopped`, then finishes the requests in flight.
async fn serve<L>(
    listener: L,
    router: Router,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    for<'a> std::net::SocketAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(stopped)
        .await
}

/// Starts the follower of every read model: one task, one transaction per batch for all of them.
/// Requests wait on their positions for read-your-writes.
async fn start_read_models(
    pool: &PgPool,
    settings: &Settings,
    wake: &tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<(ReadModels, Vec<JoinHandle<()>>)> {
    let config = FollowerConfig { poll_interval: settings.follower_poll(), ..FollowerConfig::default() };
    let projectors = replay::catalog().into_iter().map(|projection| projection.projector).collect();
    let follower = Follower::group(pool.clone(), projectors, config, wake.clone());
    follower.register().await?;
    let positions = follower.positions();
    Ok((ReadModels::new(positions, settings.read_model_wait()), vec![tokio::spawn(follower.run())]))
}

fn relay(pool: &PgPool, settings: &Settings, wake: tokio::sync::watch::Receiver<u64>) -> anyhow::Result<Relay> {
    let config = RelayConfig {
        nats_url: settings.nats_url.clone(),
        stream: settings.nats_stream.clone(),
        subject_prefix: settings.nats_subject_prefix.clone(),
        batch_size: 500,
        poll_interval: settings.follower_poll(),
        replicas: settings.nats_stream_replicas,
    };
    let connect = db::connect_options(&settings.db_config())?;
    Ok(Relay::new(pool.clone(), connect, config, wake))
}

async fn bind(addr: std::net::SocketAddr, surface: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("Failed to bind the {surface} listener to {addr}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
