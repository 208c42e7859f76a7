//! The envelope crypto: X-Wing known answers from the draft, round trips, and tampering.

use harden_domain::crypto::*;
use uuid::Uuid;

/// The X-Wing draft's published test vectors (draft-connolly-cfrg-xwing-kem-06, spec/test-vectors.json).
const VECTORS: &str = include_str!("xwing-draft-vectors.json");

fn hex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// X-Wing's key expansion: SHAKE256(sk, 96) = ML-KEM seed (d ‖ z) ‖ X25519 secret.
fn expand(sk: &[u8]) -> ([u8; 64], [u8; 32]) {
    use shake::digest::{ExtendableOutput, Update, XofReader};
    let mut shaker = shake::Shake256::default();
    shaker.update(sk);
    let mut reader = shaker.finalize_xof();
    let (mut m, mut x) = ([0u8; 64], [0u8; 32]);
    reader.read(&mut m);
    reader.read(&mut x);
    (m, x)
}

#[test]
fn the_hybrid_kem_is_x_wing_by_the_drafts_vectors() {
    let vectors: Vec<serde_json::Value> = serde_json::from_str(VECTORS).unwrap();
    assert!(!vectors.is_empty());
    for (i, v) in vectors.iter().enumerate() {
        let (mlkem_seed, x25519) = expand(&hex(&v["sk"]));
        let sk = PrivateKeys::from_seeds(x25519, mlkem_seed);
        let pk = sk.public_keys();
        let expected_pk = hex(&v["pk"]);
        assert_eq!(pk.kyber_bytes(), expected_pk[..1184], "vector {i}: ML-KEM public key");
        assert_eq!(pk.ecc_bytes(), expected_pk[1184..], "vector {i}: X25519 public key");

        let eseed: [u8; 64] = hex(&v["eseed"]).try_into().unwrap();
        let (ct_m, ct_x, ss) = encapsulate(&pk, &eseed);
        let expected_ct = hex(&v["ct"]);
        assert_eq!(ct_m, expected_ct[..1088], "vector {i}: ML-KEM ciphertext");
        assert_eq!(ct_x, expected_ct[1088..], "vector {i}: X25519 ciphertext");
        assert_eq!(ss.as_slice(), hex(&v["ss"]), "vector {i}: shared secret");
        assert_eq!(decapsulate(&sk, &ct_m, &ct_x).unwrap().as_slice(), hex(&v["ss"]), "vector {i}: decapsulation");
    }
}

fn user(n: u8) -> PrivateKeys {
    PrivateKeys::from_seeds([n; 32], [n.wrapping_add(100); 64])
}

fn ctx<'a>(owner: Uuid, name: &'a [u8]) -> RecordContext<'a> {
    RecordContext { kind: "kv", org: Uuid::from_u128(1), owner, name }
}

/// A small deterministic generator for the property tests.
struct Lcg(u64);
impl Lcg {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
        out
    }
}

#[test]
fn values_and_wraps_round_trip_for_many_sizes_and_keys() {
    let mut rng = Lcg(7);
    let alice = user(1);
    let alice_id = Uuid::from_u128(10);
    for len in [0usize, 1, 15, 16, 17, 100, 1000, 4096] {
        let key = DataKey::from_bytes(rng.bytes());
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let c = ctx(alice_id, b"db-url");
        let blob = encrypt_value(&key, rng.bytes(), &c, &plaintext);
        assert_eq!(
            blob.len(),
            plaintext.len() + harden_domain::envelope::VALUE_OVERHEAD,
            "the Backend's length formula holds"
        );
        assert_eq!(decrypt_value(&key, &c, &blob).unwrap().as_slice(), plaintext);

        let (ecc, kyber) = wrap_data_key(&alice.public_keys(), alice_id, &c, &key, &rng.bytes(), rng.bytes());
        assert_eq!((ecc.len(), kyber.len()), (WRAP_ECC_LEN, WRAP_KYBER_LEN));
        let unwrapped = unwrap_data_key(&alice, alice_id, &c, &ecc, &kyber).unwrap();
        assert_eq!(unwrapped.expose(), key.expose());
    }
}

