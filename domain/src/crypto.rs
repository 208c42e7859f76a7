//! The envelope crypto, as pure functions. Randomness (nonces, salts, key seeds, encapsulation
//! randomness) is an argument, never drawn here: the Proxy draws it, and tests can fix it.
//!
//! # Formats (every blob starts with a format version byte)
//! - **value**: `2 ‖ nonce(12) ‖ AES-256-GCM(data key, plaintext, AAD = record context ‖ version ‖
//!   epoch) ‖ tag(16)`: bound to the version it was written as and the key epoch it is under, so an
//!   old ciphertext written back as a newer version fails to open. Format 1 (written before
//!   versions were bound) has the record context alone as AAD and still opens, flagged as unbound.
//!   The Backend derives plaintext lengths from either (see [`crate::envelope`]).
//! - **owner-sealed wrap**: the owner's own wrap of a record's data key carries a tag only a holder
//!   of the owner's private keys can make, `encryptedAesKeyEccB64 = 2 ‖ ct_X(32) ‖ tag(32)` with
//!   `tag = SHA3-256("harden/v2/owner-seal" ‖ 0 ‖ K_seal ‖ record context ‖ epoch ‖ ct_X ‖ kyber part)`
//!   and `K_seal = SHA3-256("harden/v2/owner-seal-key" ‖ 0 ‖ x25519 secret ‖ ML-KEM seed)`. A wrap is
//!   made from public keys alone, so anyone can plant one; the Proxy reuses a record's key only
//!   when its wrap carries a valid tag. A file's owner wrap is made the same way over the file's
//!   content context at epoch [`FILE_EPOCH`] (0), so a reader learns whether its owner sealed it.
//! - **data key wrap** (to one user, the X-Wing hybrid KEM over X25519 and ML-KEM-768):
//!   `encryptedAesKeyEccB64 = 1 ‖ ct_X(32)` and
//!   `encryptedAesKeyKyberB64 = 1 ‖ ct_M(1088) ‖ nonce(12) ‖ AES-256-GCM(ss, data key) ‖ tag(16)`, where
//!   `ss = SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ "\.//^\")` is X-Wing's combiner (draft-06): the data key
//!   stays safe while either X25519 or ML-KEM holds.
//! - **sealed private key** (one blob per key, both under one key-encryption key):
//!   `1 ‖ m_kib(u32 BE) ‖ t(u32 BE) ‖ p(u32 BE) ‖ salt(16) ‖ nonce(12) ‖ AES-256-GCM(KEK, key) ‖ tag(16)`,
//!   `KEK = Argon2id(user secret, salt, m, t, p)`. The parameters travel with the blob so they can be
//!   raised later; both blobs of a user share salt and parameters, so unlocking costs one Argon2id run.
//! - **seal proof**: `SHA3-256("harden/v1/seal-proof" ‖ 0 ‖ user ‖ salt ‖ KEK)`, shown to the Backend
//!   (which keeps only a hash of it) to prove the current secret before a re-seal replaces the keys.
//!
//! Every AEAD binds its context as associated data: a value to its org, owner and record name; a wrap
//! to its recipient and record; a sealed key to its owner and which key it is. A blob moved anywhere
//! else fails to open. Secret material is zeroized on drop.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use ml_kem::array::Array;
use ml_kem::kem::{Decapsulate, KeyExport};
use ml_kem::ml_kem_768;
use sha3::{Digest, Sha3_256};
use thiserror::Error;
use uuid::Uuid;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

