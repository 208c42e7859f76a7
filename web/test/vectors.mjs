// The browser crypto against harden's test vectors (domain/tests/harden-vectors.json, made by the
// Rust code): every byte the Rust code makes from fixed inputs, this code makes too, and opens.
// `node web/test/vectors.mjs` (scripts/build-ui runs it before it builds).
import { readFileSync } from 'node:fs';
import * as c from '../src/crypto.js';

const v = JSON.parse(readFileSync(new URL('../../domain/tests/harden-vectors.json', import.meta.url)));
const h = c.fromHex;
const i = v.inputs;
let failed = 0;
async function check(what, f) {
  try {
    const ok = await f();
    if (ok !== true) throw new Error(`got ${ok}`);
    console.log(`ok   ${what}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${what}: ${e.message}`);
  }
}
const owner = c.privateKeys(h(i.ownerX25519Secret), h(i.ownerMlKemSeed));
const recipient = c.privateKeys(h(i.recipientX25519Secret), h(i.recipientMlKemSeed));
const ctx = { kind: i.kind, org: i.org, owner: i.owner, name: h(i.name) };
const key = h(i.dataKey);

await check('owner public keys', () => c.toHex(owner.publicKeys.x25519) === v.ownerPublicKeys.x25519 && c.toHex(owner.publicKeys.mlkem) === v.ownerPublicKeys.mlKem768);
await check('value format 1 is made and opens', async () =>
  c.toHex(await c.encryptValue(key, ctx, h(i.plaintext), h(v.valueV1.nonce))) === v.valueV1.blob &&
  c.toHex((await c.decryptValueAt(key, ctx, i.version, i.epoch, h(v.valueV1.blob))).plaintext) === i.plaintext);
