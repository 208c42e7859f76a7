//! harden's own test vectors: every format the README's "Envelope crypto" specifies, made from
//! fixed keys, seeds, nonces and contexts, and checked in (`harden-vectors.json`) so another
//! implementation (the dashboard's page, a client in another language) can check itself against
//! them. Run with `HARDEN_WRITE_VECTORS=1` to write the file again after a deliberate format change.

use harden_domain::crypto::*;
use harden_domain::recovery_crypto::{self, MaskHeader};
use serde_json::{json, Value};
use uuid::Uuid;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harden-vectors.json");

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The file of the vectors: its name, content and the owner's sealed wrap of its key.
const FILE_NAME: &[u8] = b"q4/report.pdf";
const FILE_CONTENT: &[u8] = b"%PDF-1.7 quarterly figures";
/// The alias of the share vector.
const ALIAS: &[u8] = b"primary database";
/// The recovery vectors: the owner's answer as typed (normalised before it is stretched), the
/// trustee's temporary secret, the Backend's master key and the pending restore's id.
const ANSWER: &str = "  The Name of my First Dog ";
const TEMPORARY_SECRET: &[u8] = b"a temporary secret from the trustee";
const MASTER_KEY: [u8; 32] = [0x1f; 32];
const RESTORE_ID: Uuid = Uuid::from_u128(0x3333_3333_3333_4333_8333_3333_3333_3333);

/// The associated data of the README's `AD(purpose, recipient)` for `context`, built from the
/// specification's layout (not from the code), so the vectors check the layout too.
fn ad(purpose: &str, context: &RecordContext<'_>, recipient: Option<Uuid>) -> Vec<u8> {
    let mut out = format!("harden/v1/{purpose}\0{}\0", context.kind).into_bytes();
    out.extend_from_slice(context.org.as_bytes());
    out.extend_from_slice(context.owner.as_bytes());
    out.extend_from_slice(recipient.unwrap_or_default().as_bytes());
    out.extend_from_slice(&(context.name.len() as u32).to_be_bytes());
    out.extend_from_slice(context.name);
    out
}