#[test]
fn any_flipped_byte_fails_to_open_without_panicking() {
    let mut rng = Lcg(9);
    let alice = user(1);
    let id = Uuid::from_u128(10);
    let c = ctx(id, b"k");
    let key = DataKey::from_bytes(rng.bytes());
    let blob = encrypt_value(&key, rng.bytes(), &c, b"attack at dawn");
    for i in 0..blob.len() {
        let mut t = blob.clone();
        t[i] ^= 0x01;
        assert!(decrypt_value(&key, &c, &t).is_err(), "value byte {i}");
    }
    let (ecc, kyber) = wrap_data_key(&alice.public_keys(), id, &c, &key, &rng.bytes(), rng.bytes());
    for i in 0..ecc.len() {
        let mut t = ecc.clone();
        t[i] ^= 0x80;
        assert!(unwrap_data_key(&alice, id, &c, &t, &kyber).is_err(), "ecc wrap byte {i}");
    }
    for i in (0..kyber.len()).step_by(7).chain([kyber.len() - 1]) {
        let mut t = kyber.clone();
        t[i] ^= 0x80;
        assert!(unwrap_data_key(&alice, id, &c, &ecc, &t).is_err(), "kyber wrap byte {i}");
    }
    for truncated in [&blob[..0], &blob[..5], &blob[..blob.len() - 1]] {
        assert!(decrypt_value(&key, &c, truncated).is_err());
    }
    assert!(unwrap_data_key(&alice, id, &c, &ecc[..10], &kyber).is_err());
}

#[test]
fn ciphertexts_and_wraps_moved_elsewhere_fail_to_open() {
    let mut rng = Lcg(11);
    let (alice, bob) = (user(1), user(2));
    let (alice_id, bob_id) = (Uuid::from_u128(10), Uuid::from_u128(20));
    let key = DataKey::from_bytes(rng.bytes());
    let here = ctx(alice_id, b"db-url");
    let blob = encrypt_value(&key, rng.bytes(), &here, b"secret");
    assert!(decrypt_value(&key, &ctx(alice_id, b"other-key"), &blob).is_err(), "moved to another key name");
    assert!(decrypt_value(&key, &ctx(bob_id, b"db-url"), &blob).is_err(), "moved to another owner");
    let other_org = RecordContext { org: Uuid::from_u128(2), ..here };
    assert!(decrypt_value(&key, &other_org, &blob).is_err(), "moved to another org");

    let (ecc, kyber) = wrap_data_key(&alice.public_keys(), alice_id, &here, &key, &rng.bytes(), rng.bytes());
    assert!(unwrap_data_key(&bob, bob_id, &here, &ecc, &kyber).is_err(), "a wrap for another user");
    assert!(
        unwrap_data_key(&alice, alice_id, &ctx(alice_id, b"x"), &ecc, &kyber).is_err(),
        "a wrap moved to another record"
    );
    let (bob_ecc, bob_kyber) = wrap_data_key(&bob.public_keys(), bob_id, &here, &key, &rng.bytes(), rng.bytes());
    assert!(unwrap_data_key(&alice, alice_id, &here, &bob_ecc, &bob_kyber).is_err(), "bob's wrap, alice's keys");
    assert!(unwrap_data_key(&bob, bob_id, &here, &bob_ecc, &bob_kyber).is_ok());
}

/// Cheap parameters at the floor, to keep the test fast; the floor itself is enforced.
const TEST_KDF: KdfParams = KdfParams::MINIMUM;

#[test]
fn sealed_private_keys_open_only_with_the_right_secret_and_owner() {
    let mut rng = Lcg(13);
    let alice = user(1);
    let id = Uuid::from_u128(10);
    let kek = derive_kek(b"correct horse battery", rng.bytes(), TEST_KDF).unwrap();
    let (ecc, kyber) = seal_private_keys(&kek, id, &alice, [rng.bytes(), rng.bytes()]);
    let (params, salt) = seal_header(&ecc).unwrap();
    assert_eq!(params, TEST_KDF);
    assert_eq!(seal_header(&kyber).unwrap(), (params, salt), "one salt and one KDF run for both keys");

    let again = derive_kek(b"correct horse battery", salt, params).unwrap();
    let opened = open_private_keys(&again, id, &ecc, &kyber).unwrap();
    assert_eq!(opened.public_keys().ecc_bytes(), alice.public_keys().ecc_bytes());
    assert_eq!(opened.public_keys().kyber_bytes(), alice.public_keys().kyber_bytes());

    let wrong = derive_kek(b"correct horse battery!", salt, params).unwrap();
    assert_eq!(open_private_keys(&wrong, id, &ecc, &kyber).err(), Some(CryptoError::Open));
    assert!(open_private_keys(&again, Uuid::from_u128(11), &ecc, &kyber).is_err(), "sealed for another user");
    assert!(open_private_keys(&again, id, &kyber, &ecc).is_err(), "the two keys swapped");
    let mut tampered = ecc.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(open_private_keys(&again, id, &tampered, &kyber).is_err());
}