pub const FORMAT_V1: u8 = 1;
/// Values bound to their version and epoch; owner wraps with an owner-seal tag.
pub const FORMAT_V2: u8 = 2;
pub const OWNER_TAG_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// The bytes [`seal_in_place`] writes in front of a plaintext (version ‖ nonce): a buffer read with
/// this much room before the plaintext (and [`TAG_LEN`] after it) is sealed without moving.
pub const IN_PLACE_HEADER_LEN: usize = 1 + NONCE_LEN;
pub const X25519_LEN: usize = 32;
pub const MLKEM_PUBLIC_LEN: usize = 1184;
pub const MLKEM_CIPHERTEXT_LEN: usize = 1088;
pub const MLKEM_SEED_LEN: usize = 64;
pub const SALT_LEN: usize = 16;
/// X-Wing's label, appended last in the combiner (draft-connolly-cfrg-xwing-kem-06).
pub const XWING_LABEL: &[u8; 6] = b"\\.//^\\";

/// Length of `encryptedAesKeyEccB64` (decoded).
pub const WRAP_ECC_LEN: usize = 1 + X25519_LEN;
/// Length of an owner-sealed `encryptedAesKeyEccB64` (decoded): the X25519 part and the tag.
pub const WRAP_ECC_SEALED_LEN: usize = WRAP_ECC_LEN + OWNER_TAG_LEN;
/// Length of `encryptedAesKeyKyberB64` (decoded).
pub const WRAP_KYBER_LEN: usize = 1 + MLKEM_CIPHERTEXT_LEN + NONCE_LEN + 32 + TAG_LEN;
const SEAL_HEADER_LEN: usize = 1 + 12 + SALT_LEN;

/// Every failure to open looks the same to the caller: which check failed is nobody's business.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    #[error("the ciphertext could not be opened")]
    Open,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("key derivation parameters outside the accepted range (m 19456 KiB to 1 GiB, t 2 to 16, p 1 to 16)")]
    WeakParameters,
}

/// A record's 256-bit AES data key, kept across its versions.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Where a value (or a wrap of its key) belongs: the associated data that binds it there.
#[derive(Clone, Copy, Debug)]
pub struct RecordContext<'a> {
    /// `kv` or `file`.
    pub kind: &'a str,
    pub org: Uuid,
    pub owner: Uuid,
    pub name: &'a [u8],
}

impl RecordContext<'_> {
    fn aad(&self, purpose: &str, recipient: Option<Uuid>) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + self.name.len());
        aad.extend_from_slice(b"harden/v1/");
        aad.extend_from_slice(purpose.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.kind.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.org.as_bytes());
        aad.extend_from_slice(self.owner.as_bytes());
        aad.extend_from_slice(recipient.unwrap_or_default().as_bytes());
        aad.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.name);
        aad
    }
}

fn aead(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

pub(crate) fn seal_with(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    aead(key)
        .encrypt(&Nonce::from(*nonce), Payload { msg: plaintext, aad })
        .expect("AES-GCM encrypts any length we use")
}

pub(crate) fn open_with(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed("nonce"))?;
    aead(key).decrypt(&nonce, Payload { msg: ciphertext, aad }).map(Zeroizing::new).map_err(|_| CryptoError::Open)
}

// ---------------------------------------------------------------------------------------------
// Values

/// Where a version of a record stands in its history: the version it is and the key epoch (the
/// version its data key began at) it is under. Versions count up across the record's lives, so an
/// epoch also names the life it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionAt {
    pub version: u64,
    pub epoch: u64,
}

impl VersionAt {
    fn bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.version.to_be_bytes());
        out[8..].copy_from_slice(&self.epoch.to_be_bytes());
        out
    }
}

fn value_aad(context: &RecordContext<'_>, at: VersionAt) -> Vec<u8> {
    let mut aad = context.aad("value", None);
    aad.extend_from_slice(&at.bytes());
    aad
}

/// A value of format 2: bound to `at` as well as to its record.
pub fn encrypt_value_at(
    key: &DataKey,
    nonce: [u8; NONCE_LEN],
    context: &RecordContext<'_>,
    at: VersionAt,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut blob = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    blob.push(FORMAT_V2);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&seal_with(key.expose(), &nonce, &value_aad(context, at), plaintext));
    blob
}

