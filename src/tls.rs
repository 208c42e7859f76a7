//! HTTPS for the Proxy with rustls, when `HARDEN_TLS_CERT_FILE` and `HARDEN_TLS_KEY_FILE` are set.
//! The key exchange offers the hybrid post-quantum X25519MLKEM768 first ([`X25519_MLKEM768`]).
//!
//! Handshakes run in their own tasks, each bounded in time, so a client that opens a connection and
//! never finishes its handshake holds nothing but its own task; finished connections are handed to
//! axum through [`TlsListener`], which is what graceful shutdown stops accepting from.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret, SupportedKxGroup};
use tokio_rustls::rustls::{self, NamedGroup, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A handshake not finished within this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 1024;

/// Reads the certificate chain and key, and builds the server configuration (TLS 1.2 and 1.3,
/// HTTP/1.1 by ALPN). Errors name the file at fault.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs =
        CertificateDer::pem_file_iter(cert_file).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).with_context(
            || format!("HARDEN_TLS_CERT_FILE: cannot read a PEM certificate chain from {}", cert_file.display()),
        )?;
    anyhow::ensure!(!certs.is_empty(), "HARDEN_TLS_CERT_FILE: no certificate in {}", cert_file.display());
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("HARDEN_TLS_KEY_FILE: cannot read a PEM private key from {}", key_file.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("HARDEN_TLS_CERT_FILE and HARDEN_TLS_KEY_FILE do not make a usable certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections whose TLS handshake has finished.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(Self { ready, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(tcp: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended (it only does when aborted): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The hybrid post-quantum key exchange X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem, codepoint
/// 0x11ec), offered first: a recorded session cannot be decrypted later by breaking X25519 alone,
/// so a user secret sent in a header stays secret against a recorder with a quantum computer
/// later. Shares are `ML-KEM-768 encapsulation key (1184) ‖ X25519 public key (32)` from the
/// client and `ML-KEM-768 ciphertext (1088) ‖ X25519 public key (32)` from the server; the shared
/// secret is `ML-KEM shared secret (32) ‖ X25519 shared secret (32)`. TLS 1.3 only. Built from the
/// RustCrypto `ml-kem` and `x25519-dalek` crates harden already uses, beside ring's classical groups.
pub static X25519_MLKEM768: &dyn SupportedKxGroup = &X25519MlKem768;

const MLKEM_EK_LEN: usize = 1184;
const MLKEM_CT_LEN: usize = 1088;
const X25519_LEN: usize = 32;

#[derive(Debug)]
struct X25519MlKem768;

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    bytes
}

fn invalid_share() -> rustls::Error {
    rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::InvalidKeyShare)
}

/// X25519 with the peer's public key, refusing a low-order point (an all-zero secret).
fn x25519_shared(secret: &x25519_dalek::StaticSecret, peer: &[u8]) -> Result<[u8; 32], rustls::Error> {
    let peer: [u8; X25519_LEN] = peer.try_into().map_err(|_| invalid_share())?;
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
    if !shared.was_contributory() {
        return Err(invalid_share());
    }
    Ok(*shared.as_bytes())
}

impl SupportedKxGroup for X25519MlKem768 {
    /// The client's side: a fresh ML-KEM key pair and X25519 secret.
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        use ml_kem::kem::KeyExport;
        let mlkem = ml_kem::ml_kem_768::DecapsulationKey::from_seed(ml_kem::array::Array::from(random::<64>()));
        let x25519 = x25519_dalek::StaticSecret::from(random::<32>());
        let mut pub_key = mlkem.encapsulation_key().to_bytes().to_vec();
        pub_key.extend_from_slice(x25519_dalek::PublicKey::from(&x25519).as_bytes());
        Ok(Box::new(ClientShare { mlkem, x25519, pub_key }))
    }

    /// The server's side: encapsulate to the client's ML-KEM key, and X25519 with its public key.
    fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, rustls::Error> {
        if client_share.len() != MLKEM_EK_LEN + X25519_LEN {
            return Err(invalid_share());
        }
        let (ek, peer_x25519) = client_share.split_at(MLKEM_EK_LEN);
        let ek: [u8; MLKEM_EK_LEN] = ek.try_into().map_err(|_| invalid_share())?;
        let ek =
            ml_kem::ml_kem_768::EncapsulationKey::new(&ml_kem::array::Array::from(ek)).map_err(|_| invalid_share())?;
        let (ct, ss_mlkem) = ek.encapsulate_deterministic(&ml_kem::array::Array::from(random::<32>()));
        let x25519 = x25519_dalek::StaticSecret::from(random::<32>());
        let ss_x25519 = x25519_shared(&x25519, peer_x25519)?;
        let mut pub_key = ct.to_vec();
        pub_key.extend_from_slice(x25519_dalek::PublicKey::from(&x25519).as_bytes());
        let mut secret = ss_mlkem.to_vec();
        secret.extend_from_slice(&ss_x25519);
        Ok(CompletedKeyExchange { group: self.name(), pub_key, secret: SharedSecret::from(secret) })
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }

    fn usable_for_version(&self, version: rustls::ProtocolVersion) -> bool {
        version == rustls::ProtocolVersion::TLSv1_3
    }
}

/// A client's half of the exchange, waiting for the server's share.
struct ClientShare {
    mlkem: ml_kem::ml_kem_768::DecapsulationKey,
    x25519: x25519_dalek::StaticSecret,
    pub_key: Vec<u8>,
}

impl ActiveKeyExchange for ClientShare {
    fn complete(self: Box<Self>, server_share: &[u8]) -> Result<SharedSecret, rustls::Error> {
        use ml_kem::kem::Decapsulate;
        if server_share.len() != MLKEM_CT_LEN + X25519_LEN {
            return Err(invalid_share());
        }
        let (ct, peer_x25519) = server_share.split_at(MLKEM_CT_LEN);
        let ct: [u8; MLKEM_CT_LEN] = ct.try_into().map_err(|_| invalid_share())?;
        let ss_mlkem = self.mlkem.decapsulate(&ml_kem::array::Array::from(ct));
        let ss_x25519 = x25519_shared(&self.x25519, peer_x25519)?;
        let mut secret = ss_mlkem.to_vec();
        secret.extend_from_slice(&ss_x25519);
        Ok(SharedSecret::from(secret))
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

/// The TLS crypto provider: ring's, with X25519MLKEM768 first among its key exchange groups.
pub fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups.insert(0, X25519_MLKEM768);
    provider
}
