'use strict';
/**
 * The tsconfig.json of a user's project that consumes isopool: strict, Node 16+ module resolution,
 * `using` declarations, Node's types from this checkout. scripts/pack-smoke.js and
 * scripts/readme-check.js type-check code against the package with it.
 */
const path = require('node:path');

/** compilerOptions merged over the user defaults (e.g. `{ noEmit: true }` or an `outDir`). */
function userTsconfig(root, files, compilerOptions = {}) {
  return {
    compilerOptions: {
      target: 'ES2022',
      module: 'node16',
      moduleResolution: 'node16',
      strict: true,
      lib: ['ES2022', 'esnext.disposable'],
      types: ['node'],
      typeRoots: [path.join(root, 'node_modules', '@types')],
      ...compilerOptions,
    },
    files,
  };
}

module.exports = { userTsconfig };
