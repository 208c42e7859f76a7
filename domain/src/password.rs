//! Org-admin passwords: Argon2id, stored as a PHC string
//! (`$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`, unpadded base64), so the parameters travel with the
//! hash and can be raised later. Pure: the salt is an argument.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::KdfParams;

const HASH_LEN: usize = 32;

fn argon(params: KdfParams) -> Option<Argon2<'static>> {
    let params = params.checked().ok()?;
    Some(Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(params.m_kib, params.t, params.p, Some(HASH_LEN)).ok()?,
    ))
}

/// The PHC string of `password` under `salt` and `params` (which must be within the accepted range).
pub fn hash(password: &str, salt: [u8; 16], params: KdfParams) -> Option<String> {
    let mut out = Zeroizing::new([0u8; HASH_LEN]);
    argon(params)?.hash_password_into(password.as_bytes(), &salt, out.as_mut()).ok()?;
    Some(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_kib,
        params.t,
        params.p,
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out.as_ref())
    ))
}

/// The parameters a PHC string was made with, if it is one of ours.
pub fn params_of(phc: &str) -> Option<KdfParams> {
    parse(phc).map(|(params, _, _)| params)
}

fn parse(phc: &str) -> Option<(KdfParams, Vec<u8>, Vec<u8>)> {
    let mut parts = phc.strip_prefix("$argon2id$v=19$")?.split('$');
    let (costs, salt, hash) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut values = [0u32; 3];
    for (slot, (name, value)) in values.iter_mut().zip(["m", "t", "p"].iter().zip(costs.split(','))) {
        *slot = value.strip_prefix(name)?.strip_prefix('=')?.parse().ok()?;
    }
    let params = KdfParams { m_kib: values[0], t: values[1], p: values[2] }.checked().ok()?;
    Some((params, STANDARD_NO_PAD.decode(salt).ok()?, STANDARD_NO_PAD.decode(hash).ok()?))
}

/// Whether `password` matches `phc`. A malformed hash matches nothing; the comparison is constant
/// time.
pub fn verify(phc: &str, password: &str) -> bool {
    let Some((params, salt, expected)) = parse(phc) else { return false };
    let (Some(argon), true) = (argon(params), expected.len() == HASH_LEN) else { return false };
    let mut out = Zeroizing::new([0u8; HASH_LEN]);
    if argon.hash_password_into(password.as_bytes(), &salt, out.as_mut()).is_err() {
        return false;
    }
    out.as_ref().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("CorrectHorseBatteryStaple1!", [7; 16], KdfParams::MINIMUM).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&phc, "CorrectHorseBatteryStaple1!"));
        assert!(!verify(&phc, "CorrectHorseBatteryStaple1"));
        assert_eq!(params_of(&phc), Some(KdfParams::MINIMUM));
        assert_ne!(phc, hash("CorrectHorseBatteryStaple1!", [8; 16], KdfParams::MINIMUM).unwrap());
    }

    #[test]
    fn malformed_or_weak_hashes_match_nothing() {
        let phc = hash("pw-pw-pw-pw", [7; 16], KdfParams::MINIMUM).unwrap();
        for bad in [
            String::new(),
            phc.replace("argon2id", "argon2i"),
            phc.replace("m=19456", "m=8"),
            phc.replace("t=2", "t=x"),
            format!("{phc}$extra"),
            phc[..phc.len() - 4].to_owned(),
        ] {
            assert!(!verify(&bad, "pw-pw-pw-pw"), "{bad}");
        }
        assert!(hash("pw", [0; 16], KdfParams { m_kib: 8, t: 1, p: 1 }).is_none());
    }
}
