//! Password hashing for org admins: Argon2id off the async threads, bounded in memory by a
//! semaphore (runs beyond the budget wait), and a dummy hash so that an unknown email costs a sign-in
//! exactly what a known one does.

use std::sync::Arc;

use rand::RngCore;
use tokio::sync::{OnceCell, Semaphore};
use zeroize::Zeroizing;

use harden_domain::crypto::KdfParams;
use harden_domain::password;

pub struct Passwords {
    params: KdfParams,
    /// Permits are MiB of Argon2id memory.
    memory: Arc<Semaphore>,
    budget_mib: u32,
    dummy: OnceCell<String>,
}

impl Passwords {
    pub fn new(params: KdfParams, budget_mib: u32) -> anyhow::Result<Self> {
        let params = params.checked().map_err(|e| anyhow::anyhow!("Argon2 settings: {e}"))?;
        anyhow::ensure!(budget_mib >= params.m_kib.div_ceil(1024), "the Argon2 memory budget is below one run");
        Ok(Self { params, memory: Arc::new(Semaphore::new(budget_mib as usize)), budget_mib, dummy: OnceCell::new() })
    }

    async fn run<T: Send + 'static>(&self, m_kib: u32, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let permit = self.memory.clone().acquire_many_owned(m_kib.div_ceil(1024).min(self.budget_mib)).await?;
        Ok(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await?)
    }

    /// A new PHC hash of `password` with a fresh salt and this server's parameters.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let password = Zeroizing::new(password.to_owned());
        let params = self.params;
        self.run(params.m_kib, move || password::hash(&password, salt, params))
            .await?
            .ok_or_else(|| anyhow::anyhow!("password hashing failed"))
    }

    async fn dummy(&self) -> anyhow::Result<&String> {
        self.dummy
            .get_or_try_init(|| async {
                let mut random = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut random);
                self.hash(&hex::encode(random)).await
            })
            .await
    }

    /// Makes the dummy hash now (at start-up), so that the first unknown-email sign-in does not
    /// take longer than a known one.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        self.dummy().await.map(|_| ())
    }

    /// Whether `password` matches `phc`; with no hash (an unknown account) it checks against a
    /// dummy hash of this server's parameters and answers false, in the same time.
    pub async fn verify(&self, phc: Option<&str>, password: &str) -> anyhow::Result<bool> {
        let dummy = self.dummy().await?;
        let known = phc.is_some();
        let phc = phc.unwrap_or(dummy).to_owned();
        let m_kib = password::params_of(&phc).map_or(self.params.m_kib, |p| p.m_kib);
        let password = Zeroizing::new(password.to_owned());
        let matched = self.run(m_kib, move || password::verify(&phc, &password)).await?;
        Ok(known && matched)
    }
}
