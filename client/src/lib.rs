//! harden's client library: the vault's crypto on the user's side of the wire, over a typed client
//! of the Backend's routes.
//!
//! Everything that needs the user secret, a private key, a data key or a plaintext happens here and
//! nowhere else: unlocking the sealed private keys ([`unlock`]), sealing and opening values bound
//! to their version, the owner-sealed data keys, wrapping to a recipient only through a verified
//! and pinned key bundle ([`pins`]), rotations that re-wrap to every open share ([`vault`]). The
//! Backend only ever receives ciphertext and wrapped keys ([`backend`], [`wire`]).
//!
//! Two programs use it: the Proxy (`harden serve`), whose handlers parse a request, call a flow and
//! render its answer, and the command-line client, which runs the same flows on the user's machine
//! against the Backend's routes through the public edge, so that not even the Proxy sees a secret.

pub mod audit;
pub mod backend;
pub mod body;
pub mod credential;
pub mod error;
pub mod files;
pub mod keys;
pub mod pins;
pub mod recovery;
pub mod unlock;
pub mod vault;
pub mod wire;

pub use backend::{Answer, Backend, Me};
pub use credential::ApiCredential;
pub use error::{Error, Result};
pub use unlock::{UnlockedKeys, Unlocker};
pub use vault::{Caller, Vault, Writer};

/// `N` bytes from the operating system's generator: keys, seeds, salts, nonces.
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    bytes
}
