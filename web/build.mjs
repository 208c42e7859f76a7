// Builds the dashboard's browser crypto into one file the binary serves under a content-hashed
// name: api/src/ui/vault.js. The same lock file and sources make the same bytes (esbuild is
// deterministic); `scripts/build-ui --check` proves the committed file is what they make.
import { build } from 'esbuild';

const out = process.argv[2] ?? '../api/src/ui/vault.js';
await build({
  entryPoints: ['src/app.js'],
  bundle: true,
  format: 'iife',
  minify: true,
  target: 'es2022',
  legalComments: 'eof',
  charset: 'utf8',
  outfile: out,
  logLevel: 'warning',
});