/// A value as it opens at `at`: the plaintext, and whether it was bound to `at` (format 2) or is a
/// format 1 value written before versions were bound (which opens at any version of its record).
pub fn decrypt_value_at(
    key: &DataKey,
    context: &RecordContext<'_>,
    at: VersionAt,
    blob: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, bool), CryptoError> {
    match blob.first() {
        Some(&FORMAT_V2) if blob.len() >= 1 + NONCE_LEN + TAG_LEN => {
            let plaintext =
                open_with(key.expose(), &blob[1..1 + NONCE_LEN], &value_aad(context, at), &blob[1 + NONCE_LEN..])?;
            Ok((plaintext, true))
        }
        _ => decrypt_value(key, context, blob).map(|plaintext| (plaintext, false)),
    }
}

pub fn encrypt_value(key: &DataKey, nonce: [u8; NONCE_LEN], context: &RecordContext<'_>, plaintext: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    blob.push(FORMAT_V1);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&seal_with(key.expose(), &nonce, &context.aad("value", None), plaintext));
    blob
}

pub fn decrypt_value(
    key: &DataKey,
    context: &RecordContext<'_>,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if blob.len() < 1 + NONCE_LEN + TAG_LEN || blob[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed("value ciphertext"));
    }
    open_with(key.expose(), &blob[1..1 + NONCE_LEN], &context.aad("value", None), &blob[1 + NONCE_LEN..])
}

// ---------------------------------------------------------------------------------------------
// Files: the value format, encrypted and decrypted in place so a file is in memory once

/// What a file's content is bound to: its encrypted name. The Backend assigns a file's id after
/// the Proxy encrypts, so the name's ciphertext (random per file) stands in for it: a content
/// moved under another file's record fails to open.
pub fn file_binding(encrypted_name: &[u8]) -> [u8; 32] {
    let mut hash = Sha3_256::new();
    hash.update(b"harden/v1/file-binding");
    hash.update([0u8]);
    hash.update(encrypted_name);
    hash.finalize().into()
}

/// Encrypts `buf[plaintext]` in place into the value format (version ‖ nonce ‖ ciphertext ‖ tag)
/// and answers where in `buf` the whole blob now is. The header goes in front of the plaintext
/// (which it overwrites only outside the range) and the tag after it; `buf` grows only if there is
/// no room.
pub fn seal_in_place(
    key: &DataKey,
    nonce: [u8; NONCE_LEN],
    context: &RecordContext<'_>,
    buf: &mut Vec<u8>,
    plaintext: std::ops::Range<usize>,
) -> std::ops::Range<usize> {
    use aes_gcm::aead::AeadInOut;
    const HEADER: usize = IN_PLACE_HEADER_LEN;
    let mut plaintext = plaintext;
    if plaintext.start < HEADER {
        let shift = HEADER - plaintext.start;
        buf.splice(0..0, std::iter::repeat_n(0u8, shift));
        plaintext = plaintext.start + shift..plaintext.end + shift;
    }
    let tag = aead(key.expose())
        .encrypt_inout_detached(&Nonce::from(nonce), &context.aad("value", None), (&mut buf[plaintext.clone()]).into())
        .expect("AES-GCM encrypts any length we use");
    let start = plaintext.start - HEADER;
    buf[start] = FORMAT_V1;
    buf[start + 1..plaintext.start].copy_from_slice(&nonce);
    let end = plaintext.end + TAG_LEN;
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[plaintext.end..end].copy_from_slice(&tag);
    start..end
}

