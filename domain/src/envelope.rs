//! The wire format of an encrypted value, as far as the Backend needs to know it.
//!
//! A value's ciphertext (`ciphertextB64`) is made by the Proxy:
//!
//! ```text
//! format version (1 byte) ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext (same length as the plaintext) ‖ tag (16 bytes)
//! ```
//!
//! so the Backend, which never sees a plaintext, knows its length exactly:
//! `plaintext bytes = ciphertext bytes − 29`. Plan limits on "key + value bytes" use that figure.

/// The only value format so far.
pub const VALUE_FORMAT_V1: u8 = 1;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes a ciphertext carries beyond its plaintext.
pub const VALUE_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// The plaintext length behind a ciphertext of `ciphertext_len` bytes, if it can be one.
pub fn plaintext_len(ciphertext_len: usize) -> Option<usize> {
    ciphertext_len.checked_sub(VALUE_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_version_nonce_and_tag() {
        assert_eq!(VALUE_OVERHEAD, 29);
        assert_eq!(plaintext_len(29), Some(0));
        assert_eq!(plaintext_len(29 + 100), Some(100));
        assert_eq!(plaintext_len(28), None);
    }
}
