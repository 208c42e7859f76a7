//! The envelope blobs the Proxy opens (`harden_domain::crypto`, `recovery_crypto`): value and
//! file ciphertexts, X-Wing wraps of data keys, messages sealed to a user (share aliases), sealed
//! private keys and their header, sealed server secrets, recovery shares and restores, and public
//! keys. Any of them can come from another user (a share, a recovery share, a client doing its own
//! crypto through the Backend), so none may panic on any bytes.
//!
//! Properties: what harden encrypts, harden decrypts to the same bytes (values, in-place files,
//! wraps, sealed messages, server secrets, mask headers); a blob that opens under the target's fixed
//! keys is byte for byte what harden would make of its plaintext (no malleability), and a blob
//! with one byte changed never opens.
#![no_main]

use std::sync::OnceLock;

use harden_domain::crypto::{self, DataKey, KdfParams, Kek, PrivateKeys, PublicKeys, RecordContext};
use harden_domain::recovery_crypto::{self, MaskHeader};
use harden_fuzz::{parts, seed, seeds};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x0a);
const OWNER: Uuid = Uuid::from_u128(0x0b);
const RECIPIENT: Uuid = Uuid::from_u128(0x0c);
const NAME: &[u8] = b"db-url";
const SERVER_CONTEXT: &[u8] = b"harden/v1/storage-secret\0org";

struct Fixture {
    data_key: DataKey,
    server_key: [u8; 32],
    keys: PrivateKeys,
    public: PublicKeys,
    /// One Argon2id run at the minimum parameters, made once: opening sealed keys with it costs
    /// only AES-GCM per input.
    kek: Kek,
    mask: Kek,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = PrivateKeys::from_seeds([1; 32], [2; 64]);
        Fixture {
            data_key: DataKey::from_bytes([7; 32]),
            server_key: [9; 32],
            public: keys.public_keys(),
            keys,
            kek: crypto::derive_kek(b"a user secret for fuzzing", [3; 16], KdfParams::MINIMUM).expect("kek"),
            mask: crypto::derive_kek(b"rex", [4; 16], KdfParams::MINIMUM).expect("mask"),
        }
    })
}

fn context(kind: &str) -> RecordContext<'_> {
    RecordContext { kind, org: ORG, owner: OWNER, name: NAME }
}

fn nonce(bytes: &[u8]) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    for (slot, b) in nonce.iter_mut().zip(bytes) {
        *slot = *b;
    }
    nonce
}

/// `blob` with the byte at `at` (modulo its length) flipped.
fn flipped(blob: &[u8], at: usize) -> Vec<u8> {
    let mut out = blob.to_vec();
    if !out.is_empty() {
        let i = at % out.len();
        out[i] ^= 0x80;
    }
    out
}

fn mode_value(data: &[u8]) {
    let f = fixture();
    let ctx = context("kv");
    // Round trip of what the Proxy writes.
    let blob = crypto::encrypt_value(&f.data_key, nonce(data), &ctx, data);
    assert_eq!(blob.len(), data.len() + harden_domain::envelope::VALUE_OVERHEAD);
    assert_eq!(harden_domain::envelope::plaintext_len(blob.len()), Some(data.len()));
    assert_eq!(crypto::decrypt_value(&f.data_key, &ctx, &blob).expect("own value opens").as_slice(), data);
    assert!(crypto::decrypt_value(&f.data_key, &ctx, &flipped(&blob, data.len())).is_err(), "a changed value opened");
    assert!(crypto::decrypt_value(&f.data_key, &context("file"), &blob).is_err(), "a value opened in another context");
    // The bytes themselves as a stored value: whatever opens is exactly what harden would have made.
    if let Ok(plaintext) = crypto::decrypt_value(&f.data_key, &ctx, data) {
        assert_eq!(crypto::encrypt_value(&f.data_key, nonce(&data[1..]), &ctx, &plaintext), data);
    }
}

fn mode_file_in_place(data: &[u8]) {
    let f = fixture();
    let ctx = context("file");
    // Plaintext anywhere in a buffer (as the Proxy decodes it inside the request body).
    let (a, b) = (usize::from(*data.first().unwrap_or(&0)), usize::from(*data.get(1).unwrap_or(&0)));
    let (start, end) = (a.min(b).min(data.len()), a.max(b).min(data.len()));
    let mut buf = data.to_vec();
    let sealed = crypto::seal_in_place(&f.data_key, nonce(data), &ctx, &mut buf, start..end);
    let mut blob = buf[sealed.clone()].to_vec();
    assert_eq!(
        blob,
        crypto::encrypt_value(&f.data_key, nonce(data), &ctx, &data[start..end]),
        "in place == encrypt_value"
    );
    let opened = crypto::open_in_place(&f.data_key, &ctx, &mut blob).expect("own file opens");
    assert_eq!(&blob[opened], &data[start..end]);
    // The bytes as a stored file.
    let mut stored = data.to_vec();
    if let Ok(range) = crypto::open_in_place(&f.data_key, &ctx, &mut stored) {
        assert_eq!(range, 13..data.len() - 16);
        assert_eq!(crypto::encrypt_value(&f.data_key, nonce(&data[1..]), &ctx, &stored[range]), data);
    }
}