/// Opens a blob of the value format in place: answers where in `blob` the plaintext is.
pub fn open_in_place(
    key: &DataKey,
    context: &RecordContext<'_>,
    blob: &mut [u8],
) -> Result<std::ops::Range<usize>, CryptoError> {
    use aes_gcm::aead::AeadInOut;
    const HEADER: usize = IN_PLACE_HEADER_LEN;
    if blob.len() < HEADER + TAG_LEN || blob[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed("file ciphertext"));
    }
    let nonce = Nonce::try_from(&blob[1..HEADER]).map_err(|_| CryptoError::Malformed("nonce"))?;
    let body_end = blob.len() - TAG_LEN;
    let tag = aes_gcm::Tag::try_from(&blob[body_end..]).map_err(|_| CryptoError::Malformed("tag"))?;
    aead(key.expose())
        .decrypt_inout_detached(&nonce, &context.aad("value", None), (&mut blob[HEADER..body_end]).into(), &tag)
        .map_err(|_| CryptoError::Open)?;
    Ok(HEADER..body_end)
}

// ---------------------------------------------------------------------------------------------
// User key pairs and the hybrid KEM

/// A user's public keys: X25519 (`publicKeyEccB64`) and ML-KEM-768 (`publicKeyKyberB64`).
#[derive(Clone)]
pub struct PublicKeys {
    x25519: X25519Public,
    mlkem: ml_kem_768::EncapsulationKey,
}

impl PublicKeys {
    pub fn from_bytes(ecc: &[u8], kyber: &[u8]) -> Result<Self, CryptoError> {
        let x25519: [u8; X25519_LEN] = ecc.try_into().map_err(|_| CryptoError::Malformed("X25519 public key"))?;
        let kyber: &[u8; MLKEM_PUBLIC_LEN] =
            kyber.try_into().map_err(|_| CryptoError::Malformed("ML-KEM public key"))?;
        let mlkem = ml_kem_768::EncapsulationKey::new(&Array::from(*kyber))
            .map_err(|_| CryptoError::Malformed("ML-KEM public key"))?;
        Ok(Self { x25519: X25519Public::from(x25519), mlkem })
    }

    pub fn ecc_bytes(&self) -> [u8; X25519_LEN] {
        self.x25519.to_bytes()
    }

    pub fn kyber_bytes(&self) -> Vec<u8> {
        self.mlkem.to_bytes().to_vec()
    }
}

/// A user's private keys: an X25519 secret and the 64-byte ML-KEM-768 seed `d ‖ z`.
pub struct PrivateKeys {
    x25519: StaticSecret,
    mlkem_seed: Zeroizing<[u8; MLKEM_SEED_LEN]>,
    mlkem: ml_kem_768::DecapsulationKey,
}

impl PrivateKeys {
    /// Both key pairs from their seeds (32 random bytes for X25519, 64 for ML-KEM).
    pub fn from_seeds(x25519: [u8; X25519_LEN], mlkem_seed: [u8; MLKEM_SEED_LEN]) -> Self {
        let mlkem = ml_kem_768::DecapsulationKey::from_seed(Array::from(mlkem_seed));
        Self { x25519: StaticSecret::from(x25519), mlkem_seed: Zeroizing::new(mlkem_seed), mlkem }
    }

    pub fn public_keys(&self) -> PublicKeys {
        PublicKeys { x25519: X25519Public::from(&self.x25519), mlkem: self.mlkem.encapsulation_key().clone() }
    }

    /// The seeds both key pairs come from (for recovery shares, which carry the keys themselves).
    pub fn seeds(&self) -> (Zeroizing<[u8; X25519_LEN]>, Zeroizing<[u8; MLKEM_SEED_LEN]>) {
        (Zeroizing::new(self.x25519.to_bytes()), self.mlkem_seed.clone())
    }
}

/// X-Wing's combiner.
pub fn xwing_combiner(ss_m: &[u8], ss_x: &[u8], ct_x: &[u8], pk_x: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut hasher = Sha3_256::new();
    hasher.update(ss_m);
    hasher.update(ss_x);
    hasher.update(ct_x);
    hasher.update(pk_x);
    hasher.update(XWING_LABEL);
    Zeroizing::new(hasher.finalize().into())
}

