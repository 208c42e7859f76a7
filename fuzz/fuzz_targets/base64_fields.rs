//! The base64 fields of request bodies: `KeyBlob` (every `…B64` field the Backend stores), the
//! value types built from them (`PublicKeys`, `SealedPrivateKeys`, `SecretEnvelope`, `SealProof`),
//! and the in-place decoder of the file routes (`large_body::decode_in_place`, `B64Field`), which
//! decodes a file's base64 inside the request body in 16 KiB steps.
//!
//! Properties: every decoder accepts exactly what the standard padded base64 decoder accepts and
//! answers the same bytes; a stored `KeyBlob` is the canonical encoding of those bytes, its length
//! arithmetic is right, and length limits hold.
#![no_main]

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use harden_api::large_body::{decode_in_place, B64Field};
use harden_domain::crypto::{self, DataKey, PrivateKeys, RecordContext};
use harden_domain::secret::{SecretEnvelope, MAX_VALUE_CIPHERTEXT, MAX_WRAP_LEN};
use harden_domain::values::{KeyBlob, PublicKeys, SealProof, SealedPrivateKeys};
use harden_fuzz::{parts, seed, seeds};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// `decode_in_place` works in steps of this many base64 characters (16 KiB).
const STEP: usize = 16 * 1024;

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn mode_key_blob(data: &[u8]) {
    let (lo, hi, raw) = match data {
        [lo, hi, rest @ ..] => (usize::from(*lo) * 8, usize::from(*lo) * 8 + usize::from(*hi) * 64, rest),
        _ => return,
    };
    let raw = text(raw);
    let standard = STANDARD.decode(raw.as_bytes());
    match KeyBlob::parse("fieldB64", &raw, lo..=hi) {
        Ok(blob) => {
            let bytes = standard.expect("KeyBlob accepted what the standard decoder refuses");
            assert!((lo..=hi).contains(&bytes.len()), "{} bytes accepted for {lo}..={hi}", bytes.len());
            assert_eq!(blob.decoded_len(), bytes.len(), "decoded_len of {:?}", blob.as_str());
            assert_eq!(blob.as_str(), STANDARD.encode(&bytes), "stored form is canonical");
        }
        Err(e) => {
            assert!(standard.map_or(true, |b| !(lo..=hi).contains(&b.len())), "refused valid input: {e}");
        }
    }
}

fn mode_in_place(data: &[u8]) {
    let Some((&shift, rest)) = data.split_first() else { return };
    // Put the input across the first step boundary (or at the start), where steps join.
    let lead = match shift % 4 {
        0 => 0,
        _ => STEP - 4 * usize::from(shift / 4 % 64),
    };
    let mut buf = b"QUJD".repeat(lead / 4);
    buf.extend_from_slice(rest);
    let standard = STANDARD.decode(&buf);
    let mut in_place = buf.clone();
    match (decode_in_place(&mut in_place), &standard) {
        (Some(n), Ok(bytes)) => assert_eq!(&in_place[..n], &bytes[..]),
        (None, Err(_)) => {}
        (ours, theirs) => panic!(
            "decode_in_place and the standard decoder disagree on {} bytes (lead {lead}): {:?} vs {:?}",
            buf.len(),
            ours,
            theirs.as_ref().map(Vec::len)
        ),
    }

    // The same text as a JSON field, borrowed from the body (decoded in it) or copied (escapes).
    #[derive(serde::Deserialize)]
    struct Upload<'a> {
        #[serde(borrow)]
        v: Cow<'a, str>,
    }
    let mut body = br#"{"v":""#.to_vec();
    body.extend_from_slice(rest);
    body.extend_from_slice(br#""}"#);
    let Ok(upload) = serde_json::from_slice::<Upload>(&body) else { return };
    let standard = STANDARD.decode(upload.v.as_bytes()).ok();
    let field = B64Field::locate(&body, upload.v);
    let decoded = field.decode(body.clone(), "contentB64").ok().map(|(buf, range)| buf[range].to_vec());
    assert_eq!(decoded, standard, "B64Field and the standard decoder disagree");
}

fn mode_values(data: &[u8]) {
    let [a, b, c] = parts::<3>(data);
    let (a, b, c) = (text(a), text(b), text(c));
    if SealProof::parse("sealProofB64", &a).is_ok() {
        assert_eq!(STANDARD.decode(a.as_bytes()).map(|v| v.len()).ok(), Some(32));
    }
    if let Ok(keys) = PublicKeys::parse(&a, &b) {
        assert_eq!((keys.ecc.decoded_len(), keys.kyber.decoded_len()), (32, 1184));
    }
    assert_eq!(PublicKeys::parse_optional(Some(&a), None).ok(), None, "half a key pair accepted");
    if let Ok(sealed) = SealedPrivateKeys::parse(&a, &b) {
        assert!((1..=16 * 1024).contains(&sealed.ecc.decoded_len()));
        assert!((1..=16 * 1024).contains(&sealed.kyber.decoded_len()));
    }
    if let Ok(envelope) = SecretEnvelope::parse(&a, &b, &c) {
        let ciphertext = STANDARD.decode(a.as_bytes()).expect("accepted ciphertext decodes");
        assert!((29..=MAX_VALUE_CIPHERTEXT).contains(&ciphertext.len()));
        assert_eq!(envelope.value_bytes as usize, ciphertext.len() - 29, "plaintext length of the value");
        assert!((1..=MAX_WRAP_LEN).contains(&envelope.wrap_ecc.decoded_len()));
        assert!((1..=MAX_WRAP_LEN).contains(&envelope.wrap_kyber.decoded_len()));
    }
}

fn make_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let keys = PrivateKeys::from_seeds([1; 32], [2; 64]);
    let public = keys.public_keys();
    let context = RecordContext { kind: "kv", org: Uuid::from_u128(1), owner: Uuid::from_u128(2), name: b"db-url" };
    let key = DataKey::from_bytes([3; 32]);
    let value = crypto::encrypt_value(&key, [4; 12], &context, b"postgres://app:pass@db/main");
    let (ecc, kyber) = crypto::wrap_data_key(&public, Uuid::from_u128(2), &context, &key, &[5; 64], [6; 12]);
    let b64 = |bytes: &[u8]| STANDARD.encode(bytes).into_bytes();
    let (value, ecc, kyber) = (b64(&value), b64(&ecc), b64(&kyber));
    let file = b64(&[7u8; 300]);
    vec![
        ("key-blob-value", [&[0u8, 0, 2][..], &value].concat()),
        ("key-blob-public-key", [&[0u8, 4, 0][..], &b64(&public.ecc_bytes())].concat()),
        ("in-place-file", [&[1u8, 0][..], &file].concat()),
        ("in-place-across-steps", [&[1u8, 9][..], &file].concat()),
        ("in-place-escaped", [&[1u8, 0][..], br"Pz8\/"].concat()),
        ("values-envelope", seed(2, &[&value, &ecc, &kyber])),
        ("values-public-keys", seed(2, &[&b64(&public.ecc_bytes()), &b64(&public.kyber_bytes()), b""])),
        ("values-seal-proof", seed(2, &[&b64(&[8; 32]), b"", b""])),
    ]
}

fuzz_target!(init: seeds::write_if_asked(make_seeds), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => mode_key_blob(rest),
        1 => mode_in_place(rest),
        _ => mode_values(rest),
    }
});
