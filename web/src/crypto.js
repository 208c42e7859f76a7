// harden's envelope crypto in the browser: the byte-level specification of the README's
// "Envelope crypto", as domain/src/crypto.rs and domain/src/bundle.rs implement it in Rust.
// Pure functions over Uint8Array (AES-GCM through WebCrypto, so those are async); randomness
// comes from crypto.getRandomValues. Nothing here touches the network or the page.

import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { argon2idAsync } from '@noble/hashes/argon2.js';

const subtle = globalThis.crypto.subtle;
const encoder = new TextEncoder();

export const NONCE_LEN = 12;
const X25519_LEN = 32;
const MLKEM_PUBLIC_LEN = 1184;
const MLKEM_CIPHERTEXT_LEN = 1088;
const WRAP_ECC_LEN = 1 + X25519_LEN;
const WRAP_ECC_SEALED_LEN = WRAP_ECC_LEN + 32;
const WRAP_KYBER_LEN = 1 + MLKEM_CIPHERTEXT_LEN + NONCE_LEN + 32 + 16;
const SEAL_HEADER_LEN = 1 + 12 + 16;
const XWING_LABEL = Uint8Array.from([0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c]);
const BUNDLE_LABEL = encoder.encode('harden/v2/key-bundle');
const MLDSA65_PUBLIC_LEN = 1952;
const BODY_LEN = 1 + 16 + 16 + X25519_LEN + MLKEM_PUBLIC_LEN + 32 + MLDSA65_PUBLIC_LEN;
const BUNDLE_LEN = BODY_LEN + 64 + 3309;
// Argon2id parameters a sealed key may ask for (domain's KdfParams::MINIMUM and MAXIMUM).
const KDF_MIN = { m: 19 * 1024, t: 2, p: 1 };
// The page's own ceiling is lower than the server's (1 GiB, t = 16): a hostile server must not be
// able to make a tab run Argon2id for minutes or exhaust its memory.
const KDF_MAX = { m: 256 * 1024, t: 10, p: 4 };

/** A refusal to open or use something, with a message a person can act on. */
export class CryptoError extends Error {}

export const utf8 = (s) => encoder.encode(s);

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function random(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

export function fromB64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function toB64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function fromHex(hex) {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A user, org or share id as harden writes it (lowercase, hyphenated); anything else is refused,
 * so one id cannot be spelt two ways (a pin looked up by another spelling would miss). */
export function canonicalId(id) {
  if (typeof id !== 'string' || !CANONICAL_UUID.test(id)) throw new CryptoError(`not a canonical id: ${String(id).slice(0, 40)}`);
  return id;
}

export function uuidBytes(id) {
  return fromHex(canonicalId(id).replace(/-/g, ''));
}

function u32be(n) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

function u64be(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

const sha3 = (...parts) => sha3_256(concat(...parts));

/**
 * Where a value or a wrap belongs: `{ kind, org, owner, name }` (`name` bytes). The associated
 * data is `"harden/v1/" ‖ purpose ‖ 0 ‖ kind ‖ 0 ‖ org ‖ owner ‖ recipient or 0^16 ‖ len(name) ‖ name`.
 */
export function aad(purpose, ctx, recipient) {
  return concat(
    utf8(`harden/v1/${purpose}`),
    [0],
    utf8(ctx.kind),
    [0],
    uuidBytes(ctx.org),
    uuidBytes(ctx.owner),
    recipient ? uuidBytes(recipient) : new Uint8Array(16),
    u32be(ctx.name.length),
    ctx.name,
  );
}

async function aesKey(raw, usage) {
  return subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, [usage]);
}

export async function seal(key, nonce, additionalData, plaintext) {
  const ct = await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData, tagLength: 128 }, await aesKey(key, 'encrypt'), plaintext);
  return new Uint8Array(ct);
}

export async function open(key, nonce, additionalData, ciphertext) {
  try {
    const pt = await subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData, tagLength: 128 }, await aesKey(key, 'decrypt'), ciphertext);
    return new Uint8Array(pt);
  } catch {
    throw new CryptoError('it does not open with these keys');
  }
}

// ------------------------------------------------------------------------------------------
// Values

const valueAad = (ctx, version, epoch) => concat(aad('value', ctx), u64be(version), u64be(epoch));

/** Format 2, bound to its version and key epoch: `2 ‖ nonce ‖ AES-256-GCM ‖ tag`. */
export async function encryptValueAt(key, ctx, version, epoch, plaintext, nonce = random(NONCE_LEN)) {
  return concat([2], nonce, await seal(key, nonce, valueAad(ctx, version, epoch), plaintext));
}