/// The X-Wing KEM's encapsulation to `pk` with the 64 bytes of randomness `eseed` (the first 32
/// for ML-KEM, the last 32 the ephemeral X25519 secret): `(ct_M, ct_X, shared secret)`.
pub fn encapsulate(pk: &PublicKeys, eseed: &[u8; 64]) -> (Vec<u8>, [u8; X25519_LEN], Zeroizing<[u8; 32]>) {
    let m = Zeroizing::new(<[u8; 32]>::try_from(&eseed[..32]).expect("32 bytes"));
    let mut ek_x: [u8; 32] = eseed[32..].try_into().expect("32 bytes");
    let (ct_m, mut ss_m) = pk.mlkem.encapsulate_deterministic(&Array::from(*m));
    let ephemeral = StaticSecret::from(ek_x);
    ek_x.zeroize();
    let ct_x = X25519Public::from(&ephemeral).to_bytes();
    let ss_x = ephemeral.diffie_hellman(&pk.x25519);
    let ss = xwing_combiner(&ss_m, ss_x.as_bytes(), &ct_x, pk.x25519.as_bytes());
    ss_m.zeroize();
    (ct_m.to_vec(), ct_x, ss)
}

/// X-Wing decapsulation with the user's private keys.
pub fn decapsulate(sk: &PrivateKeys, ct_m: &[u8], ct_x: &[u8; X25519_LEN]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let ct_m: &[u8; MLKEM_CIPHERTEXT_LEN] = ct_m.try_into().map_err(|_| CryptoError::Malformed("ML-KEM ciphertext"))?;
    let mut ss_m = sk.mlkem.decapsulate(&Array::from(*ct_m));
    let ss_x = sk.x25519.diffie_hellman(&X25519Public::from(*ct_x));
    let pk_x = X25519Public::from(&sk.x25519);
    let ss = xwing_combiner(&ss_m, ss_x.as_bytes(), ct_x, pk_x.as_bytes());
    ss_m.zeroize();
    Ok(ss)
}

/// Wraps a record's data key to one recipient: `(encryptedAesKeyEcc, encryptedAesKeyKyber)`.
pub fn wrap_data_key(
    recipient: &PublicKeys,
    recipient_id: Uuid,
    context: &RecordContext<'_>,
    key: &DataKey,
    eseed: &[u8; 64],
    nonce: [u8; NONCE_LEN],
) -> (Vec<u8>, Vec<u8>) {
    let (ct_m, ct_x, ss) = encapsulate(recipient, eseed);
    let mut ecc = Vec::with_capacity(WRAP_ECC_LEN);
    ecc.push(FORMAT_V1);
    ecc.extend_from_slice(&ct_x);
    let mut kyber = Vec::with_capacity(WRAP_KYBER_LEN);
    kyber.push(FORMAT_V1);
    kyber.extend_from_slice(&ct_m);
    kyber.extend_from_slice(&nonce);
    kyber.extend_from_slice(&seal_with(&ss, &nonce, &context.aad("wrap", Some(recipient_id)), key.expose()));
    (ecc, kyber)
}

pub fn unwrap_data_key(
    sk: &PrivateKeys,
    recipient_id: Uuid,
    context: &RecordContext<'_>,
    ecc: &[u8],
    kyber: &[u8],
) -> Result<DataKey, CryptoError> {
    let ecc_ok =
        matches!((ecc.len(), ecc.first()), (WRAP_ECC_LEN, Some(&FORMAT_V1)) | (WRAP_ECC_SEALED_LEN, Some(&FORMAT_V2)));
    if !ecc_ok || kyber.len() != WRAP_KYBER_LEN || kyber[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed("wrapped data key"));
    }
    // An owner-sealed wrap's tag is checked by [`owner_sealed`] where it matters (key reuse).
    let ct_x: &[u8; X25519_LEN] = ecc[1..WRAP_ECC_LEN].try_into().expect("checked length");
    let ct_m = &kyber[1..1 + MLKEM_CIPHERTEXT_LEN];
    let nonce = &kyber[1 + MLKEM_CIPHERTEXT_LEN..1 + MLKEM_CIPHERTEXT_LEN + NONCE_LEN];
    let ss = decapsulate(sk, ct_m, ct_x)?;
    let key = open_with(
        &ss,
        nonce,
        &context.aad("wrap", Some(recipient_id)),
        &kyber[1 + MLKEM_CIPHERTEXT_LEN + NONCE_LEN..],
    )?;
    let mut bytes: [u8; 32] = key.as_slice().try_into().map_err(|_| CryptoError::Open)?;
    let data_key = DataKey::from_bytes(bytes);
    bytes.zeroize();
    Ok(data_key)
}

