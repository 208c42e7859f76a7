//! The envelope crypto's costs: one unlock (Argon2id at the default parameters), one wrap and one
//! unwrap of a data key, the owner-seal tag (made with the owner's wrap, checked before a key is
//! reused), a 1 KiB value in both formats, a key bundle's signing and verification, and a file's
//! owner-sealed wrap and sealing (name, content in place, wrap). `cargo bench -p harden-domain`.

use criterion::{criterion_group, criterion_main, Criterion};
use harden_domain::bundle::KeyBundle;
use harden_domain::crypto::{self, DataKey, KdfParams, PrivateKeys, RecordContext, VersionAt};
use uuid::Uuid;

fn envelope(c: &mut Criterion) {
    let keys = PrivateKeys::from_seeds([1; 32], [2; 64]);
    let public = keys.public_keys();
    let user = Uuid::from_u128(1);
    let context = RecordContext { kind: "kv", org: user, owner: user, name: b"bench" };
    let data_key = DataKey::from_bytes([3; 32]);
    let (ecc, kyber) = crypto::wrap_data_key(&public, user, &context, &data_key, &[5; 64], [6; 12]);

    let mut group = c.benchmark_group("unlock");
    group.sample_size(10);
    group.bench_function("argon2id m=64MiB t=3 p=1", |b| {
        b.iter(|| crypto::derive_kek(b"a user secret of some length", [4; 16], KdfParams::DEFAULT).unwrap())
    });
    group.finish();
    c.bench_function("wrap (X-Wing encapsulate + AES-256-GCM)", |b| {
        b.iter(|| crypto::wrap_data_key(&public, user, &context, &data_key, &[5; 64], [6; 12]))
    });
    c.bench_function("unwrap (X-Wing decapsulate + AES-256-GCM)", |b| {
        b.iter(|| crypto::unwrap_data_key(&keys, user, &context, &ecc, &kyber).unwrap())
    });
    c.bench_function("owner wrap (wrap + owner-seal tag)", |b| {
        b.iter(|| crypto::wrap_for_owner(&keys, &context, 1, &data_key, &[5; 64], [6; 12]))
    });
    let (sealed_ecc, sealed_kyber) = crypto::wrap_for_owner(&keys, &context, 1, &data_key, &[5; 64], [6; 12]);
    c.bench_function("owner-seal check", |b| {
        b.iter(|| assert!(crypto::owner_sealed(&keys, &context, 1, &sealed_ecc, &sealed_kyber)))
    });
    let value = vec![7u8; 1024];
    let at = VersionAt { version: 2, epoch: 1 };
    c.bench_function("value 1 KiB, format 1 (encrypt)", |b| {
        b.iter(|| crypto::encrypt_value(&data_key, [8; 12], &context, &value))
    });
    c.bench_function("value 1 KiB, format 2 (encrypt, version-bound)", |b| {
        b.iter(|| crypto::encrypt_value_at(&data_key, [8; 12], &context, at, &value))
    });

    c.bench_function("bundle sign (Ed25519 + ML-DSA-65)", |b| b.iter(|| KeyBundle::sign(&keys, user, user)));
    let bundle = KeyBundle::sign(&keys, user, user);
    c.bench_function("bundle verify (both signatures)", |b| b.iter(|| KeyBundle::verify(&bundle, user, user).unwrap()));

    let name_context = RecordContext { kind: "file-name", org: user, owner: user, name: b"" };
    let encrypted_name = crypto::encrypt_value(&data_key, [9; 12], &name_context, b"report.pdf");
    let binding = crypto::file_binding(&encrypted_name);
    let file = RecordContext { kind: "file", org: user, owner: user, name: &binding };
    c.bench_function("file owner wrap (wrap + owner-seal tag, epoch 0)", |b| {
        b.iter(|| crypto::wrap_for_owner(&keys, &file, crypto::FILE_EPOCH, &data_key, &[5; 64], [6; 12]))
    });
    let content = vec![7u8; 1024 * 1024];
    c.bench_function("file seal 1 MiB (name, content in place, owner wrap)", |b| {
        b.iter_batched(
            || content.clone(),
            |mut buf| {
                let name = crypto::encrypt_value(&data_key, [9; 12], &name_context, b"report.pdf");
                let binding = crypto::file_binding(&name);
                let file = RecordContext { kind: "file", org: user, owner: user, name: &binding };
                let len = buf.len();
                let sealed = crypto::seal_in_place(&data_key, [10; 12], &file, &mut buf, 0..len);
                let wrap = crypto::wrap_for_owner(&keys, &file, crypto::FILE_EPOCH, &data_key, &[5; 64], [6; 12]);
                (sealed, wrap, buf)
            },
            criterion::BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, envelope);
criterion_main!(benches);