/** Format 1 (names of files, aliases): `1 ‖ nonce ‖ AES-256-GCM ‖ tag`, bound to its record only. */
export async function encryptValue(key, ctx, plaintext, nonce = random(NONCE_LEN)) {
  return concat([1], nonce, await seal(key, nonce, aad('value', ctx), plaintext));
}

export async function decryptValue(key, ctx, blob) {
  if (blob.length < 29 || blob[0] !== 1) throw new CryptoError('malformed value ciphertext');
  return open(key, blob.subarray(1, 13), aad('value', ctx), blob.subarray(13));
}

/** `{ plaintext, bound }`: bound is true for format 2 opened as `version` at `epoch`. */
export async function decryptValueAt(key, ctx, version, epoch, blob) {
  if (blob[0] === 2 && blob.length >= 29) {
    return { plaintext: await open(key, blob.subarray(1, 13), valueAad(ctx, version, epoch), blob.subarray(13)), bound: true };
  }
  return { plaintext: await decryptValue(key, ctx, blob), bound: false };
}

/** What a file's content is bound to: its encrypted name (the Backend assigns the id later). */
export function fileBinding(encryptedName) {
  return sha3(utf8('harden/v1/file-binding'), [0], encryptedName);
}

/** The key epoch a file's owner-sealed wrap is made for: a file never changes, so it has one, 0. */
export const FILE_EPOCH = 0;
export const fileNameContext = (org, owner) => ({ kind: 'file-name', org, owner, name: new Uint8Array(0) });
export const fileContentContext = (org, owner, encryptedName) => ({ kind: 'file', org, owner, name: fileBinding(encryptedName) });
export const kvContext = (org, owner, name) => ({ kind: 'kv', org, owner, name: utf8(name) });
export const aliasContext = (org, owner, name) => ({ kind: 'share-alias', org, owner, name: utf8(name) });

// ------------------------------------------------------------------------------------------
// The X-Wing KEM and wraps of data keys

function combiner(ssM, ssX, ctX, pkX) {
  return sha3(ssM, ssX, ctX, pkX, XWING_LABEL);
}

/** Public keys: `{ x25519, mlkem }` bytes. */
export function encapsulate(pk, eseed = random(64)) {
  const { cipherText, sharedSecret } = ml_kem768.encapsulate(pk.mlkem, eseed.subarray(0, 32));
  const ephemeral = eseed.subarray(32);
  const ctX = x25519.getPublicKey(ephemeral);
  const ssX = x25519.getSharedSecret(ephemeral, pk.x25519);
  return { ctM: cipherText, ctX, ss: combiner(sharedSecret, ssX, ctX, pk.x25519) };
}

export function decapsulate(sk, ctM, ctX) {
  const ssM = ml_kem768.decapsulate(ctM, sk.mlkemSecret);
  const ssX = x25519.getSharedSecret(sk.x25519, ctX);
  return combiner(ssM, ssX, ctX, sk.publicKeys.x25519);
}

/** `{ ecc: 1 ‖ ct_X, kyber: 1 ‖ ct_M ‖ nonce ‖ AES-256-GCM(ss, key) ‖ tag }`, AD("wrap", recipient). */
export async function wrapDataKey(pk, recipient, ctx, key, eseed = random(64), nonce = random(NONCE_LEN)) {
  const { ctM, ctX, ss } = encapsulate(pk, eseed);
  const kyber = concat([1], ctM, nonce, await seal(ss, nonce, aad('wrap', ctx, recipient), key));
  return { ecc: concat([1], ctX), kyber };
}

export async function unwrapDataKey(sk, recipient, ctx, ecc, kyber) {
  const eccOk = (ecc.length === WRAP_ECC_LEN && ecc[0] === 1) || (ecc.length === WRAP_ECC_SEALED_LEN && ecc[0] === 2);
  if (!eccOk || kyber.length !== WRAP_KYBER_LEN || kyber[0] !== 1) throw new CryptoError('malformed wrapped data key');
  const ss = decapsulate(sk, kyber.subarray(1, 1 + MLKEM_CIPHERTEXT_LEN), ecc.subarray(1, WRAP_ECC_LEN));
  const nonceAt = 1 + MLKEM_CIPHERTEXT_LEN;
  const key = await open(ss, kyber.subarray(nonceAt, nonceAt + NONCE_LEN), aad('wrap', ctx, recipient), kyber.subarray(nonceAt + NONCE_LEN));
  if (key.length !== 32) throw new CryptoError('malformed data key');
  return key;
}

