//! Key bundles: a user's public keys, self-signed with two signature schemes, so that nobody who
//! serves them (the Backend, its database) can substitute keys of its own; and pins, the bundles an
//! owner has encrypted to before, sealed under the owner's keys so the server can hide them but not
//! forge them.
//!
//! # Formats
//! - **bundle**: `body ‖ Ed25519 signature(64) ‖ ML-DSA-65 signature(3309)`, with
//!   `body = 1 ‖ org(16) ‖ user(16) ‖ X25519(32) ‖ ML-KEM-768(1184) ‖ Ed25519(32) ‖ ML-DSA-65(1952)`.
//!   Both signatures are over `"harden/v2/key-bundle" ‖ 0 ‖ body` (ML-DSA-65 with the context
//!   string `harden/v2/key-bundle`, deterministic); both must verify. The signing keys are derived
//!   from the user's private keys (`SHA3-256("harden/v2/ed25519-seed" ‖ 0 ‖ x25519 ‖ ML-KEM seed)` and
//!   the same with `ml-dsa-65-seed`), so they need no storage of their own and change with the keys.
//! - **fingerprint**: `SHA3-256("harden/v2/fingerprint" ‖ 0 ‖ body)`, hex, shown in groups of four;
//!   for keys published without a bundle, `SHA3-256("harden/v2/unverified" ‖ 0 ‖ X25519 ‖ ML-KEM)`.
//! - **pins**: `1 ‖ nonce(12) ‖ AES-256-GCM(K_pins, JSON {user id: fingerprint}, AAD = "harden/v2/pins" ‖ 0 ‖ owner) ‖ tag`,
//!   `K_pins = SHA3-256("harden/v2/pins-key" ‖ 0 ‖ x25519 ‖ ML-KEM seed)`.

use std::collections::BTreeMap;

use ml_dsa::{MlDsa65, Signature as MlDsaSignature, SigningKey as MlDsaSigningKey, VerifyingKey as MlDsaVerifyingKey};
use sha3::{Digest, Sha3_256};
use thiserror::Error;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::{open_with, seal_with, PrivateKeys, PublicKeys, MLKEM_PUBLIC_LEN, NONCE_LEN, X25519_LEN};

pub const BUNDLE_FORMAT: u8 = 1;
pub const ED25519_PUBLIC_LEN: usize = 32;
pub const ED25519_SIGNATURE_LEN: usize = 64;
pub const MLDSA65_PUBLIC_LEN: usize = 1952;
pub const MLDSA65_SIGNATURE_LEN: usize = 3309;
pub const BODY_LEN: usize = 1 + 16 + 16 + X25519_LEN + MLKEM_PUBLIC_LEN + ED25519_PUBLIC_LEN + MLDSA65_PUBLIC_LEN;
pub const BUNDLE_LEN: usize = BODY_LEN + ED25519_SIGNATURE_LEN + MLDSA65_SIGNATURE_LEN;
const LABEL: &[u8] = b"harden/v2/key-bundle";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleError {
    #[error("the key bundle is malformed")]
    Malformed,
    #[error("the key bundle is not for this user of this org")]
    WrongOwner,
    #[error("the key bundle's signatures do not verify")]
    BadSignature,
    #[error("the pins do not open with this user's keys")]
    Pins,
}

fn seed(keys: &PrivateKeys, label: &[u8]) -> Zeroizing<[u8; 32]> {
    let (x25519, mlkem) = keys.seeds();
    let mut hasher = Sha3_256::new();
    hasher.update(label);
    hasher.update([0]);
    hasher.update(x25519.as_slice());
    hasher.update(mlkem.as_slice());
    Zeroizing::new(hasher.finalize().into())
}

fn signing_keys(keys: &PrivateKeys) -> (ed25519_dalek::SigningKey, MlDsaSigningKey<MlDsa65>) {
    let ed = ed25519_dalek::SigningKey::from_bytes(&seed(keys, b"harden/v2/ed25519-seed"));
    let ml = MlDsaSigningKey::<MlDsa65>::from_seed(&(*seed(keys, b"harden/v2/ml-dsa-65-seed")).into());
    (ed, ml)
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(LABEL.len() + 1 + body.len());
    message.extend_from_slice(LABEL);
    message.push(0);
    message.extend_from_slice(body);
    message
}