await check('value format 2 is made, opens bound, and not as another version', async () => {
  const made = c.toHex(await c.encryptValueAt(key, ctx, i.version, i.epoch, h(i.plaintext), h(v.valueV2.nonce)));
  const opened = await c.decryptValueAt(key, ctx, i.version, i.epoch, h(v.valueV2.blob));
  const other = await c.decryptValueAt(key, ctx, i.version + 1, i.epoch, h(v.valueV2.blob)).then(() => 'opened', () => 'refused');
  return made === v.valueV2.blob && opened.bound && c.toHex(opened.plaintext) === i.plaintext && other === 'refused';
});
await check('owner-sealed wrap is made, verifies and unwraps', async () => {
  const w = await c.wrapForOwner(owner, ctx, i.epoch, key, h(v.ownerSealedWrap.eseed), h(v.ownerSealedWrap.nonce));
  const ecc = h(v.ownerSealedWrap.encryptedAesKeyEcc), kyber = h(v.ownerSealedWrap.encryptedAesKeyKyber);
  return c.toHex(w.ecc) === v.ownerSealedWrap.encryptedAesKeyEcc && c.toHex(w.kyber) === v.ownerSealedWrap.encryptedAesKeyKyber &&
    c.ownerSealed(owner, ctx, i.epoch, ecc, kyber) && !c.ownerSealed(owner, ctx, i.epoch + 1, ecc, kyber) &&
    !c.ownerSealed(recipient, ctx, i.epoch, ecc, kyber) && c.toHex(await c.unwrapDataKey(owner, i.owner, ctx, ecc, kyber)) === i.dataKey;
});
await check('share wrap is made and unwraps for the recipient only', async () => {
  const w = await c.wrapDataKey(recipient.publicKeys, i.recipient, ctx, key, h(v.shareWrap.eseed), h(v.shareWrap.nonce));
  const ecc = h(v.shareWrap.encryptedAesKeyEcc), kyber = h(v.shareWrap.encryptedAesKeyKyber);
  const other = await c.unwrapDataKey(owner, i.owner, ctx, ecc, kyber).then(() => 'opened', () => 'refused');
  return c.toHex(w.ecc) === v.shareWrap.encryptedAesKeyEcc && c.toHex(w.kyber) === v.shareWrap.encryptedAesKeyKyber &&
    c.toHex(await c.unwrapDataKey(recipient, i.recipient, ctx, ecc, kyber)) === i.dataKey && other === 'refused';
});
await check('sealed private keys open with the secret only', async () => {
  const s = v.sealedPrivateKeys;
  const { params, salt } = c.sealHeader(h(s.x25519));
  const kek = await c.deriveKek(new TextDecoder().decode(h(s.userSecret)), salt, params);
  const keys = await c.openPrivateKeys(kek, i.owner, h(s.x25519), h(s.mlKem768));
  const wrong = await c.openPrivateKeys(await c.deriveKek('wrong', salt, params), i.owner, h(s.x25519), h(s.mlKem768)).then(() => 'opened', () => 'refused');
  return params.m === s.mKib && params.t === s.t && c.toHex(keys.x25519) === i.ownerX25519Secret && wrong === 'refused';
});
await check('key bundle verifies, is signed the same, and fails for another user', () => {
  const b = c.verifyBundle(h(v.keyBundle.bundle), i.org, i.owner);
  const forged = h(v.keyBundle.bundle);
  forged[100] ^= 1;
  const bad = (() => { try { c.verifyBundle(forged, i.org, i.owner); return 'verified'; } catch { return 'refused'; } })();
  const other = (() => { try { c.verifyBundle(h(v.keyBundle.bundle), i.org, i.recipient); return 'verified'; } catch { return 'refused'; } })();
  return b.fingerprint === v.keyBundle.fingerprint && c.toHex(c.signBundle(owner, i.org, i.owner)) === v.keyBundle.bundle && bad === 'refused' && other === 'refused';
});
await check('pins open', async () => {
  const pins = await c.openPins(owner, i.owner, h(v.pins.blob));
  return typeof pins === 'object' && Object.keys(pins).length > 0;
});
await check('unverified fingerprint', () => c.unverifiedFingerprint(owner.publicKeys) === v.unverifiedFingerprint);
await check('file name, content and the owner-sealed file wrap are made and open', async () => {
  const f = v.file;
  const name = await c.encryptValue(h(f.dataKey), c.fileNameContext(i.org, i.owner), h(f.fileName), h(f.nameNonce));
  const ctx = c.fileContentContext(i.org, i.owner, name);
  const content = await c.encryptValue(h(f.dataKey), ctx, h(f.content), h(f.contentNonce));
  const w = await c.wrapForOwner(owner, ctx, c.FILE_EPOCH, h(f.dataKey), h(f.ownerSealedWrap.eseed), h(f.ownerSealedWrap.nonce));
  const ecc = h(f.ownerSealedWrap.encryptedAesKeyEcc), kyber = h(f.ownerSealedWrap.encryptedAesKeyKyber);
  return c.toHex(name) === f.encryptedFileName && c.toHex(c.fileBinding(name)) === f.binding && c.toHex(content) === f.ciphertext &&
    c.toHex(w.ecc) === f.ownerSealedWrap.encryptedAesKeyEcc && c.toHex(w.kyber) === f.ownerSealedWrap.encryptedAesKeyKyber &&
    c.FILE_EPOCH === f.epoch && c.ownerSealed(owner, ctx, f.epoch, ecc, kyber) && !c.ownerSealed(owner, ctx, 1, ecc, kyber) &&
    c.toHex(await c.unwrapDataKey(owner, i.owner, ctx, ecc, kyber)) === f.dataKey &&
    c.toHex(await c.decryptValue(h(f.dataKey), ctx, h(f.ciphertext))) === f.content;
});
await check('share alias opens for the recipient only', async () => {
  const ctx = c.aliasContext(i.org, i.owner, new TextDecoder().decode(h(v.shareAlias.name)));
  const alias = await c.openSealed(recipient, i.recipient, ctx, h(v.shareAlias.blob));
  const other = await c.openSealed(owner, i.owner, ctx, h(v.shareAlias.blob)).then(() => 'opened', () => 'refused');
  return c.toHex(alias) === v.shareAlias.alias && other === 'refused';
});
await check('recovery share opens for the trustee to the masked seeds', async () => {
  const r = v.recovery;
  const ctx = (which) => ({ kind: 'recovery-share', org: i.org, owner: i.owner, name: c.utf8(which) });
  const x = h(r.share.x25519), m = h(r.share.mlKem768);
  const mx = await c.openSealed(recipient, i.recipient, ctx('x25519'), x.subarray(30));
  const mm = await c.openSealed(recipient, i.recipient, ctx('ml-kem-768'), m.subarray(30));
  return x[0] === 1 && c.toHex(x.subarray(1, 30)) === r.maskHeader && c.toHex(mx) === r.maskedX25519Secret && c.toHex(mm) === r.maskedMlKemSeed;
});
await check('recovery challenge opens with the owner\'s keys', async () => {
  const ch = v.recovery.challenge;
  const ctx = { kind: 'recovery-challenge', org: i.org, owner: i.owner, name: c.uuidBytes(ch.restoreId) };
  return c.toHex(await c.openSealed(owner, i.owner, ctx, h(ch.blob))) === ch.answer;
});
if (failed) {
  console.log(`${failed} failed`);
  process.exit(1);
}
