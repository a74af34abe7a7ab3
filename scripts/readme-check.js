#!/usr/bin/env node
/**
 * `npm run test:readme`: every code block in README.md is a complete program, run as written.
 *
 * - ```ts and ```js blocks: each is written to its own file in a temp project whose
 *   node_modules/isopool is this checkout (dist/ must be built), type-checked with tsc (strict),
 *   and run with node. It must exit 0 within 60 s.
 * - ```sh blocks: each command must be one .ci/run runs (npm start, npm test) or one the packaging
 *   smoke test runs (npm install of the package and prom-client); an unknown command fails, so a
 *   new shell block cannot go unchecked.
 * Any other language tag fails.
 */
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { userTsconfig } = require('./lib/user-tsconfig');

const root = path.resolve(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const SHELL_CHECKED_ELSEWHERE = [
  /^npm install && npm start$/, // .ci/run: npm ci, then npm start
  /^npm test$/, // .ci/run
  /^npm install isopool$/, // scripts/pack-smoke.js installs the packed tarball
  /^npm install prom-client$/, // scripts/pack-smoke.js step 4
];

function fail(msg) {
  console.error(`readme-check: FAILED: ${msg}`);
  process.exit(1);
}

const blocks = [];
const fence = /^```(\w*)\n([\s\S]*?)^```$/gm;
for (const m of readme.matchAll(fence)) {
  const line = readme.slice(0, m.index).split('\n').length;
  blocks.push({ lang: m[1], code: m[2], line });
}
if (blocks.length === 0) fail('no code blocks found in README.md');
if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) fail('dist/ is missing: run "npm run build" first');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isopool-readme-'));
fs.mkdirSync(path.join(dir, 'node_modules'));
fs.symlinkSync(root, path.join(dir, 'node_modules', 'isopool'), 'dir');
fs.symlinkSync(path.join(root, 'node_modules', 'prom-client'), path.join(dir, 'node_modules', 'prom-client'), 'dir');
fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'readme-check', private: true }));

let programs = 0;
for (const { lang, code, line } of blocks) {
  if (lang === 'sh') {
    for (const raw of code.split('\n')) {
      const cmd = raw.replace(/#.*$/, '').trim();
      if (cmd === '') continue;
      if (!SHELL_CHECKED_ELSEWHERE.some((re) => re.test(cmd))) fail(`README.md:${line}: the shell command "${cmd}" is run by no check`);
    }
    continue;
  }
  if (lang !== 'ts' && lang !== 'js') fail(`README.md:${line}: a \`\`\`${lang} block: only ts, js and sh blocks can be checked`);
  programs++;
  const base = `block-${line}`;
  const src = path.join(dir, `${base}.${lang}`);
  fs.writeFileSync(src, code);
  if (lang === 'ts') {
    const config = userTsconfig(root, [src], { esModuleInterop: true, skipLibCheck: true, outDir: path.join(dir, 'out') });
    fs.writeFileSync(path.join(dir, `${base}.tsconfig.json`), JSON.stringify(config));
    const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(dir, `${base}.tsconfig.json`)], { cwd: dir, encoding: 'utf8' });
    if (tsc.status !== 0) fail(`README.md:${line}: tsc:\n${tsc.stdout}${tsc.stderr}`);
  }
  const js = lang === 'ts' ? path.join(dir, 'out', `${base}.js`) : src;
  const r = spawnSync(process.execPath, [js], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) fail(`README.md:${line}: exited with ${r.status ?? r.signal}\n${r.stdout}${r.stderr}`);
  const out = r.stdout.trim().split('\n');
  console.log(`readme-check: README.md:${line} (${lang}) ran: ${out.length} lines of output, last: ${out[out.length - 1]}`);
}
fs.rmSync(dir, { recursive: true, force: true });
console.log(`readme-check: ${blocks.length} code blocks: ${programs} programs ran, the shell commands are checked by CI`);