/// A verified bundle: whose it is, the keys to encrypt to, and its fingerprint.
#[derive(Clone)]
pub struct KeyBundle {
    pub org: Uuid,
    pub user: Uuid,
    keys: PublicKeys,
    fingerprint: String,
}

impl KeyBundle {
    /// The bundle of `keys` for `user` of `org`, self-signed with both signing keys.
    pub fn sign(keys: &PrivateKeys, org: Uuid, user: Uuid) -> Vec<u8> {
        use ml_dsa::signature::Keypair;
        let (ed, ml) = signing_keys(keys);
        let public = keys.public_keys();
        let mut body = Vec::with_capacity(BUNDLE_LEN);
        body.push(BUNDLE_FORMAT);
        body.extend_from_slice(org.as_bytes());
        body.extend_from_slice(user.as_bytes());
        body.extend_from_slice(&public.ecc_bytes());
        body.extend_from_slice(&public.kyber_bytes());
        body.extend_from_slice(ed.verifying_key().as_bytes());
        body.extend_from_slice(&ml.verifying_key().encode());
        let message = signed_message(&body);
        let ed_sig = ed25519_dalek::Signer::sign(&ed, &message).to_bytes();
        let ml_sig = ml.expanded_key().sign_deterministic(&message, LABEL).expect("the context is short").encode();
        body.extend_from_slice(&ed_sig);
        body.extend_from_slice(&ml_sig);
        body
    }

    /// Checks both signatures and that the bundle is `user`'s of `org`.
    pub fn verify(bytes: &[u8], org: Uuid, user: Uuid) -> Result<KeyBundle, BundleError> {
        if bytes.len() != BUNDLE_LEN || bytes[0] != BUNDLE_FORMAT {
            return Err(BundleError::Malformed);
        }
        let (body, sigs) = bytes.split_at(BODY_LEN);
        let (ed_sig, ml_sig) = sigs.split_at(ED25519_SIGNATURE_LEN);
        let mut at = 1;
        let mut take = |n: usize| {
            let part = &body[at..at + n];
            at += n;
            part
        };
        let (b_org, b_user) = (take(16), take(16));
        let (x25519, mlkem, ed_pub, ml_pub) =
            (take(X25519_LEN), take(MLKEM_PUBLIC_LEN), take(32), take(MLDSA65_PUBLIC_LEN));
        if b_org != org.as_bytes() || b_user != user.as_bytes() {
            return Err(BundleError::WrongOwner);
        }
        let message = signed_message(body);
        let ed_pub: [u8; 32] = ed_pub.try_into().map_err(|_| BundleError::Malformed)?;
        let ed = ed25519_dalek::VerifyingKey::from_bytes(&ed_pub).map_err(|_| BundleError::Malformed)?;
        let ed_sig = ed25519_dalek::Signature::from_slice(ed_sig).map_err(|_| BundleError::Malformed)?;
        ed.verify_strict(&message, &ed_sig).map_err(|_| BundleError::BadSignature)?;
        let ml_pub = ml_dsa::EncodedVerifyingKey::<MlDsa65>::try_from(ml_pub).map_err(|_| BundleError::Malformed)?;
        let ml = MlDsaVerifyingKey::<MlDsa65>::decode(&ml_pub);
        let ml_sig = ml_dsa::EncodedSignature::<MlDsa65>::try_from(ml_sig).map_err(|_| BundleError::Malformed)?;
        let ml_sig = MlDsaSignature::<MlDsa65>::decode(&ml_sig).ok_or(BundleError::Malformed)?;
        if !ml.verify_with_context(&message, LABEL, &ml_sig) {
            return Err(BundleError::BadSignature);
        }
        let keys = PublicKeys::from_bytes(x25519, mlkem).map_err(|_| BundleError::Malformed)?;
        Ok(KeyBundle { org, user, keys, fingerprint: fingerprint(b"harden/v2/fingerprint", &[body]) })
    }

