-- Key bundles and pins (the directory follower fills them from UserKeyBundlePublished and
-- UserPinsStored). A bundle is public and self-signed: whoever reads or rewrites this column can
-- hide a bundle but not forge one that verifies for this user. Pins are ciphertext sealed under
-- the owner's own keys, opaque to the server.
ALTER TABLE directory_users ADD COLUMN key_bundle text;
ALTER TABLE directory_users ADD COLUMN pins text;
