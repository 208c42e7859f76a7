//! The crypto of trusted-user recovery, pure like [`crate::crypto`].
//!
//! - **Recovery share** (made by the owner's Proxy for one trustee, one blob per private key):
//!   `1 ‖ mask header ‖ seal_to(trustee, key seed)`, where the seed is XOR-masked when the owner
//!   gave an answer: `mask = SHA3-256 blocks of Argon2id(answer, mask salt)`. The mask header is
//!   `masked(1) ‖ m_kib(4) ‖ t(4) ‖ p(4) ‖ salt(16)` (zeros when unmasked). A trustee alone opens
//!   the share but, when masked, holds only masked seeds: useless without the answer.
//! - **Restored keys** (made by the trustee's Proxy for the owner): the same mask header, then the
//!   (still masked) seeds sealed like private keys under a key derived from a temporary secret the
//!   trustee gives the owner out of band.
//! - **Completion** (the owner's Proxy): open with the temporary secret, unmask with the answer,
//!   check the keys are the owner's (their public keys match), seal under the new secret.

use sha3::{Digest, Sha3_256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::SealRandomness;

use crate::crypto::{
    derive_kek, open_private_keys, open_sealed, seal_header, seal_private_keys, seal_to, CryptoError, KdfParams, Kek,
    PrivateKeys, PublicKeys, RecordContext, MLKEM_SEED_LEN, NONCE_LEN, SALT_LEN, X25519_LEN,
};

pub const MASK_HEADER_LEN: usize = 1 + 12 + SALT_LEN;
const SHARE_VERSION: u8 = 1;

/// How a share's seeds are masked: not at all, or by an answer stretched with these parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskHeader {
    pub masked: bool,
    pub params: KdfParams,
    pub salt: [u8; SALT_LEN],
}

impl MaskHeader {
    pub const NONE: MaskHeader =
        MaskHeader { masked: false, params: KdfParams { m_kib: 0, t: 0, p: 0 }, salt: [0; SALT_LEN] };

    pub fn to_bytes(&self) -> [u8; MASK_HEADER_LEN] {
        let mut out = [0u8; MASK_HEADER_LEN];
        out[0] = u8::from(self.masked);
        out[1..5].copy_from_slice(&self.params.m_kib.to_be_bytes());
        out[5..9].copy_from_slice(&self.params.t.to_be_bytes());
        out[9..13].copy_from_slice(&self.params.p.to_be_bytes());
        out[13..].copy_from_slice(&self.salt);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: &[u8; MASK_HEADER_LEN] = bytes
            .get(..MASK_HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(CryptoError::Malformed("recovery header"))?;
        let word = |i: usize| u32::from_be_bytes(bytes[1 + 4 * i..5 + 4 * i].try_into().expect("4 bytes"));
        let header = MaskHeader {
            masked: match bytes[0] {
                0 => false,
                1 => true,
                _ => return Err(CryptoError::Malformed("recovery header")),
            },
            params: KdfParams { m_kib: word(0), t: word(1), p: word(2) },
            salt: bytes[13..].try_into().expect("16 bytes"),
        };
        if header.masked {
            header.params.checked()?;
        }
        Ok(header)
    }
}

/// The answer as it is stretched: trimmed and lower-cased, so "Rex " and "rex" are one answer.
pub fn normalize_answer(answer: &str) -> Zeroizing<String> {
    Zeroizing::new(answer.trim().to_lowercase())
}

/// The key that masks (and, XOR being its own inverse, unmasks) the seeds: Argon2id of the answer.
pub fn mask_key(answer: &str, header: &MaskHeader) -> Result<Kek, CryptoError> {
    derive_kek(normalize_answer(answer).as_bytes(), header.salt, header.params)
}

fn mask_stream(mask: &Kek) -> Zeroizing<[u8; X25519_LEN + MLKEM_SEED_LEN]> {
    let mut out = Zeroizing::new([0u8; X25519_LEN + MLKEM_SEED_LEN]);
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut hash = Sha3_256::new();
        hash.update(b"harden/v1/recovery-mask\0");
        hash.update([i as u8]);
        hash.update(mask.key_bytes());
        chunk.copy_from_slice(&hash.finalize());
    }
    out
}

/// The keys with their seeds XOR-masked (or unmasked: the same operation).
pub fn apply_mask(keys: &PrivateKeys, mask: &Kek) -> PrivateKeys {
    let (x, m) = keys.seeds();
    let stream = mask_stream(mask);
    let mut x = *x;
    let mut m = *m;
    for (byte, k) in x.iter_mut().chain(m.iter_mut()).zip(stream.iter()) {
        *byte ^= k;
    }
    let keys = PrivateKeys::from_seeds(x, m);
    zeroize::Zeroize::zeroize(&mut x);
    zeroize::Zeroize::zeroize(&mut m);
    keys
}