// ---------------------------------------------------------------------------------------------
// Owner-sealed wraps: a record's key is reused only when its owner made the wrap

impl PrivateKeys {
    /// The key of the owner-seal tags, derived from both private keys: only their holder has it.
    fn owner_seal_key(&self) -> Zeroizing<[u8; 32]> {
        let (x25519, mlkem) = self.seeds();
        let mut hasher = Sha3_256::new();
        hasher.update(b"harden/v2/owner-seal-key\0");
        hasher.update(x25519.as_slice());
        hasher.update(mlkem.as_slice());
        Zeroizing::new(hasher.finalize().into())
    }
}

fn owner_tag(
    sk: &PrivateKeys,
    context: &RecordContext<'_>,
    epoch: u64,
    ct_x: &[u8],
    kyber: &[u8],
) -> [u8; OWNER_TAG_LEN] {
    let mut hasher = Sha3_256::new();
    hasher.update(b"harden/v2/owner-seal\0");
    hasher.update(sk.owner_seal_key().as_slice());
    hasher.update(context.aad("owner-seal", Some(context.owner)));
    hasher.update(epoch.to_be_bytes());
    hasher.update(ct_x);
    hasher.update(kyber);
    hasher.finalize().into()
}

/// The owner's own wrap of a record's data key for key epoch `epoch`, with its owner-seal tag:
/// `(encryptedAesKeyEcc = 2 ‖ ct_X ‖ tag, encryptedAesKeyKyber)`.
pub fn wrap_for_owner(
    owner: &PrivateKeys,
    context: &RecordContext<'_>,
    epoch: u64,
    key: &DataKey,
    eseed: &[u8; 64],
    nonce: [u8; NONCE_LEN],
) -> (Vec<u8>, Vec<u8>) {
    let (ecc, kyber) = wrap_data_key(&owner.public_keys(), context.owner, context, key, eseed, nonce);
    let tag = owner_tag(owner, context, epoch, &ecc[1..], &kyber);
    let mut sealed = Vec::with_capacity(WRAP_ECC_SEALED_LEN);
    sealed.push(FORMAT_V2);
    sealed.extend_from_slice(&ecc[1..]);
    sealed.extend_from_slice(&tag);
    (sealed, kyber)
}

/// The key epoch a file's owner-sealed wrap is made for: a file never changes and its data key is
/// never reused, so it has one epoch, 0 (a record's epochs start at 1).
pub const FILE_EPOCH: u64 = 0;

/// Whether the owner's wrap of a record's key for `epoch` was made by a holder of the owner's
/// private keys (it carries a valid owner-seal tag). Only such a key may be used again.
pub fn owner_sealed(owner: &PrivateKeys, context: &RecordContext<'_>, epoch: u64, ecc: &[u8], kyber: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    if ecc.len() != WRAP_ECC_SEALED_LEN || ecc[0] != FORMAT_V2 {
        return false;
    }
    let expected = owner_tag(owner, context, epoch, &ecc[1..WRAP_ECC_LEN], kyber);
    bool::from(expected.ct_eq(&ecc[WRAP_ECC_LEN..]))
}

// ---------------------------------------------------------------------------------------------
// Sealing private keys under the user secret