function derived(sk, label) {
  return sha3(utf8(label), [0], sk.x25519, sk.mlkemSeed);
}

function ownerTag(sk, ctx, epoch, ctX, kyber) {
  const sealKey = derived(sk, 'harden/v2/owner-seal-key');
  return sha3(utf8('harden/v2/owner-seal'), [0], sealKey, aad('owner-seal', ctx, ctx.owner), u64be(epoch), ctX, kyber);
}

/** The owner's own wrap for key epoch `epoch`, with the owner-seal tag: `ecc = 2 ‖ ct_X ‖ tag`. */
export async function wrapForOwner(sk, ctx, epoch, key, eseed = random(64), nonce = random(NONCE_LEN)) {
  const { ecc, kyber } = await wrapDataKey(sk.publicKeys, ctx.owner, ctx, key, eseed, nonce);
  return { ecc: concat([2], ecc.subarray(1), ownerTag(sk, ctx, epoch, ecc.subarray(1), kyber)), kyber };
}

/** Whether the owner's keys made this wrap for `epoch` (only such a key is used again). */
export function ownerSealed(sk, ctx, epoch, ecc, kyber) {
  if (ecc.length !== WRAP_ECC_SEALED_LEN || ecc[0] !== 2) return false;
  return equal(ownerTag(sk, ctx, epoch, ecc.subarray(1, WRAP_ECC_LEN), kyber), ecc.subarray(WRAP_ECC_LEN));
}

/** A small message sealed to one user (a share's alias): `wrap_ecc ‖ wrap_kyber ‖ value (format 1)`. */
export async function sealTo(pk, recipient, ctx, message) {
  const key = random(32);
  const { ecc, kyber } = await wrapDataKey(pk, recipient, ctx, key);
  return concat(ecc, kyber, await encryptValue(key, ctx, message));
}

export async function openSealed(sk, me, ctx, blob) {
  if (blob.length < WRAP_ECC_LEN + WRAP_KYBER_LEN) throw new CryptoError('malformed sealed message');
  const key = await unwrapDataKey(sk, me, ctx, blob.subarray(0, WRAP_ECC_LEN), blob.subarray(WRAP_ECC_LEN, WRAP_ECC_LEN + WRAP_KYBER_LEN));
  return decryptValue(key, ctx, blob.subarray(WRAP_ECC_LEN + WRAP_KYBER_LEN));
}

// ------------------------------------------------------------------------------------------
// Private keys sealed under the user secret

/** The Argon2id parameters and salt a sealed key names, refused outside harden's bounds. */
export function sealHeader(blob) {
  if (blob.length < SEAL_HEADER_LEN + NONCE_LEN + 16 || blob[0] !== 1) throw new CryptoError('malformed sealed private key');
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const params = { m: view.getUint32(1), t: view.getUint32(5), p: view.getUint32(9) };
  for (const k of ['m', 't', 'p']) {
    if (params[k] < KDF_MIN[k] || params[k] > KDF_MAX[k]) throw new CryptoError('the sealed keys ask for Argon2id parameters outside what this page runs (m 19 MiB to 256 MiB, t 2 to 10, p 1 to 4)');
  }
  return { params, salt: blob.slice(13, 29) };
}

/** One Argon2id run (the cost of unlocking); `onProgress` hears 0..1. */
export async function deriveKek(secret, salt, params, onProgress) {
  return argon2idAsync(utf8(secret), salt, { t: params.t, m: params.m, p: params.p, dkLen: 32, version: 0x13, onProgress });
}

const sealedAad = (user, which) => concat(utf8(`harden/v1/sealed-key\0${which}\0`), uuidBytes(user));

async function openKey(kek, additionalData, blob) {
  return open(kek, blob.subarray(SEAL_HEADER_LEN, SEAL_HEADER_LEN + NONCE_LEN), additionalData, blob.subarray(SEAL_HEADER_LEN + NONCE_LEN));
}

/** The private keys from their seeds, with the public keys they make. */
export function privateKeys(x25519Secret, mlkemSeed) {
  const kem = ml_kem768.keygen(mlkemSeed);
  return {
    x25519: x25519Secret,
    mlkemSeed,
    mlkemSecret: kem.secretKey,
    publicKeys: { x25519: x25519.getPublicKey(x25519Secret), mlkem: kem.publicKey },
  };
}

