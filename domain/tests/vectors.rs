//! harden's own test vectors: every format the README's "Envelope crypto" specifies, made from
//! fixed keys, seeds, nonces and contexts, and checked in (`harden-vectors.json`) so another
//! implementation (the dashboard's page, a client in another language) can check itself against
//! them. Run with `HARDEN_WRITE_VECTORS=1` to write the file again after a deliberate format change.

use harden_domain::crypto::*;
use serde_json::{json, Value};
use uuid::Uuid;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harden-vectors.json");

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Every vector, computed now.
fn vectors() -> Value {
    let org = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let owner = Uuid::from_u128(0x1111_1111_1111_4111_8111_1111_1111_1111);
    let recipient = Uuid::from_u128(0x2222_2222_2222_4222_8222_2222_2222_2222);
    let owner_keys = PrivateKeys::from_seeds([0x01; 32], [0x02; 64]);
    let recipient_keys = PrivateKeys::from_seeds([0x03; 32], [0x04; 64]);
    let name = b"db-url";
    let context = RecordContext { kind: "kv", org, owner, name };
    let key = DataKey::from_bytes([0x05; 32]);
    let plaintext = b"postgres://user:pw@db/app";
    let at = VersionAt { version: 3, epoch: 2 };
    let value_v1 = encrypt_value(&key, [0x06; 12], &context, plaintext);
    let value_v2 = encrypt_value_at(&key, [0x07; 12], &context, at, plaintext);
    let (owner_ecc, owner_kyber) = wrap_for_owner(&owner_keys, &context, at.epoch, &key, &[0x08; 64], [0x09; 12]);
    let (share_ecc, share_kyber) =
        wrap_data_key(&recipient_keys.public_keys(), recipient, &context, &key, &[0x0a; 64], [0x0b; 12]);
    let kek = derive_kek(b"correct horse battery staple", [0x0c; 16], KdfParams::MINIMUM).unwrap();
    let (sealed_ecc, sealed_kyber) = seal_private_keys(&kek, owner, &owner_keys, [[0x0d; 12], [0x0e; 12]]);
    let public = owner_keys.public_keys();
    let bundle = harden_domain::bundle::KeyBundle::sign(&owner_keys, org, owner);
    let fingerprint = harden_domain::bundle::KeyBundle::verify(&bundle, org, owner).unwrap().fingerprint().to_owned();
    let pins = harden_domain::bundle::Pins::from([(recipient, fingerprint.clone())]);
    let sealed_pins = harden_domain::bundle::seal_pins(&owner_keys, owner, &pins, [0x0f; 12]);
    json!({
        "inputs": {
            "org": org, "owner": owner, "recipient": recipient, "kind": "kv", "name": hex(name),
            "ownerX25519Secret": hex(&[0x01; 32]), "ownerMlKemSeed": hex(&[0x02; 64]),
            "recipientX25519Secret": hex(&[0x03; 32]), "recipientMlKemSeed": hex(&[0x04; 64]),
            "dataKey": hex(key.expose()), "plaintext": hex(plaintext), "version": at.version, "epoch": at.epoch,
        },
        "ownerPublicKeys": { "x25519": hex(&public.ecc_bytes()), "mlKem768": hex(&public.kyber_bytes()) },
        "valueV1": { "nonce": hex(&[0x06; 12]), "blob": hex(&value_v1) },
        "valueV2": { "nonce": hex(&[0x07; 12]), "blob": hex(&value_v2) },
        "ownerSealedWrap": {
            "eseed": hex(&[0x08; 64]), "nonce": hex(&[0x09; 12]),
            "encryptedAesKeyEcc": hex(&owner_ecc), "encryptedAesKeyKyber": hex(&owner_kyber),
        },
        "shareWrap": {
            "eseed": hex(&[0x0a; 64]), "nonce": hex(&[0x0b; 12]),
            "encryptedAesKeyEcc": hex(&share_ecc), "encryptedAesKeyKyber": hex(&share_kyber),
        },
        "keyBundle": { "bundle": hex(&bundle), "fingerprint": fingerprint },
        "pins": { "nonce": hex(&[0x0f; 12]), "blob": hex(&sealed_pins) },
        "sealedPrivateKeys": {
            "userSecret": hex(b"correct horse battery staple"), "salt": hex(&[0x0c; 16]),
            "mKib": KdfParams::MINIMUM.m_kib, "t": KdfParams::MINIMUM.t, "p": KdfParams::MINIMUM.p,
            "nonces": [hex(&[0x0d; 12]), hex(&[0x0e; 12])],
            "x25519": hex(&sealed_ecc), "mlKem768": hex(&sealed_kyber),
            "sealProof": hex(seal_proof(&kek, owner).as_slice()),
        },
    })
}