/// Argon2id parameters. Never below OWASP's minimum (m = 19 MiB, t = 2, p = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl KdfParams {
    pub const MINIMUM: KdfParams = KdfParams { m_kib: 19 * 1024, t: 2, p: 1 };
    pub const DEFAULT: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 1 };
    /// A ceiling, so a sealed blob cannot make an unlock cost arbitrarily much (a server may lower it).
    pub const MAXIMUM: KdfParams = KdfParams { m_kib: 1024 * 1024, t: 16, p: 16 };

    /// Whether a run with these parameters costs no more than one with `limit`'s.
    pub fn within(&self, limit: &KdfParams) -> bool {
        self.m_kib <= limit.m_kib && self.t <= limit.t && self.p <= limit.p
    }

    pub fn checked(self) -> Result<Self, CryptoError> {
        if self.m_kib < Self::MINIMUM.m_kib
            || self.t < Self::MINIMUM.t
            || self.p < Self::MINIMUM.p
            || self.p > Self::MAXIMUM.p
            || self.t > Self::MAXIMUM.t
            || self.m_kib > Self::MAXIMUM.m_kib
        {
            return Err(CryptoError::WeakParameters);
        }
        Ok(self)
    }
}

/// A server-side secret (an org's S3 secret key) sealed under a key derived from the master key:
/// `nonce ‖ AES-256-GCM(key, secret, AAD = context)`.
pub fn seal_server_secret(key: &[u8; 32], nonce: [u8; NONCE_LEN], context: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&seal_with(key, &nonce, context, secret));
    blob
}

pub fn open_server_secret(key: &[u8; 32], context: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("sealed secret"));
    }
    open_with(key, &blob[..NONCE_LEN], context, &blob[NONCE_LEN..])
}

/// The randomness of [`seal_to`]: the message key, the encapsulation seed, the wrap's and the
/// value's nonces.
pub type SealRandomness<'a> = (&'a [u8; 32], &'a [u8; 64], [u8; NONCE_LEN], [u8; NONCE_LEN]);

/// A small message (a share's alias) encrypted to one user: a fresh data key wrapped to them,
/// followed by the message under that key: `wrap_ecc ‖ wrap_kyber ‖ value`.
pub fn seal_to(
    recipient: &PublicKeys,
    recipient_id: Uuid,
    context: &RecordContext<'_>,
    message: &[u8],
    randomness: SealRandomness<'_>,
) -> Vec<u8> {
    let (key_bytes, eseed, wrap_nonce, value_nonce) = randomness;
    let key = DataKey::from_bytes(*key_bytes);
    let (ecc, kyber) = wrap_data_key(recipient, recipient_id, context, &key, eseed, wrap_nonce);
    let mut blob = ecc;
    blob.extend_from_slice(&kyber);
    blob.extend_from_slice(&encrypt_value(&key, value_nonce, context, message));
    blob
}

/// Opens what [`seal_to`] made for `me`.
pub fn open_sealed(
    sk: &PrivateKeys,
    me: Uuid,
    context: &RecordContext<'_>,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if blob.len() < WRAP_ECC_LEN + WRAP_KYBER_LEN {
        return Err(CryptoError::Malformed("sealed message"));
    }
    let (ecc, rest) = blob.split_at(WRAP_ECC_LEN);
    let (kyber, value) = rest.split_at(WRAP_KYBER_LEN);
    let key = unwrap_data_key(sk, me, context, ecc, kyber)?;
    decrypt_value(&key, context, value)
}

/// The key-encryption key derived from a user secret.
pub struct Kek {
    key: Zeroizing<[u8; 32]>,
    params: KdfParams,
    salt: [u8; SALT_LEN],
}

impl Kek {
    /// The derived key itself, for keys derived from it (a recovery mask).
    pub fn key_bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

/// One Argon2id run: the cost of unlocking.
pub fn derive_kek(secret: &[u8], salt: [u8; SALT_LEN], params: KdfParams) -> Result<Kek, CryptoError> {
    let params = params.checked()?;
    let argon = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|_| CryptoError::WeakParameters)?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    argon.hash_password_into(secret, &salt, key.as_mut()).map_err(|_| CryptoError::WeakParameters)?;
    Ok(Kek { key, params, salt })
}