/** Opens both sealed private keys of `user` with the KEK; a wrong secret throws. */
export async function openPrivateKeys(kek, user, ecc, kyber) {
  let x, m;
  try {
    x = await openKey(kek, sealedAad(user, 'x25519'), ecc);
    m = await openKey(kek, sealedAad(user, 'ml-kem-768'), kyber);
  } catch {
    throw new CryptoError('wrong user secret');
  }
  if (x.length !== 32 || m.length !== 64) throw new CryptoError('malformed sealed private key');
  return privateKeys(x, m);
}

/** Forgets the private keys (as far as JavaScript lets memory be overwritten). */
export function wipe(sk) {
  if (!sk) return;
  for (const part of [sk.x25519, sk.mlkemSeed, sk.mlkemSecret]) part?.fill(0);
}

// ------------------------------------------------------------------------------------------
// Key bundles, fingerprints and pins

function fingerprint(label, ...parts) {
  return toHex(sha3(utf8(label), [0], ...parts)).match(/..../g).join(' ');
}

export function unverifiedFingerprint(pk) {
  return fingerprint('harden/v2/unverified', pk.x25519, pk.mlkem);
}

/** Checks both signatures and that the bundle is `user`'s of `org`: `{ keys, fingerprint }`. */
export function verifyBundle(bytes, org, user) {
  if (bytes.length !== BUNDLE_LEN || bytes[0] !== 1) throw new CryptoError('the key bundle is malformed');
  const body = bytes.subarray(0, BODY_LEN);
  let at = 1;
  const take = (n) => body.subarray(at, (at += n));
  const [bOrg, bUser, x, kem, edPub, mlPub] = [take(16), take(16), take(X25519_LEN), take(MLKEM_PUBLIC_LEN), take(32), take(MLDSA65_PUBLIC_LEN)];
  if (!equal(bOrg, uuidBytes(org)) || !equal(bUser, uuidBytes(user))) throw new CryptoError('the key bundle is not for this user of this org');
  const message = concat(BUNDLE_LABEL, [0], body);
  const edSig = bytes.subarray(BODY_LEN, BODY_LEN + 64);
  const mlSig = bytes.subarray(BODY_LEN + 64);
  let ok = false;
  try {
    ok = ed25519.verify(edSig, message, edPub, { zip215: false }) && ml_dsa65.verify(mlSig, message, mlPub, { context: BUNDLE_LABEL });
  } catch {
    ok = false;
  }
  if (!ok) throw new CryptoError('the key bundle\u2019s signatures do not verify');
  return { keys: { x25519: x.slice(), mlkem: kem.slice() }, fingerprint: fingerprint('harden/v2/fingerprint', body) };
}

/** The bundle of `sk` for `user` of `org`, self-signed with both derived signing keys. */
export function signBundle(sk, org, user) {
  const edSeed = derived(sk, 'harden/v2/ed25519-seed');
  const ml = ml_dsa65.keygen(derived(sk, 'harden/v2/ml-dsa-65-seed'));
  const body = concat([1], uuidBytes(org), uuidBytes(user), sk.publicKeys.x25519, sk.publicKeys.mlkem, ed25519.getPublicKey(edSeed), ml.publicKey);
  const message = concat(BUNDLE_LABEL, [0], body);
  return concat(body, ed25519.sign(message, edSeed), ml_dsa65.sign(message, ml.secretKey, { context: BUNDLE_LABEL, extraEntropy: false }));
}

const pinsAad = (owner) => concat(utf8('harden/v2/pins\0'), uuidBytes(owner));

/** The owner's pins, `{ userId: fingerprint }` (none yet: empty). */
export async function openPins(sk, owner, blob) {
  if (blob.length < 1 + NONCE_LEN + 16 || blob[0] !== 1) throw new CryptoError('your pins are malformed');
  try {
    const json = await open(derived(sk, 'harden/v2/pins-key'), blob.subarray(1, 13), pinsAad(owner), blob.subarray(13));
    return JSON.parse(new TextDecoder().decode(json));
  } catch {
    throw new CryptoError('your pins do not open with your keys: they were tampered with');
  }
}

export async function sealPins(sk, owner, pins) {
  const nonce = random(NONCE_LEN);
  const sorted = Object.fromEntries(Object.entries(pins).sort(([a], [b]) => (a < b ? -1 : 1)));
  return concat([1], nonce, await seal(derived(sk, 'harden/v2/pins-key'), nonce, pinsAad(owner), utf8(JSON.stringify(sorted))));
}
