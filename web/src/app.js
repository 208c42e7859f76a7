// The dashboard's vault page (/ui/vault): reveal, write and share secrets and files with the
// crypto in this page. The user secret is asked once for the page's life and never leaves it; the
// unlocked keys are held in this module's memory only (not in storage), and forgotten on "Lock",
// on leaving the page and on sign-out. The page reaches the Backend's routes through /ui/api/,
// which adds the session's credential on the server; a request that changes anything carries the
// session's CSRF token in a header.

import * as c from './crypto.js';

const decoder = new TextDecoder();
let me = null; // the Backend's GET /users/me
let keys = null; // the unlocked private keys
let pending = null; // what to do once unlocked

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function csrf() {
  return $('meta[name="harden-csrf"]').content;
}

/** A Backend route through the session: the parsed JSON, or an Error with the Backend's message. */
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = csrf();
  if (body !== undefined) headers['content-type'] = 'application/json';
  const answer = await fetch(`/ui/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', redirect: 'error' });
  const text = await answer.text();
  const json = text ? JSON.parse(text) : null;
  if (!answer.ok) {
    const error = new Error(json?.error ?? `the server answered ${answer.status}`);
    error.status = answer.status;
    throw error;
  }
  return json;
}

const seg = (s) => encodeURIComponent(s);

function show(el, message, kind = 'error') {
  el.textContent = message;
  el.className = kind;
  el.hidden = false;
  if (kind === 'error') el.setAttribute('role', 'alert');
}

function setStatus(text) {
  const status = $('#unlock-status');
  status.textContent = text;
}

// ------------------------------------------------------------------------------------------
// Unlocking

async function unlock(secret) {
  const profile = await api('GET', '/users/me');
  if (!profile.encryptedPrivateKeyEccB64 || !profile.encryptedPrivateKeyKyberB64) {
    throw new Error('You have no keys yet: run `harden keys generate` on your machine first.');
  }
  const ecc = c.fromB64(profile.encryptedPrivateKeyEccB64);
  const { params, salt } = c.sealHeader(ecc);
  const progress = $('#unlock-progress');
  progress.hidden = false;
  const kek = await c.deriveKek(secret, salt, params, (p) => (progress.value = p));
  progress.hidden = true;
  const opened = await c.openPrivateKeys(kek, profile.id, ecc, c.fromB64(profile.encryptedPrivateKeyKyberB64));
  kek.fill(0);
  const published = profile.publicKeyEccB64 && c.equal(c.fromB64(profile.publicKeyEccB64), opened.publicKeys.x25519) && c.equal(c.fromB64(profile.publicKeyKyberB64), opened.publicKeys.mlkem);
  if (!published) {
    c.wipe(opened);
    throw new Error('These keys are not the ones your profile publishes: they were replaced on the server. Nothing was decrypted.');
  }
  if (!profile.keyBundleB64) {
    // Keys made before bundles: publish one so others can verify them (as the Rust client does).
    await api('PUT', '/users/me/bundle', { keyBundleB64: c.toB64(c.signBundle(opened, profile.orgId, profile.id)) }).catch(() => {});
  }
  c.canonicalId(profile.id);
  c.canonicalId(profile.orgId);
  me = profile;
  keys = opened;
}

function lock() {
  c.wipe(keys);
  keys = null;
  me = null;
  $$('[data-plaintext]').forEach((el) => {
    el.textContent = '';
    el.hidden = true;
  });
  $$('[data-sealed-name]').forEach((el) => (el.textContent = 'locked'));
  $('#unlock').hidden = false;
  $('#locked-bar').hidden = true;
}

/** Runs `action` with the keys, asking for the secret first if the page has none. */
function withKeys(action) {
  if (keys) return action();
  pending = action;
  $('#unlock').hidden = false;
  $('#user-secret').focus();
  return undefined;
}

async function onUnlock(event) {
  event.preventDefault();
  const input = $('#user-secret');
  const error = $('#unlock-error');
  error.hidden = true;
  const button = $('#unlock button[type=submit]');
  button.disabled = true;
  setStatus('Unlocking… (Argon2id runs in this page)');
  try {
    await unlock(input.value);
    input.value = '';
    $('#unlock').hidden = true;
    $('#locked-bar').hidden = false;
    setStatus('');
    await fillNames();
    const action = pending;
    pending = null;
    if (action) await action();
  } catch (e) {
    setStatus('');
    show(error, e.message);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------------------------------
// Secrets

function bytesToText(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return `(binary, ${bytes.length} bytes) ${c.toB64(bytes)}`;
  }
}

async function openRecord(name, version) {
  const stored = await api('GET', `/kv/${seg(name)}${version ? `?version=${version}` : ''}`);
  const ctx = c.kvContext(me.orgId, me.id, name);
  const ecc = c.fromB64(stored.encryptedAesKeyEccB64);
  const kyber = c.fromB64(stored.encryptedAesKeyKyberB64);
  const key = await c.unwrapDataKey(keys, me.id, ctx, ecc, kyber).catch(() => {
    throw new Error('The stored value cannot be opened with your keys.');
  });
  const epoch = Math.max(0, stored.keyEpoch ?? 0);
  const { plaintext, bound } = await c.decryptValueAt(key, ctx, stored.version, epoch, c.fromB64(stored.ciphertextB64)).catch(() => {
    throw new Error(`The stored value does not open as version ${stored.version}: it was not written as that version (a rollback or a moved ciphertext).`);
  });
  return { stored, key, plaintext, ownerSealed: bound && c.ownerSealed(keys, ctx, epoch, ecc, kyber) };
}

function revealInto(row, text, warning) {
  const out = $('[data-plaintext]', row);
  out.textContent = text;
  out.hidden = false;
  const note = $('[data-note]', row);
  if (note) {
    note.textContent = warning ?? '';
    note.hidden = !warning;
  }
}

async function reveal(button) {
  const row = button.closest('[data-row]');
  const error = $('[data-error]', row);
  error.hidden = true;
  try {
    if (button.dataset.share) {
      const record = await api('GET', `/kv/shared/${seg(button.dataset.share)}`);
      const ctx = c.kvContext(me.orgId, record.ownerUserId, record.key);
      const key = await c.unwrapDataKey(keys, me.id, ctx, c.fromB64(record.encryptedAesKeyEccB64), c.fromB64(record.encryptedAesKeyKyberB64));
      const { plaintext } = await c.decryptValueAt(key, ctx, record.version, Math.max(0, record.keyEpoch ?? 0), c.fromB64(record.ciphertextB64));
      revealInto(row, bytesToText(plaintext));
    } else {
      const { plaintext, ownerSealed } = await openRecord(button.dataset.reveal, button.dataset.version);
      revealInto(row, bytesToText(plaintext), ownerSealed ? null : 'Not sealed by you: this version was written with your API key alone or by someone else. Your next write replaces its key.');
    }
    $('[data-hide]', row).hidden = false;
  } catch (e) {
    show(error, e.message);
  }
}

/** The highest version a record ever had (0 for a name never written). */
async function lastVersion(name) {
  try {
    const versions = await api('GET', `/kv/${seg(name)}/versions`);
    return Math.max(0, ...versions.versions.map((v) => v.version));
  } catch (e) {
    if (e.status === 404) return 0;
    throw e;
  }
}

/** What the server gives for `recipient`: the keys (from a bundle that verifies for that user of
 * your org, else as published) and their fingerprint; and your pins, opened. */
async function recipientAndPins(recipient) {
  recipient = c.canonicalId(recipient);
  const profile = await api('GET', `/users/org/${seg(recipient)}`);
  let checked;
  if (profile.keyBundleB64) {
    try {
      checked = { ...c.verifyBundle(c.fromB64(profile.keyBundleB64), me.orgId, recipient), verified: true };
    } catch (e) {
      throw new Error(`The key bundle the server gives for user ${recipient} does not verify (${e.message}): nothing was encrypted to it.`);
    }
  } else if (profile.publicKeyEccB64 && profile.publicKeyKyberB64) {
    const pk = { x25519: c.fromB64(profile.publicKeyEccB64), mlkem: c.fromB64(profile.publicKeyKyberB64) };
    checked = { keys: pk, fingerprint: c.unverifiedFingerprint(pk), verified: false };
  } else {
    throw new Error('The recipient has no keys yet: they must generate keys before anything can be shared with them.');
  }
  const fresh = await api('GET', '/users/me');
  const pins = fresh.pinsB64 ? await c.openPins(keys, me.id, c.fromB64(fresh.pinsB64)) : {};
  return { recipient, checked, pins };
}

/** The keys to encrypt to `recipient` when you share: from a bundle that verifies, checked
 * against your pins (a first bundle is pinned on first use, as in the Rust client). */
async function verifiedRecipient(id, expected) {
  const { recipient, checked, pins } = await recipientAndPins(id);
  expected = expected?.trim() || null;
  if (expected && expected !== checked.fingerprint) throw new Error(`The keys of user ${recipient} do not have the fingerprint you expect: nothing was encrypted to them.`);
  const pinned = pins[recipient];
  if (pinned === checked.fingerprint) return checked.keys;
  if (pinned && !expected) throw new Error(`The keys of user ${recipient} changed: you pinned ${pinned}, the server now gives ${checked.fingerprint}. Compare the new one with them, then give it as the expected fingerprint; nothing was encrypted to them.`);
  if (!pinned && !checked.verified && !expected) throw new Error(`User ${recipient} published keys without a signed bundle: compare their fingerprint with them and give it as the expected fingerprint.`);
  pins[recipient] = checked.fingerprint;
  await api('PUT', '/users/me/pins', { pinsB64: c.toB64(await c.sealPins(keys, me.id, pins)) });
  return checked.keys;
}

/** The keys to re-wrap a rotated key to: only a recipient you pinned when you shared, with the
 * pinned fingerprint. A share you never made is refused, never pinned on first use. */
async function pinnedRecipient(id) {
  const { recipient, checked, pins } = await recipientAndPins(id);
  const pinned = pins[recipient];
  if (!pinned) throw new Error(`The server lists an open share of this record to user ${recipient}, whom you never shared with. Nothing was written: revoke that share, or share with them yourself.`);
  if (pinned !== checked.fingerprint) throw new Error(`The keys of user ${recipient}, who has an open share of this record, changed: you pinned ${pinned}, the server now gives ${checked.fingerprint}. Nothing was written.`);
  return checked.keys;
}

async function grantBody(pk, recipient, ctx, key, aliasName, alias, permission, expiresUtc) {
  const { ecc, kyber } = await c.wrapDataKey(pk, recipient, ctx, key);
  const sealed = await c.sealTo(pk, recipient, c.aliasContext(me.orgId, me.id, aliasName), c.utf8(alias));
  return {
    recipientUserId: recipient,
    permission,
    encryptedAliasB64: c.toB64(sealed),
    encryptedAesKeyEccB64: c.toB64(ecc),
    encryptedAesKeyKyberB64: c.toB64(kyber),
    expiresUtc: expiresUtc || null,
  };
}

/** Stores `value` as the record's next version (the same rules as the Rust client's put_value). */
async function putValue(name, value) {
  const ctx = c.kvContext(me.orgId, me.id, name);
  let stored = null;
  try {
    stored = await api('GET', `/kv/${seg(name)}`);
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  if (!stored) {
    const version = (await lastVersion(name)) + 1;
    const key = c.random(32);
    return writeVersion(name, ctx, key, version, version, { freshKey: true, version });
  }
  const ecc = c.fromB64(stored.encryptedAesKeyEccB64);
  const kyber = c.fromB64(stored.encryptedAesKeyKyberB64);
  const epoch = Math.max(0, stored.keyEpoch ?? 0);
  if (!stored.rotationPending && c.ownerSealed(keys, ctx, epoch, ecc, kyber)) {
    const key = await c.unwrapDataKey(keys, me.id, ctx, ecc, kyber);
    return writeVersion(name, ctx, key, stored.version + 1, epoch, { keyEpoch: epoch, version: stored.version + 1 });
  }
  return rotate(name, ctx, stored.version, value);

  async function writeVersion(name, ctx, key, version, epoch, fields) {
    const ciphertext = await c.encryptValueAt(key, ctx, version, epoch, value);
    const wrap = await c.wrapForOwner(keys, ctx, epoch, key);
    return api('PUT', `/kv/${seg(name)}`, { ciphertextB64: c.toB64(ciphertext), encryptedAesKeyEccB64: c.toB64(wrap.ecc), encryptedAesKeyKyberB64: c.toB64(wrap.kyber), ...fields });
  }
}

/** The value as the next version under a fresh key, re-wrapped to every open share. */
async function rotate(name, ctx, expectedVersion, value) {
  const key = c.random(32);
  const version = expectedVersion + 1;
  const ciphertext = await c.encryptValueAt(key, ctx, version, version, value);
  const wrap = await c.wrapForOwner(keys, ctx, version, key);
  const open = await api('GET', `/kv/${seg(name)}/shares`);
  const shares = [];
  for (const share of open) {
    const pk = await pinnedRecipient(share.recipientUserId);
    const w = await c.wrapDataKey(pk, share.recipientUserId, ctx, key);
    shares.push({ shareId: share.shareId, encryptedAesKeyEccB64: c.toB64(w.ecc), encryptedAesKeyKyberB64: c.toB64(w.kyber) });
  }
  return api('POST', `/kv/${seg(name)}/rotate`, { expectedVersion, ciphertextB64: c.toB64(ciphertext), encryptedAesKeyEccB64: c.toB64(wrap.ecc), encryptedAesKeyKyberB64: c.toB64(wrap.kyber), shares });
}

async function onPut(event) {
  event.preventDefault();
  const form = event.target;
  const result = $('[data-result]', form);
  result.hidden = true;
  await withKeys(async () => {
    const name = form.elements.name.value;
    try {
      const answer = await putValue(name, c.utf8(form.elements.value.value));
      form.elements.value.value = '';
      show(result, `Stored ${name} as version ${answer.version}. Reload to see it in the list.`, 'notice');
    } catch (e) {
      show(result, e.message);
    }
  });
}

async function shareValue(name, recipient, alias, permission, expiresUtc, expected) {
  if (recipient === me.id) throw new Error('You cannot share a record with yourself.');
  const { stored, key } = await openRecord(name);
  const pk = await verifiedRecipient(recipient, expected);
  const body = await grantBody(pk, recipient, c.kvContext(me.orgId, me.id, name), key, name, alias, permission, expiresUtc);
  body.keyEpoch = Math.max(0, stored.keyEpoch ?? 0);
  return api('POST', `/kv/${seg(name)}/shares`, body);
}

async function onShare(event) {
  event.preventDefault();
  const form = event.target;
  const result = $('[data-result]', form);
  result.hidden = true;
  await withKeys(async () => {
    const f = form.elements;
    try {
      const expires = f.expires.value ? new Date(f.expires.value).toISOString() : null;
      const answer = f.file
        ? await shareFile(f.file.value, f.recipient.value.trim(), f.permission.value, expires, f.fingerprint.value)
        : await shareValue(f.name.value, f.recipient.value.trim(), f.alias.value || f.name.value, f.permission.value, expires, f.fingerprint.value);
      show(result, `Shared: share ${answer.shareId}.`, 'notice');
    } catch (e) {
      show(result, e.message);
    }
  });
}

/** Loads a record's history and open shares when its details are opened. */
async function onDetails(event) {
  const details = event.target;
  if (!details.open || details.dataset.loaded) return;
  details.dataset.loaded = '1';
  const name = details.dataset.details;
  const list = $('[data-versions]', details);
  try {
    const versions = await api('GET', `/kv/${seg(name)}/versions`);
    for (const v of versions.versions.slice().reverse()) {
      const li = document.createElement('li');
      li.textContent = `version ${v.version} · ${v.createdUtc}${v.deleted ? ' · deleted' : ''}`;
      list.append(li);
    }
    const shares = await api('GET', `/kv/${seg(name)}/shares`);
    const out = $('[data-shares]', details);
    if (shares.length === 0) out.textContent = 'Not shared with anyone.';
    for (const s of shares) {
      const li = document.createElement('li');
      li.textContent = `share ${s.shareId} → user ${s.recipientUserId} · ${s.permission}${s.expiresUtc ? ` · until ${s.expiresUtc}` : ''} `;
      const revoke = document.createElement('button');
      revoke.type = 'button';
      revoke.className = 'danger';
      revoke.textContent = 'Revoke';
      revoke.setAttribute('aria-label', `Revoke share ${s.shareId}`);
      revoke.addEventListener('click', () => revokeShare(name, s.shareId, li));
      li.append(revoke);
      out.append(li);
    }
  } catch (e) {
    show($('[data-error]', details), e.message);
  }
}

/** Revokes a share (the recipient is refused at once); with the keys here, the value's key is
 * rotated too, so what the recipient held stops opening later versions. */
async function revokeShare(name, shareId, li) {
  try {
    await api('DELETE', `/kv/${seg(name)}/shares/${seg(shareId)}`);
    li.textContent = `share ${shareId}: revoked`;
    if (keys) {
      const { stored, plaintext } = await openRecord(name);
      await rotate(name, c.kvContext(me.orgId, me.id, name), stored.version, plaintext);
      li.textContent += ', and the value re-encrypted under a new key';
    }
  } catch (e) {
    const error = document.createElement('span');
    error.className = 'error';
    error.textContent = ` ${e.message}`;
    li.append(error);
  }
}

// ------------------------------------------------------------------------------------------
// Files

async function fileKey(stored, owner) {
  const encryptedName = c.fromB64(stored.encryptedFileNameB64);
  const ctx = c.fileContentContext(me.orgId, owner, encryptedName);
  const key = await c.unwrapDataKey(keys, me.id, ctx, c.fromB64(stored.encryptedAesKeyEccB64), c.fromB64(stored.encryptedAesKeyKyberB64));
  return { key, ctx, encryptedName };
}

/** Opens the names of the files and shares listed on the page, now that the keys are here. */
async function fillNames() {
  for (const el of $$('[data-sealed-name]')) {
    try {
      const d = el.dataset;
      if (d.alias) {
        const aliasName = d.aliasKey;
        const name = await c.openSealed(keys, me.id, c.aliasContext(me.orgId, d.owner, aliasName), c.fromB64(d.alias));
        el.textContent = decoder.decode(name);
      } else {
        const { key } = await fileKey(d, me.id);
        el.textContent = decoder.decode(await c.decryptValue(key, c.fileNameContext(me.orgId, me.id), c.fromB64(d.encryptedFileNameB64)));
      }
    } catch {
      el.textContent = '(does not open with your keys)';
    }
  }
}

function save(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type: type || 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function download(button) {
  const row = button.closest('[data-row]');
  const error = $('[data-error]', row);
  error.hidden = true;
  try {
    const shared = button.dataset.sharedFile;
    const stored = await api('GET', shared ? `/files/shared/${seg(shared)}` : `/files/${seg(button.dataset.download)}`);
    const owner = stored.ownerUserId ?? me.id;
    const { key, ctx, encryptedName } = await fileKey(stored, owner).catch(() => {
      throw new Error('The stored file cannot be opened with your keys.');
    });
    const name = shared ? $('[data-sealed-name]', row).textContent : decoder.decode(await c.decryptValue(key, c.fileNameContext(me.orgId, owner), encryptedName));
    const content = await c.decryptValue(key, ctx, c.fromB64(stored.ciphertextB64)).catch(() => {
      throw new Error('The stored file does not open: it was changed or moved.');
    });
    save(content, name, stored.contentType);
    show($('[data-done]', row), `Downloaded ${name} (${content.length} bytes).`, 'notice');
  } catch (e) {
    show(error, e.message);
  }
}

async function shareFile(fileId, recipient, permission, expiresUtc, expected) {
  if (recipient === me.id) throw new Error('You cannot share with yourself.');
  const stored = await api('GET', `/files/${seg(fileId)}?content=false`);
  const { key, ctx, encryptedName } = await fileKey(stored, me.id);
  const name = decoder.decode(await c.decryptValue(key, c.fileNameContext(me.orgId, me.id), encryptedName));
  const pk = await verifiedRecipient(recipient, expected);
  const body = await grantBody(pk, recipient, ctx, key, fileId, name, permission, expiresUtc);
  return api('POST', `/files/${seg(fileId)}/shares`, body);
}

async function onUpload(event) {
  event.preventDefault();
  const form = event.target;
  const result = $('[data-result]', form);
  const progress = $('progress', form);
  result.hidden = true;
  await withKeys(async () => {
    const file = form.elements.file.files[0];
    if (!file) return show(result, 'Choose a file first.');
    try {
      const name = form.elements.filename.value || file.name;
      const key = c.random(32);
      const encryptedName = await c.encryptValue(key, c.fileNameContext(me.orgId, me.id), c.utf8(name));
      const ctx = c.fileContentContext(me.orgId, me.id, encryptedName);
      const ciphertext = await c.encryptValue(key, ctx, new Uint8Array(await file.arrayBuffer()));
      // Owner-sealed at the file's one epoch, as the Rust client seals it: the reader learns the owner made it.
      const wrap = await c.wrapForOwner(keys, ctx, c.FILE_EPOCH, key);
      const body = JSON.stringify({
        encryptedFileNameB64: c.toB64(encryptedName),
        encryptedAesKeyEccB64: c.toB64(wrap.ecc),
        encryptedAesKeyKyberB64: c.toB64(wrap.kyber),
        contentType: file.type || 'application/octet-stream',
        ciphertextB64: c.toB64(ciphertext),
      });
      progress.hidden = false;
      progress.value = 0;
      const answer = await new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open('POST', '/ui/api/files');
        xhr.setRequestHeader('content-type', 'application/json');
        xhr.setRequestHeader('x-csrf-token', csrf());
        xhr.upload.onprogress = (e) => e.lengthComputable && (progress.value = e.loaded / e.total);
        xhr.onload = () => {
          const json = xhr.responseText ? JSON.parse(xhr.responseText) : {};
          xhr.status < 300 ? resolve(json) : reject(new Error(json.error ?? `the server answered ${xhr.status}`));
        };
        xhr.onerror = () => reject(new Error('The upload did not reach the server.'));
        xhr.send(body);
      });
      progress.value = 1;
      show(result, `Uploaded ${name}: file ${answer.id}. Reload to see it in the list.`, 'notice');
    } catch (e) {
      show(result, e.message);
    }
  });
}

// ------------------------------------------------------------------------------------------

function start() {
  if (document.body.dataset.page !== 'vault') return;
  // The forms that take a secret or a value come disabled, so that nothing can be submitted
  // (as a GET carrying the secret in its URL) before this script runs.
  $$('fieldset[data-needs-script]').forEach((f) => (f.disabled = false));
  $('#unlock').addEventListener('submit', onUnlock);
  $('#lock').addEventListener('click', lock);
  $('#put-secret')?.addEventListener('submit', onPut);
  $('#upload')?.addEventListener('submit', onUpload);
  $$('form[data-share-form]').forEach((f) => f.addEventListener('submit', onShare));
  $$('details[data-details]').forEach((d) => d.addEventListener('toggle', onDetails));
  $$('[data-reveal], [data-share]').forEach((b) => b.addEventListener('click', () => withKeys(() => reveal(b))));
  $$('[data-download], [data-shared-file]').forEach((b) => b.addEventListener('click', () => withKeys(() => download(b))));
  $$('[data-hide]').forEach((b) =>
    b.addEventListener('click', () => {
      const out = $('[data-plaintext]', b.closest('[data-row]'));
      out.textContent = '';
      out.hidden = true;
      b.hidden = true;
    }),
  );
  $$('[data-copy]').forEach((b) => b.addEventListener('click', () => navigator.clipboard?.writeText($(b.dataset.copy).textContent)));
  addEventListener('pagehide', lock);
}

// The crypto, for the cross-implementation test and for anyone checking the page by hand.
globalThis.hardenCrypto = c;
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