fn share_context(org: Uuid, owner: Uuid, which: &'static [u8]) -> RecordContext<'static> {
    RecordContext { kind: "recovery-share", org, owner, name: which }
}

/// The owner's two recovery share blobs for one trustee: `(ecc share, kyber share)`.
#[allow(clippy::too_many_arguments)]
pub fn make_share(
    trustee: &PublicKeys,
    trustee_id: Uuid,
    org: Uuid,
    owner: Uuid,
    keys: &PrivateKeys,
    header: &MaskHeader,
    randomness: [SealRandomness<'_>; 2],
) -> (Vec<u8>, Vec<u8>) {
    let (x, m) = keys.seeds();
    let blob = |which: &'static [u8], seed: &[u8], r| {
        let mut out = vec![SHARE_VERSION];
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&seal_to(trustee, trustee_id, &share_context(org, owner, which), seed, r));
        out
    };
    (blob(b"x25519", x.as_ref(), randomness[0]), blob(b"ml-kem-768", m.as_ref(), randomness[1]))
}

/// The trustee opens a share: the (possibly still masked) keys and how they are masked.
pub fn open_share(
    trustee: &PrivateKeys,
    trustee_id: Uuid,
    org: Uuid,
    owner: Uuid,
    ecc: &[u8],
    kyber: &[u8],
) -> Result<(PrivateKeys, MaskHeader), CryptoError> {
    let open = |which: &'static [u8], blob: &[u8]| {
        if blob.first() != Some(&SHARE_VERSION) {
            return Err(CryptoError::Malformed("recovery share"));
        }
        let header = MaskHeader::parse(&blob[1..])?;
        let seed = open_sealed(trustee, trustee_id, &share_context(org, owner, which), &blob[1 + MASK_HEADER_LEN..])?;
        Ok((header, seed))
    };
    let (header, x) = open(b"x25519", ecc)?;
    let (header_m, m) = open(b"ml-kem-768", kyber)?;
    if header != header_m {
        return Err(CryptoError::Open);
    }
    let x: [u8; X25519_LEN] = x.as_slice().try_into().map_err(|_| CryptoError::Open)?;
    let m: [u8; MLKEM_SEED_LEN] = m.as_slice().try_into().map_err(|_| CryptoError::Open)?;
    Ok((PrivateKeys::from_seeds(x, m), header))
}

/// The trustee's restore for the owner: the masked keys sealed under the temporary secret's KEK,
/// each blob prefixed by the mask header.
pub fn seal_restore(
    temporary: &Kek,
    owner: Uuid,
    masked: &PrivateKeys,
    header: &MaskHeader,
    nonces: [[u8; NONCE_LEN]; 2],
) -> (Vec<u8>, Vec<u8>) {
    let (ecc, kyber) = seal_private_keys(temporary, owner, masked, nonces);
    let prefix = |blob: Vec<u8>| {
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(&blob);
        out
    };
    (prefix(ecc), prefix(kyber))
}

/// What the owner's Proxy needs before deriving the temporary KEK: the mask header and the seal
/// header (parameters, salt) of a restored blob.
pub fn restore_headers(ecc: &[u8]) -> Result<(MaskHeader, KdfParams, [u8; SALT_LEN]), CryptoError> {
    let header = MaskHeader::parse(ecc)?;
    let (params, salt) = seal_header(&ecc[MASK_HEADER_LEN..])?;
    Ok((header, params, salt))
}

/// Opens a restore with the temporary KEK and unmasks it (with the answer's mask key when masked):
/// the owner's keys, if `expected` are their public keys.
pub fn open_restore(
    temporary: &Kek,
    owner: Uuid,
    ecc: &[u8],
    kyber: &[u8],
    mask: Option<&Kek>,
    expected: &PublicKeys,
) -> Result<PrivateKeys, CryptoError> {
    let header = MaskHeader::parse(ecc)?;
    if MaskHeader::parse(kyber)? != header || ecc.len() <= MASK_HEADER_LEN || kyber.len() <= MASK_HEADER_LEN {
        return Err(CryptoError::Open);
    }
    let masked = open_private_keys(temporary, owner, &ecc[MASK_HEADER_LEN..], &kyber[MASK_HEADER_LEN..])?;
    let keys = match (header.masked, mask) {
        (true, Some(mask)) => apply_mask(&masked, mask),
        (false, _) => masked,
        (true, None) => return Err(CryptoError::Open),
    };
    let public = keys.public_keys();
    if public.ecc_bytes() != expected.ecc_bytes() || public.kyber_bytes() != expected.kyber_bytes() {
        return Err(CryptoError::Open);
    }
    Ok(keys)
}

/// What a restore's completion challenge is sealed in: the owner's org and id, and the restore.
/// The Backend seals it to the owner's public keys; only the restored private keys open it.
pub fn challenge_context<'a>(org: crate::OrgId, owner: crate::UserId, restore_id: &'a Uuid) -> RecordContext<'a> {
    RecordContext {
        kind: "recovery-challenge",
        org: *org.as_uuid(),
        owner: *owner.as_uuid(),
        name: restore_id.as_bytes(),
    }
}