fn mode_wrap(data: &[u8]) {
    let f = fixture();
    let ctx = context("kv");
    let [ecc, kyber] = parts::<2>(data);
    match crypto::unwrap_data_key(&f.keys, RECIPIENT, &ctx, ecc, kyber) {
        Ok(key) => {
            assert_eq!((ecc.len(), kyber.len()), (crypto::WRAP_ECC_LEN, crypto::WRAP_KYBER_LEN));
            assert!(crypto::unwrap_data_key(&f.keys, OWNER, &ctx, ecc, kyber).is_err(), "opened for someone else");
            assert!(crypto::unwrap_data_key(&f.keys, RECIPIENT, &ctx, ecc, &flipped(kyber, data.len())).is_err());
            let _ = key.expose();
        }
        Err(_) => {
            // A fresh wrap of a key taken from the input opens to that key.
            let mut eseed = [0u8; 64];
            for (slot, b) in eseed.iter_mut().zip(data.iter().cycle()) {
                *slot = *b;
            }
            let key = DataKey::from_bytes(eseed[..32].try_into().expect("32 bytes"));
            let (ecc, kyber) = crypto::wrap_data_key(&f.public, RECIPIENT, &ctx, &key, &eseed, nonce(data));
            let opened = crypto::unwrap_data_key(&f.keys, RECIPIENT, &ctx, &ecc, &kyber).expect("own wrap opens");
            assert_eq!(opened.expose(), key.expose());
        }
    }
}

fn mode_sealed_message(data: &[u8]) {
    let f = fixture();
    let ctx = context("kv-share-alias");
    if let Ok(message) = crypto::open_sealed(&f.keys, RECIPIENT, &ctx, data) {
        let overhead = crypto::WRAP_ECC_LEN + crypto::WRAP_KYBER_LEN + harden_domain::envelope::VALUE_OVERHEAD;
        assert_eq!(message.len() + overhead, data.len());
        assert!(crypto::open_sealed(&f.keys, OWNER, &ctx, data).is_err(), "opened for someone else");
    }
}

fn mode_sealed_keys(data: &[u8]) {
    let f = fixture();
    let [ecc, kyber] = parts::<2>(data);
    if let Ok((params, _salt)) = crypto::seal_header(ecc) {
        assert_eq!(params.checked(), Ok(params));
        assert!(params.within(&KdfParams::MAXIMUM), "{params:?} beyond the ceiling");
    }
    if let Ok(keys) = crypto::open_private_keys(&f.kek, OWNER, ecc, kyber) {
        // Only keys sealed under the fixture's secret open, and those are the fixture's keys.
        assert_eq!(keys.public_keys().ecc_bytes(), f.public.ecc_bytes());
        assert_eq!(keys.public_keys().kyber_bytes(), f.public.kyber_bytes());
        assert!(crypto::open_private_keys(&f.kek, RECIPIENT, ecc, kyber).is_err(), "opened as someone else");
    }
}

fn mode_server_secret(data: &[u8]) {
    let f = fixture();
    let blob = crypto::seal_server_secret(&f.server_key, nonce(data), SERVER_CONTEXT, data);
    assert_eq!(crypto::open_server_secret(&f.server_key, SERVER_CONTEXT, &blob).expect("opens").as_slice(), data);
    assert!(crypto::open_server_secret(&f.server_key, b"other", &blob).is_err());
    if let Ok(secret) = crypto::open_server_secret(&f.server_key, SERVER_CONTEXT, data) {
        assert_eq!(crypto::seal_server_secret(&f.server_key, nonce(data), SERVER_CONTEXT, &secret), data);
    }
}