#[test]
fn key_derivation_refuses_parameters_outside_the_owasp_floor_and_the_ceiling() {
    for weak in [
        KdfParams { m_kib: 19 * 1024 - 1, t: 2, p: 1 },
        KdfParams { m_kib: 64 * 1024, t: 1, p: 1 },
        KdfParams { m_kib: 64 * 1024, t: 3, p: 0 },
        KdfParams { m_kib: 64 * 1024, t: 17, p: 1 },
        KdfParams { m_kib: 1024 * 1024 + 1, t: 3, p: 1 },
    ] {
        assert_eq!(derive_kek(b"secret", [0; 16], weak).err(), Some(CryptoError::WeakParameters), "{weak:?}");
    }
    assert!(KdfParams::DEFAULT.checked().is_ok());
    let mut header = vec![1u8];
    for w in [1024u32, 1, 1] {
        header.extend_from_slice(&w.to_be_bytes());
    }
    header.extend_from_slice(&[0u8; 16 + 12 + 16]);
    assert_eq!(seal_header(&header).err(), Some(CryptoError::WeakParameters), "a blob cannot lower the floor");
}

#[test]
fn wrong_public_key_bytes_are_refused() {
    assert!(PublicKeys::from_bytes(&[0u8; 31], &[0u8; 1184]).is_err());
    assert!(PublicKeys::from_bytes(&[0u8; 32], &[0u8; 1183]).is_err());
    let pk = user(3).public_keys();
    assert!(PublicKeys::from_bytes(&pk.ecc_bytes(), &pk.kyber_bytes()).is_ok());
}

#[test]
fn a_message_sealed_to_a_user_opens_only_for_them_and_in_its_context() {
    use harden_domain::crypto::{open_sealed, seal_to};
    let alice = PrivateKeys::from_seeds([1; 32], [2; 64]);
    let bob = PrivateKeys::from_seeds([3; 32], [4; 64]);
    let (alice_id, bob_id) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    let context = RecordContext { kind: "share-alias", org: uuid::Uuid::from_u128(9), owner: alice_id, name: b"db" };
    let blob =
        seal_to(&bob.public_keys(), bob_id, &context, b"primary database", (&[5; 32], &[6; 64], [7; 12], [8; 12]));
    assert_eq!(open_sealed(&bob, bob_id, &context, &blob).unwrap().as_slice(), b"primary database");
    assert!(open_sealed(&alice, alice_id, &context, &blob).is_err());
    let elsewhere = RecordContext { name: b"other", ..context };
    assert!(open_sealed(&bob, bob_id, &elsewhere, &blob).is_err());
    for i in 0..blob.len() {
        let mut tampered = blob.clone();
        tampered[i] ^= 1;
        assert!(open_sealed(&bob, bob_id, &context, &tampered).is_err(), "byte {i}");
    }
    assert!(open_sealed(&bob, bob_id, &context, &blob[..10]).is_err());
}