/// The proof that whoever presents it derived `kek` (knew the secret) for `user`: what the Backend
/// asks for before it accepts newly sealed keys in place of these. One-way from the KEK, and separated
/// from its use as an AES key by its own label.
pub fn seal_proof(kek: &Kek, user: Uuid) -> Zeroizing<[u8; 32]> {
    let mut hash = Sha3_256::new();
    hash.update(b"harden/v1/seal-proof\0");
    hash.update(user.as_bytes());
    hash.update(kek.salt);
    hash.update(kek.key.as_ref());
    Zeroizing::new(hash.finalize().into())
}

/// The parameters and salt a sealed key was made with: what [`derive_kek`] needs to open it.
pub fn seal_header(blob: &[u8]) -> Result<(KdfParams, [u8; SALT_LEN]), CryptoError> {
    if blob.len() < SEAL_HEADER_LEN + NONCE_LEN + TAG_LEN || blob[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed("sealed private key"));
    }
    let word = |i: usize| u32::from_be_bytes(blob[1 + 4 * i..5 + 4 * i].try_into().expect("4 bytes"));
    let params = KdfParams { m_kib: word(0), t: word(1), p: word(2) }.checked()?;
    Ok((params, blob[13..13 + SALT_LEN].try_into().expect("16 bytes")))
}

fn seal_key(kek: &Kek, nonce: [u8; NONCE_LEN], aad: &[u8], key: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(SEAL_HEADER_LEN + NONCE_LEN + key.len() + TAG_LEN);
    blob.push(FORMAT_V1);
    for word in [kek.params.m_kib, kek.params.t, kek.params.p] {
        blob.extend_from_slice(&word.to_be_bytes());
    }
    blob.extend_from_slice(&kek.salt);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&seal_with(&kek.key, &nonce, aad, key));
    blob
}

fn open_key(kek: &Kek, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (params, salt) = seal_header(blob)?;
    if params != kek.params || salt != kek.salt {
        return Err(CryptoError::Open);
    }
    open_with(&kek.key, &blob[SEAL_HEADER_LEN..SEAL_HEADER_LEN + NONCE_LEN], aad, &blob[SEAL_HEADER_LEN + NONCE_LEN..])
}

fn sealed_aad(user: Uuid, which: &str) -> Vec<u8> {
    let mut aad = format!("harden/v1/sealed-key\0{which}\0").into_bytes();
    aad.extend_from_slice(user.as_bytes());
    aad
}

/// Seals both private keys of `user`: `(encryptedPrivateKeyEcc, encryptedPrivateKeyKyber)`.
pub fn seal_private_keys(kek: &Kek, user: Uuid, sk: &PrivateKeys, nonces: [[u8; NONCE_LEN]; 2]) -> (Vec<u8>, Vec<u8>) {
    let ecc = seal_key(kek, nonces[0], &sealed_aad(user, "x25519"), sk.x25519.as_bytes());
    let kyber = seal_key(kek, nonces[1], &sealed_aad(user, "ml-kem-768"), sk.mlkem_seed.as_ref());
    (ecc, kyber)
}

pub fn open_private_keys(kek: &Kek, user: Uuid, ecc: &[u8], kyber: &[u8]) -> Result<PrivateKeys, CryptoError> {
    let x = open_key(kek, &sealed_aad(user, "x25519"), ecc)?;
    let m = open_key(kek, &sealed_aad(user, "ml-kem-768"), kyber)?;
    let x: [u8; X25519_LEN] = x.as_slice().try_into().map_err(|_| CryptoError::Open)?;
    let m: [u8; MLKEM_SEED_LEN] = m.as_slice().try_into().map_err(|_| CryptoError::Open)?;
    Ok(PrivateKeys::from_seeds(x, m))
}
