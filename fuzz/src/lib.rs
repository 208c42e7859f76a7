//! # harden fuzz targets: shared helpers
//!
//! Every target feeds bytes to harden's own parsing entry points (nothing here re-implements a
//! parser) and checks properties of what they answer. What the targets share lives here:
//!
//! - [`parts`] — how one fuzz input carries several fields (header values, a body, two blobs):
//!   they are separated by [`SEP`], `0xff '|' 0xff`. `0xff` never occurs in UTF-8, so a text field
//!   of a seed can never contain the separator by accident.
//! - [`seeds`] — writing a target's seed corpus: each target makes its seeds with harden's own
//!   functions (a real envelope from `encrypt_value`, a JWT signed with the test keys of
//!   `tests/fixtures/idp/`, a Svix-signed body) and writes them when `HARDEN_FUZZ_WRITE_SEEDS`
//!   names a folder (`bench/fuzz --write-seeds`).
//! - [`hmac_sha256`] — the reference MAC the webhook targets sign with, so they can check that a
//!   genuine signature verifies and a forged one never does.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Separates the fields of one fuzz input.
pub const SEP: &[u8] = b"\xff|\xff";

/// The first `N` fields of `data` (missing ones are empty; the last one takes the rest, separators
/// included).
pub fn parts<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    let mut rest = data;
    for slot in out.iter_mut().take(N - 1) {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(at) => {
                *slot = &rest[..at];
                rest = &rest[at + SEP.len()..];
            }
            None => {
                *slot = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    out[N - 1] = rest;
    out
}

/// Joins fields the way [`parts`] splits them (for seeds).
pub fn join(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(field);
    }
    out
}

/// A mode byte followed by fields (for seeds).
pub fn seed(mode: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(&join(fields));
    out
}

/// HMAC-SHA256, the primitive of both webhook signature schemes (Svix and Stripe).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub mod seeds {
    use std::path::Path;

    /// The environment variable that asks a target binary to write its seeds and exit.
    pub const WRITE_SEEDS_ENV: &str = "HARDEN_FUZZ_WRITE_SEEDS";

    /// If `HARDEN_FUZZ_WRITE_SEEDS` names a folder, writes `make()`'s seeds there as `seed-<name>`
    /// files and exits: the binary is then a seed generator, built once with the targets.
    pub fn write_if_asked(make: impl FnOnce() -> Vec<(&'static str, Vec<u8>)>) {
        let Some(dir) = std::env::var_os(WRITE_SEEDS_ENV) else { return };
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).expect("seed folder");
        for (name, bytes) in make() {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
        }
        std::process::exit(0);
    }
}

/// Fixed unix time the webhook targets verify at, so that committed seeds stay valid forever.
pub const NOW: i64 = 1_700_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_on_the_separator_and_the_last_takes_the_rest() {
        let data = join(&[b"a", b"bc", b"d"]);
        assert_eq!(parts::<2>(&data), [&b"a"[..], &join(&[b"bc", b"d"])[..]]);
        assert_eq!(parts::<3>(&data), [&b"a"[..], &b"bc"[..], &b"d"[..]]);
        assert_eq!(parts::<4>(&data), [&b"a"[..], &b"bc"[..], &b"d"[..], &b""[..]]);
    }
}