fn mode_public_keys(data: &[u8]) {
    let [ecc, kyber] = parts::<2>(data);
    if let Ok(public) = PublicKeys::from_bytes(ecc, kyber) {
        assert_eq!(public.ecc_bytes().as_slice(), ecc);
        assert_eq!(public.kyber_bytes(), kyber, "an accepted ML-KEM key is kept byte for byte");
        // Anyone's accepted key can be wrapped to.
        let key = DataKey::from_bytes([5; 32]);
        let (w_ecc, w_kyber) = crypto::wrap_data_key(&public, RECIPIENT, &context("kv"), &key, &[6; 64], [0; 12]);
        assert_eq!((w_ecc.len(), w_kyber.len()), (crypto::WRAP_ECC_LEN, crypto::WRAP_KYBER_LEN));
    }
}

fn mode_recovery(data: &[u8]) {
    let f = fixture();
    if let Ok(header) = MaskHeader::parse(data) {
        assert_eq!(&header.to_bytes()[..], &data[..recovery_crypto::MASK_HEADER_LEN]);
        assert_eq!(MaskHeader::parse(&header.to_bytes()), Ok(header));
    }
    let [ecc, kyber] = parts::<2>(data);
    if let Ok((keys, header)) = recovery_crypto::open_share(&f.keys, RECIPIENT, ORG, OWNER, ecc, kyber) {
        assert!(recovery_crypto::open_share(&f.keys, OWNER, ORG, OWNER, ecc, kyber).is_err());
        let _ = (keys.public_keys(), header);
    }
    if let Ok((header, params, _)) = recovery_crypto::restore_headers(ecc) {
        assert_eq!(params.checked(), Ok(params));
        if header.masked {
            assert_eq!(header.params.checked(), Ok(header.params));
        }
    }
    for mask in [Some(&f.mask), None] {
        if let Ok(keys) = recovery_crypto::open_restore(&f.kek, OWNER, ecc, kyber, mask, &f.public) {
            assert_eq!(keys.public_keys().kyber_bytes(), f.public.kyber_bytes());
        }
    }
}

fn make_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let f = fixture();
    let kv = context("kv");
    let value = crypto::encrypt_value(&f.data_key, [1; 12], &kv, b"postgres://app:pass@db/main");
    let mut file = b"{\"env\":\"dev\"}".to_vec();
    let range = crypto::seal_in_place(&f.data_key, [2; 12], &context("file"), &mut file, 0..13);
    let file = file[range].to_vec();
    let (w_ecc, w_kyber) = crypto::wrap_data_key(&f.public, RECIPIENT, &kv, &f.data_key, &[8; 64], [3; 12]);
    let alias = crypto::seal_to(
        &f.public,
        RECIPIENT,
        &context("kv-share-alias"),
        b"primary database",
        (&[4; 32], &[5; 64], [6; 12], [7; 12]),
    );
    let (s_ecc, s_kyber) = crypto::seal_private_keys(&f.kek, OWNER, &f.keys, [[8; 12], [9; 12]]);
    let secret = crypto::seal_server_secret(&f.server_key, [10; 12], SERVER_CONTEXT, b"harden-s3-secret");
    let header = MaskHeader { masked: true, params: KdfParams::MINIMUM, salt: [4; 16] };
    let owner_keys = PrivateKeys::from_seeds([1; 32], [2; 64]);
    let randomness = [(&[11; 32], &[12; 64], [13; 12], [14; 12]), (&[15; 32], &[16; 64], [17; 12], [18; 12])];
    let (r_ecc, r_kyber) =
        recovery_crypto::make_share(&f.public, RECIPIENT, ORG, OWNER, &owner_keys, &header, randomness);
    let masked = recovery_crypto::apply_mask(&owner_keys, &f.mask);
    let (t_ecc, t_kyber) = recovery_crypto::seal_restore(&f.kek, OWNER, &masked, &header, [[19; 12], [20; 12]]);
    vec![
        ("value", seed(0, &[&value])),
        ("file", seed(1, &[&file])),
        ("wrap", seed(2, &[&w_ecc, &w_kyber])),
        ("alias", seed(3, &[&alias])),
        ("sealed-keys", seed(4, &[&s_ecc, &s_kyber])),
        ("server-secret", seed(5, &[&secret])),
        ("public-keys", seed(6, &[&f.public.ecc_bytes(), &f.public.kyber_bytes()])),
        ("recovery-share", seed(7, &[&r_ecc, &r_kyber])),
        ("recovery-restore", seed(7, &[&t_ecc, &t_kyber])),
    ]
}

fuzz_target!(init: seeds::write_if_asked(make_seeds), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 8 {
        0 => mode_value(rest),
        1 => mode_file_in_place(rest),
        2 => mode_wrap(rest),
        3 => mode_sealed_message(rest),
        4 => mode_sealed_keys(rest),
        5 => mode_server_secret(rest),
        6 => mode_public_keys(rest),
        _ => mode_recovery(rest),
    }
});