/// The recovery challenge's answer as the Backend computes it (commands/src/recovery.rs):
/// `HMAC-SHA256(HKDF-SHA256(salt none, IKM master key, info "harden/v1/recovery-challenge"), owner ‖ restore id)`.
fn challenge_answer(master_key: &[u8; 32], owner: Uuid, restore_id: Uuid) -> ([u8; 32], [u8; 32]) {
    use hmac::Mac;
    let mut key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(None, master_key).expand(b"harden/v1/recovery-challenge", &mut key).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(owner.as_bytes());
    mac.update(restore_id.as_bytes());
    (key, mac.finalize().into_bytes().into())
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
    let unverified = harden_domain::bundle::unverified_fingerprint(&public);

    // A file: its name under the file-name context, its content bound to the name's ciphertext.
    let file_key = DataKey::from_bytes([0x10; 32]);
    let name_context = RecordContext { kind: "file-name", org, owner, name: &[] };
    let file_name = encrypt_value(&file_key, [0x11; 12], &name_context, FILE_NAME);
    let binding = file_binding(&file_name);
    let file_context = RecordContext { kind: "file", org, owner, name: &binding };
    let mut buf = FILE_CONTENT.to_vec();
    let at_range = seal_in_place(&file_key, [0x12; 12], &file_context, &mut buf, 0..FILE_CONTENT.len());
    let file_content = buf[at_range].to_vec();
    assert_eq!(file_content, encrypt_value(&file_key, [0x12; 12], &file_context, FILE_CONTENT));
    let (file_ecc, file_kyber) =
        wrap_for_owner(&owner_keys, &file_context, FILE_EPOCH, &file_key, &[0x13; 64], [0x14; 12]);

    // A share's alias, sealed to the recipient.
    let alias_context = RecordContext { kind: "share-alias", org, owner, name };
    let alias = seal_to(
        &recipient_keys.public_keys(),
        recipient,
        &alias_context,
        ALIAS,
        (&[0x15; 32], &[0x16; 64], [0x17; 12], [0x18; 12]),
    );

    // Recovery: the owner's keys masked with the answer and shared to the recipient as trustee; the
    // trustee's restore under a temporary secret; the Backend's completion challenge.
    let header = MaskHeader { masked: true, params: KdfParams::MINIMUM, salt: [0x19; 16] };
    let mask = recovery_crypto::mask_key(ANSWER, &header).unwrap();
    let masked = recovery_crypto::apply_mask(&owner_keys, &mask);
    let (masked_x, masked_m) = masked.seeds();
    let randomness =
        [(&[0x1a; 32], &[0x1b; 64], [0x1c; 12], [0x1d; 12]), (&[0x2a; 32], &[0x2b; 64], [0x2c; 12], [0x2d; 12])];
    let (share_x, share_m) =
        recovery_crypto::make_share(&recipient_keys.public_keys(), recipient, org, owner, &masked, &header, randomness);
    let temporary = derive_kek(TEMPORARY_SECRET, [0x1e; 16], KdfParams::MINIMUM).unwrap();
    let (restore_x, restore_m) =
        recovery_crypto::seal_restore(&temporary, owner, &masked, &header, [[0x20; 12], [0x21; 12]]);
    let (challenge_key, answer) = challenge_answer(&MASTER_KEY, owner, RESTORE_ID);
    let challenge_context = recovery_crypto::challenge_context(org.into(), owner.into(), &RESTORE_ID);
    let challenge =
        seal_to(&public, owner, &challenge_context, &answer, (&[0x22; 32], &[0x23; 64], [0x24; 12], [0x25; 12]));
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
            "associatedDataX25519": hex(b"harden/v1/sealed-key\0x25519\0".iter().chain(owner.as_bytes()).copied().collect::<Vec<_>>().as_slice()),
            "associatedDataMlKem768": hex(b"harden/v1/sealed-key\0ml-kem-768\0".iter().chain(owner.as_bytes()).copied().collect::<Vec<_>>().as_slice()),
        },
        "associatedData": {
            "valueV1": hex(&ad("value", &context, None)),
            "valueV2": hex(&[ad("value", &context, None), 3u64.to_be_bytes().to_vec(), 2u64.to_be_bytes().to_vec()].concat()),
            "shareWrap": hex(&ad("wrap", &context, Some(recipient))),
            "ownerSeal": hex(&ad("owner-seal", &context, Some(owner))),
        },
        "unverifiedFingerprint": unverified,
        "file": {
            "fileName": hex(FILE_NAME), "content": hex(FILE_CONTENT), "dataKey": hex(file_key.expose()),
            "nameNonce": hex(&[0x11; 12]), "encryptedFileName": hex(&file_name),
            "nameAssociatedData": hex(&ad("value", &name_context, None)),
            "binding": hex(&binding),
            "contentNonce": hex(&[0x12; 12]), "ciphertext": hex(&file_content),
            "contentAssociatedData": hex(&ad("value", &file_context, None)),
            "epoch": FILE_EPOCH,
            "ownerSealedWrap": {
                "eseed": hex(&[0x13; 64]), "nonce": hex(&[0x14; 12]),
                "encryptedAesKeyEcc": hex(&file_ecc), "encryptedAesKeyKyber": hex(&file_kyber),
            },
        },
        "shareAlias": {
            "kind": "share-alias", "name": hex(name), "alias": hex(ALIAS),
            "messageKey": hex(&[0x15; 32]), "eseed": hex(&[0x16; 64]), "wrapNonce": hex(&[0x17; 12]), "valueNonce": hex(&[0x18; 12]),
            "blob": hex(&alias),
        },
        "recovery": {
            "answer": ANSWER, "normalizedAnswer": *recovery_crypto::normalize_answer(ANSWER),
            "maskSalt": hex(&header.salt), "mKib": header.params.m_kib, "t": header.params.t, "p": header.params.p,
            "maskHeader": hex(&header.to_bytes()),
            "maskKey": hex(mask.key_bytes()),
            "maskedX25519Secret": hex(masked_x.as_slice()), "maskedMlKemSeed": hex(masked_m.as_slice()),
            "share": {
                "trustee": recipient,
                "randomness": [
                    { "messageKey": hex(&[0x1a; 32]), "eseed": hex(&[0x1b; 64]), "wrapNonce": hex(&[0x1c; 12]), "valueNonce": hex(&[0x1d; 12]) },
                    { "messageKey": hex(&[0x2a; 32]), "eseed": hex(&[0x2b; 64]), "wrapNonce": hex(&[0x2c; 12]), "valueNonce": hex(&[0x2d; 12]) },
                ],
                "x25519": hex(&share_x), "mlKem768": hex(&share_m),
            },
            "restore": {
                "temporarySecret": hex(TEMPORARY_SECRET), "salt": hex(&[0x1e; 16]),
                "mKib": KdfParams::MINIMUM.m_kib, "t": KdfParams::MINIMUM.t, "p": KdfParams::MINIMUM.p,
                "nonces": [hex(&[0x20; 12]), hex(&[0x21; 12])],
                "x25519": hex(&restore_x), "mlKem768": hex(&restore_m),
            },
            "challenge": {
                "masterKey": hex(&MASTER_KEY), "restoreId": RESTORE_ID, "key": hex(&challenge_key), "answer": hex(&answer),
                "messageKey": hex(&[0x22; 32]), "eseed": hex(&[0x23; 64]), "wrapNonce": hex(&[0x24; 12]), "valueNonce": hex(&[0x25; 12]),
                "blob": hex(&challenge),
            },
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
    let unverified = v["unverifiedFingerprint"].as_str().unwrap();
    assert_eq!(unverified, harden_domain::bundle::unverified_fingerprint(&owner_keys.public_keys()));
    assert_eq!((unverified.len(), unverified.split(' ').count()), (64 + 15, 16), "hex in groups of four");

    // The associated data as the README lays it out opens what the code sealed, with plain AES-256-GCM.
    let raw_open = |key: &[u8], blob: &[u8], ad: &[u8]| {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(key).unwrap();
        let nonce = aes_gcm::Nonce::try_from(&blob[..NONCE_LEN]).unwrap();
        cipher
            .decrypt(&nonce, Payload { msg: &blob[NONCE_LEN..], aad: ad })
            .expect("opens with the specified associated data")
    };
    let data_key = bytes("/inputs/dataKey");
    assert_eq!(raw_open(&data_key, &bytes("/valueV1/blob")[1..], &bytes("/associatedData/valueV1")), plaintext);
    assert_eq!(raw_open(&data_key, &bytes("/valueV2/blob")[1..], &bytes("/associatedData/valueV2")), plaintext);
    let file_key = bytes("/file/dataKey");
    assert_eq!(
        raw_open(&file_key, &bytes("/file/encryptedFileName")[1..], &bytes("/file/nameAssociatedData")),
        bytes("/file/fileName")
    );
    assert_eq!(
        raw_open(&file_key, &bytes("/file/ciphertext")[1..], &bytes("/file/contentAssociatedData")),
        bytes("/file/content")
    );
    let s = &v["sealedPrivateKeys"];
    let salt: [u8; 16] = bytes("/sealedPrivateKeys/salt").try_into().unwrap();
    let params = KdfParams {
        m_kib: s["mKib"].as_u64().unwrap() as u32,
        t: s["t"].as_u64().unwrap() as u32,
        p: s["p"].as_u64().unwrap() as u32,
    };
    let kek = derive_kek(&bytes("/sealedPrivateKeys/userSecret"), salt, params).unwrap();
    let sealed_x = bytes("/sealedPrivateKeys/x25519");
    assert_eq!(
        (sealed_x[0], &sealed_x[1..13], &sealed_x[13..29]),
        (1, [0, 0, 0x4c, 0, 0, 0, 0, 2, 0, 0, 0, 1].as_slice(), salt.as_slice())
    );
    assert_eq!(
        raw_open(kek.key_bytes(), &sealed_x[29..], &bytes("/sealedPrivateKeys/associatedDataX25519")),
        [0x01; 32]
    );
    let sealed_m = bytes("/sealedPrivateKeys/mlKem768");
    assert_eq!(
        raw_open(kek.key_bytes(), &sealed_m[29..], &bytes("/sealedPrivateKeys/associatedDataMlKem768")),
        [0x02; 64]
    );

    // A file: the name, the content bound to the name's ciphertext, the owner's sealed wrap at epoch 0.
    let encrypted_name = bytes("/file/encryptedFileName");
    let name_context = RecordContext { kind: "file-name", org, owner, name: &[] };
    let binding = file_binding(&encrypted_name);
    assert_eq!(binding.as_slice(), bytes("/file/binding"));
    let file_context = RecordContext { kind: "file", org, owner, name: &binding };
    let (ecc, kyber) =
        (bytes("/file/ownerSealedWrap/encryptedAesKeyEcc"), bytes("/file/ownerSealedWrap/encryptedAesKeyKyber"));
    assert_eq!((ecc[0], ecc.len()), (FORMAT_V2, WRAP_ECC_SEALED_LEN));
    assert!(owner_sealed(&owner_keys, &file_context, FILE_EPOCH, &ecc, &kyber));
    assert!(!owner_sealed(&owner_keys, &file_context, 1, &ecc, &kyber), "the file's tag is of epoch 0");
    let file_key = unwrap_data_key(&owner_keys, owner, &file_context, &ecc, &kyber).unwrap();
    assert_eq!(file_key.expose().as_slice(), bytes("/file/dataKey"));
    assert_eq!(decrypt_value(&file_key, &name_context, &encrypted_name).unwrap().as_slice(), bytes("/file/fileName"));
    let mut content = bytes("/file/ciphertext");
    let range = open_in_place(&file_key, &file_context, &mut content).unwrap();
    assert_eq!(&content[range], bytes("/file/content").as_slice());
    let other = RecordContext { kind: "file", org, owner, name: &[0u8; 32] };
    assert!(decrypt_value(&file_key, &other, &bytes("/file/ciphertext")).is_err(), "bound to the name's ciphertext");

    // The alias opens for the recipient only.
    let alias_context = RecordContext { kind: "share-alias", org, owner, name: &name };
    let alias = bytes("/shareAlias/blob");
    assert_eq!(alias.len(), WRAP_ECC_LEN + WRAP_KYBER_LEN + 1 + NONCE_LEN + ALIAS.len() + TAG_LEN);
    assert_eq!(open_sealed(&recipient_keys, recipient, &alias_context, &alias).unwrap().as_slice(), ALIAS);
    assert!(open_sealed(&owner_keys, owner, &alias_context, &alias).is_err());

    // Recovery: the trustee opens the share to masked seeds; the answer, normalised, unmasks them.
    let (share_x, share_m) = (bytes("/recovery/share/x25519"), bytes("/recovery/share/mlKem768"));
    assert_eq!(share_x[0], 1);
    assert_eq!(&share_x[1..30], bytes("/recovery/maskHeader").as_slice());
    let (masked, header) =
        recovery_crypto::open_share(&recipient_keys, recipient, org, owner, &share_x, &share_m).unwrap();
    assert_eq!(masked.seeds().0.as_slice(), bytes("/recovery/maskedX25519Secret"));
    assert_eq!(masked.seeds().1.as_slice(), bytes("/recovery/maskedMlKemSeed"));
    assert_eq!(v["recovery"]["normalizedAnswer"], "the name of my first dog");
    let mask = recovery_crypto::mask_key("the name of my first dog", &header).unwrap();
    assert_eq!(mask.key_bytes().as_slice(), bytes("/recovery/maskKey"));
    let unmasked = recovery_crypto::apply_mask(&masked, &mask);
    assert_eq!(*unmasked.seeds().0, [0x01; 32]);
    assert_eq!(*unmasked.seeds().1, [0x02; 64]);
    // The restore opens with the temporary secret and, unmasked, is the owner's keys.
    let (restore_x, restore_m) = (bytes("/recovery/restore/x25519"), bytes("/recovery/restore/mlKem768"));
    let (header_r, params, salt) = recovery_crypto::restore_headers(&restore_x).unwrap();
    assert_eq!(
        (header_r, params, salt.as_slice()),
        (header, KdfParams::MINIMUM, bytes("/recovery/restore/salt").as_slice())
    );
    let temporary = derive_kek(&bytes("/recovery/restore/temporarySecret"), salt, params).unwrap();
    let public = owner_keys.public_keys();
    let restored =
        recovery_crypto::open_restore(&temporary, owner, &restore_x, &restore_m, Some(&mask), &public).unwrap();
    assert_eq!(*restored.seeds().0, [0x01; 32]);
    let wrong = recovery_crypto::mask_key("another answer", &header).unwrap();
    assert!(recovery_crypto::open_restore(&temporary, owner, &restore_x, &restore_m, Some(&wrong), &public).is_err());
    // The challenge opens with the owner's keys to the Backend's answer.
    let restore_id: Uuid = v["recovery"]["challenge"]["restoreId"].as_str().unwrap().parse().unwrap();
    let context = recovery_crypto::challenge_context(org.into(), owner.into(), &restore_id);
    let opened = open_sealed(&restored, owner, &context, &bytes("/recovery/challenge/blob")).unwrap();
    assert_eq!(opened.as_slice(), bytes("/recovery/challenge/answer"));
    assert_eq!(challenge_answer(&MASTER_KEY, owner, restore_id).1.as_slice(), opened.as_slice());
}