#[test]
fn recovery_round_trip_needs_the_trustee_the_temporary_secret_and_the_answer() {
    use harden_domain::recovery_crypto::*;
    let (org, owner, trustee_id) = (Uuid::from_u128(9), Uuid::from_u128(1), Uuid::from_u128(2));
    let owner_keys = PrivateKeys::from_seeds([1; 32], [2; 64]);
    let trustee = PrivateKeys::from_seeds([3; 32], [4; 64]);
    let header = MaskHeader { masked: true, params: KdfParams::MINIMUM, salt: [5; 16] };
    let mask = mask_key("Rex", &header).unwrap();
    let masked = apply_mask(&owner_keys, &mask);
    let r = [(&[6; 32], &[7; 64], [8; 12], [9; 12]), (&[10; 32], &[11; 64], [12; 12], [13; 12])];
    let (ecc, kyber) = make_share(&trustee.public_keys(), trustee_id, org, owner, &masked, &header, r);

    // The trustee opens the share, but holds masked keys only.
    let (opened, seen) = open_share(&trustee, trustee_id, org, owner, &ecc, &kyber).unwrap();
    assert_eq!(seen, header);
    assert_ne!(opened.public_keys().ecc_bytes(), owner_keys.public_keys().ecc_bytes());
    assert!(open_share(&owner_keys, owner, org, owner, &ecc, &kyber).is_err(), "only the trustee opens it");

    let temporary = derive_kek(b"temporary secret", [14; 16], KdfParams::MINIMUM).unwrap();
    let (r_ecc, r_kyber) = seal_restore(&temporary, owner, &opened, &seen, [[15; 12], [16; 12]]);
    let (h, params, salt) = restore_headers(&r_ecc).unwrap();
    assert_eq!((h, params, salt), (header, KdfParams::MINIMUM, [14; 16]));
    let expected = owner_keys.public_keys();
    // The answer (case and spaces do not matter) unmasks; a wrong one or none does not.
    let unmask = mask_key("  rex ", &header).unwrap();
    let restored = open_restore(&temporary, owner, &r_ecc, &r_kyber, Some(&unmask), &expected).unwrap();
    assert_eq!(restored.public_keys().kyber_bytes(), expected.kyber_bytes());
    let wrong = mask_key("Max", &header).unwrap();
    assert!(open_restore(&temporary, owner, &r_ecc, &r_kyber, Some(&wrong), &expected).is_err());
    assert!(open_restore(&temporary, owner, &r_ecc, &r_kyber, None, &expected).is_err());
    let other_temp = derive_kek(b"another secret", [14; 16], KdfParams::MINIMUM).unwrap();
    assert!(open_restore(&other_temp, owner, &r_ecc, &r_kyber, Some(&unmask), &expected).is_err());

    // Without an answer the seeds travel unmasked, still only to the trustee.
    let (ecc, kyber) = make_share(&trustee.public_keys(), trustee_id, org, owner, &owner_keys, &MaskHeader::NONE, r);
    let (plain, seen) = open_share(&trustee, trustee_id, org, owner, &ecc, &kyber).unwrap();
    assert!(!seen.masked);
    let (r_ecc, r_kyber) = seal_restore(&temporary, owner, &plain, &seen, [[15; 12], [16; 12]]);
    assert!(open_restore(&temporary, owner, &r_ecc, &r_kyber, None, &expected).is_ok());
}

#[test]
fn files_sealed_in_place_are_values_and_open_in_place_only_where_they_belong() {
    let mut rng = Lcg(11);
    let key = DataKey::from_bytes(rng.bytes());
    let binding = file_binding(b"encrypted name");
    let here = RecordContext { kind: "file", org: Uuid::from_u128(1), owner: Uuid::from_u128(2), name: &binding };
    for (n, before, after) in [(0usize, 0usize, 0usize), (1, 20, 0), (100, 5, 3), (70_000, 40, 100)] {
        let plaintext: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        let mut buf = vec![b'x'; before];
        buf.extend_from_slice(&plaintext);
        buf.extend(std::iter::repeat_n(b'y', after));
        let range = seal_in_place(&key, rng.bytes(), &here, &mut buf, before..before + n);
        let blob = buf[range.clone()].to_vec();
        assert_eq!(blob.len(), n + 29);
        // The same format as a value: decrypt_value opens it.
        assert_eq!(decrypt_value(&key, &here, &blob).unwrap().as_slice(), &plaintext[..], "{n} bytes");
        let mut opened = blob.clone();
        let inner = open_in_place(&key, &here, &mut opened).unwrap();
        assert_eq!(&opened[inner], &plaintext[..]);
        // Bound to its name: under another file's binding it does not open.
        let other_binding = file_binding(b"another name");
        let elsewhere = RecordContext { name: &other_binding, ..here };
        assert!(open_in_place(&key, &elsewhere, &mut blob.clone()).is_err());
        // A flipped byte anywhere fails.
        for i in [0, 1, 13, blob.len() - 1] {
            let mut tampered = blob.clone();
            tampered[i] ^= 1;
            assert!(open_in_place(&key, &here, &mut tampered).is_err(), "byte {i} of {n}");
        }
    }
}