    /// The keys to encrypt to.
    pub fn keys(&self) -> &PublicKeys {
        &self.keys
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn fingerprint(label: &[u8], parts: &[&[u8]]) -> String {
    let mut hasher = Sha3_256::new();
    hasher.update(label);
    hasher.update([0]);
    for part in parts {
        hasher.update(part);
    }
    let hex = hex::encode(hasher.finalize());
    hex.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("hex")).collect::<Vec<_>>().join(" ")
}

/// The fingerprint of keys published without a bundle (nothing vouches for them).
pub fn unverified_fingerprint(keys: &PublicKeys) -> String {
    fingerprint(b"harden/v2/unverified", &[&keys.ecc_bytes(), &keys.kyber_bytes()])
}

/// The bundles an owner has encrypted to: user id → fingerprint.
pub type Pins = BTreeMap<Uuid, String>;

fn pins_key(keys: &PrivateKeys) -> Zeroizing<[u8; 32]> {
    seed(keys, b"harden/v2/pins-key")
}

fn pins_aad(owner: Uuid) -> Vec<u8> {
    let mut aad = b"harden/v2/pins\0".to_vec();
    aad.extend_from_slice(owner.as_bytes());
    aad
}

pub fn seal_pins(keys: &PrivateKeys, owner: Uuid, pins: &Pins, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let json = serde_json::to_vec(pins).expect("pins serialize");
    let mut blob = vec![1u8];
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&seal_with(&pins_key(keys), &nonce, &pins_aad(owner), &json));
    blob
}

pub fn open_pins(keys: &PrivateKeys, owner: Uuid, blob: &[u8]) -> Result<Pins, BundleError> {
    if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != 1 {
        return Err(BundleError::Pins);
    }
    let json = open_with(&pins_key(keys), &blob[1..1 + NONCE_LEN], &pins_aad(owner), &blob[1 + NONCE_LEN..])
        .map_err(|_| BundleError::Pins)?;
    serde_json::from_slice(&json).map_err(|_| BundleError::Pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> PrivateKeys {
        PrivateKeys::from_seeds([n; 32], [n.wrapping_add(1); 64])
    }

    #[test]
    fn a_bundle_verifies_only_for_its_owner_and_with_both_signatures() {
        let (org, user) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let bundle = KeyBundle::sign(&keys(7), org, user);
        assert_eq!(bundle.len(), BUNDLE_LEN);
        let verified = KeyBundle::verify(&bundle, org, user).unwrap();
        assert_eq!(verified.keys().ecc_bytes(), keys(7).public_keys().ecc_bytes());
        assert_eq!(KeyBundle::verify(&bundle, org, Uuid::from_u128(3)).err(), Some(BundleError::WrongOwner));
        assert_eq!(KeyBundle::verify(&bundle, Uuid::from_u128(9), user).err(), Some(BundleError::WrongOwner));
        // Any flipped byte of the keys or of either signature is refused.
        for at in [40, 100, BODY_LEN - 5, BODY_LEN + 3, BUNDLE_LEN - 7] {
            let mut bad = bundle.clone();
            bad[at] ^= 1;
            assert!(KeyBundle::verify(&bad, org, user).is_err(), "byte {at}");
        }
        // Another user's keys signed as this user: valid, but another fingerprint.
        let other = KeyBundle::verify(&KeyBundle::sign(&keys(8), org, user), org, user).unwrap();
        assert_ne!(other.fingerprint(), verified.fingerprint());
        assert_eq!(verified.fingerprint().len(), 64 + 15);
    }

    #[test]
    fn pins_open_only_with_the_owners_keys() {
        let owner = Uuid::from_u128(5);
        let pins = Pins::from([(Uuid::from_u128(6), "abcd".to_owned())]);
        let blob = seal_pins(&keys(1), owner, &pins, [3; 12]);
        assert_eq!(open_pins(&keys(1), owner, &blob).unwrap(), pins);
        assert!(open_pins(&keys(2), owner, &blob).is_err());
        assert!(open_pins(&keys(1), Uuid::from_u128(9), &blob).is_err());
    }
}
