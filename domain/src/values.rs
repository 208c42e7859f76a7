//! Validated value types. Each has a private field and a `parse` that is the only way in, so a value
//! that exists is a value that passed validation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};
use thiserror::Error;
use zeroize::Zeroize;

/// Why a value was refused. The message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// A display name: trimmed, 1 to `max` characters, no control characters.
fn parse_name(field: &str, raw: &str, max: usize) -> Result<String, InvalidValue> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if name.chars().count() > max {
        return Err(invalid(format!("{field} must be at most {max} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(format!("{field} must not contain control characters")));
    }
    Ok(name.to_owned())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgName(String);

impl OrgName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        parse_name("name", raw, Self::MAX_CHARS).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        parse_name("name", raw, Self::MAX_CHARS).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Opaque bytes that travel as standard, padded base64: public keys, sealed private keys, wraps,
/// ciphertexts. Stored in its canonical base64 form so events read naturally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyBlob(String);

impl KeyBlob {
    /// Accepts `raw` if it is valid base64 and decodes to a length within `len`.
    pub fn parse(field: &str, raw: &str, len: std::ops::RangeInclusive<usize>) -> Result<Self, InvalidValue> {
        let bytes = STANDARD.decode(raw).map_err(|_| invalid(format!("{field} is not valid base64")))?;
        if !len.contains(&bytes.len()) {
            return Err(if len.start() == len.end() {
                invalid(format!("{field} must decode to exactly {} bytes", len.start()))
            } else {
                invalid(format!("{field} must decode to between {} and {} bytes", len.start(), len.end()))
            });
        }
        Ok(Self(STANDARD.encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number of bytes the base64 stands for.
    pub fn decoded_len(&self) -> usize {
        let padding = self.0.bytes().rev().take_while(|b| *b == b'=').count();
        self.0.len() / 4 * 3 - padding
    }
}

/// An X25519 public key is 32 bytes.
pub const ECC_PUBLIC_KEY_LEN: usize = 32;
/// An ML-KEM-768 encapsulation key is 1184 bytes (FIPS 203).
pub const KYBER_PUBLIC_KEY_LEN: usize = 1184;
/// Sealed private keys carry a header, salt, nonce and tag around the key: bounded, never empty.
pub const SEALED_PRIVATE_KEY_MAX_LEN: usize = 16 * 1024;

/// A user's public key pair: X25519 and ML-KEM-768.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    pub ecc: KeyBlob,
    pub kyber: KeyBlob,
}

impl PublicKeys {
    /// The keys themselves, to encrypt to.
    pub fn crypto_keys(&self) -> Result<crate::crypto::PublicKeys, crate::crypto::CryptoError> {
        use base64::Engine;
        let decode = |blob: &KeyBlob| {
            base64::engine::general_purpose::STANDARD
                .decode(blob.as_str())
                .map_err(|_| crate::crypto::CryptoError::Malformed("public key"))
        };
        crate::crypto::PublicKeys::from_bytes(&decode(&self.ecc)?, &decode(&self.kyber)?)
    }

    pub fn parse(ecc_b64: &str, kyber_b64: &str) -> Result<Self, InvalidValue> {
        Ok(Self {
            ecc: KeyBlob::parse("publicKeyEccB64", ecc_b64, ECC_PUBLIC_KEY_LEN..=ECC_PUBLIC_KEY_LEN)?,
            kyber: KeyBlob::parse("publicKeyKyberB64", kyber_b64, KYBER_PUBLIC_KEY_LEN..=KYBER_PUBLIC_KEY_LEN)?,
        })
    }

    /// Both or neither: a user with half a key pair could be shared to and never read it.
    pub fn parse_optional(ecc_b64: Option<&str>, kyber_b64: Option<&str>) -> Result<Option<Self>, InvalidValue> {
        match (ecc_b64, kyber_b64) {
            (None, None) => Ok(None),
            (Some(ecc), Some(kyber)) => Self::parse(ecc, kyber).map(Some),
            _ => Err(invalid("publicKeyEccB64 and publicKeyKyberB64 must be given together")),
        }
    }
}

/// The user's private keys, sealed by the Proxy under a key derived from the user secret. harden's
/// Backend stores them and never opens them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPrivateKeys {
    pub ecc: KeyBlob,
    pub kyber: KeyBlob,
}

impl SealedPrivateKeys {
    pub fn parse(ecc_b64: &str, kyber_b64: &str) -> Result<Self, InvalidValue> {
        Ok(Self {
            ecc: KeyBlob::parse("encryptedPrivateKeyEccB64", ecc_b64, 1..=SEALED_PRIVATE_KEY_MAX_LEN)?,
            kyber: KeyBlob::parse("encryptedPrivateKeyKyberB64", kyber_b64, 1..=SEALED_PRIVATE_KEY_MAX_LEN)?,
        })
    }
}

/// An email address: trimmed, lower-cased (it identifies an account, so `Jane@Example.com` and
/// `jane@example.com` are one), and of the usual syntax: a dot-atom local part of at most 64
/// characters, `@`, a domain of at least two DNS labels with an alphabetic top-level label; 254
/// characters at most. Quoted local parts and address literals are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let bad = || invalid("email is not a valid email address");
        let email = raw.trim().to_lowercase();
        if email.len() > 254 {
            return Err(bad());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(bad)?;
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
        if local.is_empty()
            || local.len() > 64
            || local.split('.').any(|part| part.is_empty() || !part.chars().all(atext))
        {
            return Err(bad());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        let tld = labels.last().copied().unwrap_or_default();
        if labels.len() < 2
            || !labels.iter().all(label_ok)
            || tld.len() < 2
            || !tld.chars().all(|c| c.is_ascii_alphabetic())
        {
            return Err(bad());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Proof that the caller holds the user secret that sealed a user's private keys: 32 bytes the Proxy
/// derives from the key-encryption key ([`crate::crypto::seal_proof`]). It travels only when keys are
/// stored; the Backend keeps nothing but its [`SealVerifier`], so whoever holds just the API key cannot
/// replace the sealed keys (and with them every value they protect).
#[derive(Clone, PartialEq, Eq)]
pub struct SealProof([u8; 32]);

impl std::fmt::Debug for SealProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealProof(..)")
    }
}

impl SealProof {
    pub fn parse(field: &'static str, b64: &str) -> Result<Self, InvalidValue> {
        let bytes = STANDARD.decode(b64).map_err(|_| invalid(format!("{field} is not valid base64")))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| invalid(format!("{field} must be 32 bytes")))?;
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn verifier(&self) -> SealVerifier {
        let mut hash = Sha3_256::new();
        hash.update(b"harden/v1/seal-verifier\0");
        hash.update(self.0);
        SealVerifier(hex::encode(hash.finalize()))
    }
}

impl Drop for SealProof {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// What the Backend keeps of a [`SealProof`]: its SHA3-256, hex encoded. Knowing it does not help
/// forge a proof, and guessing the secret from it costs an Argon2id run per guess, as the sealed keys
/// themselves already do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealVerifier(String);

/// The SHA-256 of an API key, hex encoded. API keys are 256-bit random, so a fast hash is enough:
/// nobody can brute-force the preimage, and the lookup stays an index probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyHash(String);

impl ApiKeyHash {
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(hex::encode(digest))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(Email::parse("  Jane.Doe+vault@Example.COM ").unwrap().as_str(), "jane.doe+vault@example.com");
        for good in ["a@b.co", "o'brien@mail.example.org", "x_y-z@sub-domain.example.io"] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "jane@",
            "jane@localhost",
            "jane@example.c",
            "jane@example.123",
            "jane..doe@example.com",
            ".jane@example.com",
            "jane.@example.com",
            "jane doe@example.com",
            "jane@exa mple.com",
            "jane@-example.com",
            "jane@example-.com",
            "jane@@example.com",
            "\"jane\"@example.com",
            "jane@[127.0.0.1]",
            "jané@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(Email::parse(&format!("a@{}.com", "b".repeat(64))).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(OrgName::parse("  acme ").unwrap().as_str(), "acme");
        assert!(OrgName::parse("   ").is_err());
        assert!(OrgName::parse(&"x".repeat(101)).is_err());
        assert!(OrgName::parse(&"é".repeat(100)).is_ok());
        assert!(UserName::parse("bad\u{7}name").is_err());
    }

    #[test]
    fn key_blobs_must_be_base64_of_the_right_length() {
        let ok = STANDARD.encode([1u8; 32]);
        assert!(KeyBlob::parse("k", &ok, 32..=32).is_ok());
        let err = KeyBlob::parse("k", "not base64!", 1..=64).unwrap_err();
        assert_eq!(err.0, "k is not valid base64");
        let err = KeyBlob::parse("k", &STANDARD.encode([1u8; 31]), 32..=32).unwrap_err();
        assert_eq!(err.0, "k must decode to exactly 32 bytes");
        assert!(KeyBlob::parse("k", "", 1..=64).is_err());
        for n in 0..8 {
            assert_eq!(KeyBlob::parse("k", &STANDARD.encode(vec![0u8; n]), 0..=8).unwrap().decoded_len(), n);
        }
    }

    #[test]
    fn public_keys_come_in_pairs() {
        let ecc = STANDARD.encode([1u8; ECC_PUBLIC_KEY_LEN]);
        let kyber = STANDARD.encode(vec![2u8; KYBER_PUBLIC_KEY_LEN]);
        assert!(PublicKeys::parse_optional(None, None).unwrap().is_none());
        assert!(PublicKeys::parse_optional(Some(&ecc), Some(&kyber)).unwrap().is_some());
        assert!(PublicKeys::parse_optional(Some(&ecc), None).is_err());
        assert!(PublicKeys::parse(&kyber, &ecc).is_err());
    }
}