#[test]
fn the_checked_in_vectors_are_what_this_code_makes() {
    let now = vectors();
    if std::env::var_os("HARDEN_WRITE_VECTORS").is_some() {
        std::fs::write(FILE, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
    }
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string(FILE).expect("tests/harden-vectors.json")).unwrap();
    assert_eq!(now, checked_in, "a format changed: update the README's specification, then the vectors");
}

#[test]
fn the_vectors_open_as_the_specification_says() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    let bytes = |p: &str| hex::decode(v.pointer(p).unwrap().as_str().unwrap()).unwrap();
    let org = v["inputs"]["org"].as_str().unwrap().parse().unwrap();
    let owner: Uuid = v["inputs"]["owner"].as_str().unwrap().parse().unwrap();
    let recipient: Uuid = v["inputs"]["recipient"].as_str().unwrap().parse().unwrap();
    let owner_keys = PrivateKeys::from_seeds([0x01; 32], [0x02; 64]);
    let recipient_keys = PrivateKeys::from_seeds([0x03; 32], [0x04; 64]);
    let name = bytes("/inputs/name");
    let context = RecordContext { kind: "kv", org, owner, name: &name };
    let at = VersionAt { version: 3, epoch: 2 };
    let plaintext = bytes("/inputs/plaintext");
    let (ecc, kyber) = (bytes("/ownerSealedWrap/encryptedAesKeyEcc"), bytes("/ownerSealedWrap/encryptedAesKeyKyber"));
    assert!(owner_sealed(&owner_keys, &context, at.epoch, &ecc, &kyber));
    assert!(!owner_sealed(&owner_keys, &context, at.epoch + 1, &ecc, &kyber), "the tag binds the epoch");
    assert!(!owner_sealed(&recipient_keys, &context, at.epoch, &ecc, &kyber), "only the owner's keys make the tag");
    let key = unwrap_data_key(&owner_keys, owner, &context, &ecc, &kyber).unwrap();
    let (opened, bound) = decrypt_value_at(&key, &context, at, &bytes("/valueV2/blob")).unwrap();
    assert_eq!((opened.as_slice(), bound), (plaintext.as_slice(), true));
    for other in [VersionAt { version: 2, epoch: 2 }, VersionAt { version: 3, epoch: 3 }] {
        assert!(decrypt_value_at(&key, &context, other, &bytes("/valueV2/blob")).is_err(), "{other:?}");
    }
    let (opened, bound) = decrypt_value_at(&key, &context, at, &bytes("/valueV1/blob")).unwrap();
    assert_eq!((opened.as_slice(), bound), (plaintext.as_slice(), false));
    let shared = unwrap_data_key(
        &recipient_keys,
        recipient,
        &context,
        &bytes("/shareWrap/encryptedAesKeyEcc"),
        &bytes("/shareWrap/encryptedAesKeyKyber"),
    )
    .unwrap();
    assert_eq!(shared.expose(), key.expose());
    let bundle = harden_domain::bundle::KeyBundle::verify(&bytes("/keyBundle/bundle"), org, owner).unwrap();
    assert_eq!(bundle.fingerprint(), v["keyBundle"]["fingerprint"].as_str().unwrap());
    assert_eq!(bundle.keys().ecc_bytes(), owner_keys.public_keys().ecc_bytes());
    let pins = harden_domain::bundle::open_pins(&owner_keys, owner, &bytes("/pins/blob")).unwrap();
    assert_eq!(pins[&recipient], bundle.fingerprint());
}
