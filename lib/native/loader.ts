/**
 * Loads the native addon (`isopool.node`) once per thread.
 *
 * Where it comes from, in order:
 * 1. the prebuild shipped in the npm package, `prebuilds/<tag>/isopool.node` under the package
 *    root, where the tag is `${process.platform}-${process.arch}` with `-musl` added on a musl
 *    C library (`linux-x64`, `linux-x64-musl`, `linux-arm64`, `linux-arm64-musl`: the names
 *    prebuildify and node-gyp-build use). Node-API, so one binary serves every supported Node;
 * 2. the local build from source (`build/Release/isopool.node`, by `npm run build:native` or
 *    `npm rebuild isopool`), found by the `bindings` package.
 *
 * One exception keeps a source checkout honest: when both exist and the local build is newer
 * than the prebuild, the local build wins (a developer rebuilt the addon after `npm run prebuild`).
 * A prebuild that exists but fails to load (another libc, a damaged file) falls through to the
 * local build; if that fails too, the error names both causes.
 *
 * The addon's export is typed `unknown` and checked by {@link narrowAddon}
 * before anything else in lib/ sees it as a {@link NativeAddon}.
 * @internal
 * @packageDocumentation
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NativeAddon } from './binding';

/** `bindings`' export: finds `<name>.node` under the package root and requires it. */
type BindingsLoader = (name: string) => unknown;

function isBindingsLoader(value: unknown): value is BindingsLoader {
  return typeof value === 'function';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null;
}

/**
 * The binding contract this lib/ speaks: native/binding/addon.cc `kBindingVersion` (bump both together).
 * scripts/install.js reads it from the compiled loader to judge a prebuild or an earlier build.
 */
export const BINDING_VERSION = 9;

/**
 * Checks the raw addon export against the {@link NativeAddon} contract.
 * Throws an Error naming what is missing (a stale or foreign `isopool.node`).
 */
export function narrowAddon(raw: unknown): NativeAddon {
  if (!isObject(raw)) {
    throw new Error(`isopool: the native addon exported ${raw === null ? 'null' : typeof raw}, expected an object`);
  }
  const { NativeManager, pageSize, bindingVersion } = raw;
  if (bindingVersion !== BINDING_VERSION) {
    const got = bindingVersion === undefined ? 'none (built before versioning)' : String(bindingVersion);
    throw new Error(
      `isopool: the native addon speaks binding version ${got}, this isopool needs ${BINDING_VERSION}: ` +
        'it is a stale build; rebuild it with "npm run build:native" (installed: "npm rebuild isopool")',
    );
  }
  if (typeof NativeManager !== 'function') {
    throw new Error(`isopool: the native addon has no NativeManager class (got ${typeof NativeManager}); rebuild it with "npm run build:native"`);
  }
  if (typeof pageSize !== 'number' || !Number.isSafeInteger(pageSize) || pageSize <= 0) {
    throw new Error(`isopool: the native addon's pageSize is ${String(pageSize)}, expected a positive integer; rebuild it with "npm run build:native"`);
  }
  for (const name of ['mallocStats', 'mallocTrim'] as const) {
    if (typeof raw[name] !== 'function') {
      throw new Error(`isopool: the native addon has no ${name} function (got ${typeof raw[name]}); rebuild it with "npm run build:native"`);
    }
  }
  // The checks above are all that can be checked without constructing a manager;
  // the method shapes are the addon's contract (native/binding/manager_binding.cc).
  return raw as unknown as NativeAddon;
}

/** The directory holding isopool's package.json, found by walking up from `from`. */
export function findPackageRoot(from: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    try {
      const parsed: unknown = JSON.parse(fs.readFileSync(manifest, 'utf8'));
      if (isObject(parsed) && parsed.name === 'isopool') return dir;
    } catch {
      // no (readable) package.json here: keep walking up
    }
    if (path.dirname(dir) === dir) return undefined;
  }
}

/**
 * The C library this Node runs on: `'musl'` or `'glibc'` on Linux (Node's own report names the
 * glibc it was started with; a musl Node has none), `undefined` elsewhere.
 */
export function linuxLibc(): 'glibc' | 'musl' | undefined {
  if (process.platform !== 'linux') return undefined;
  const report: unknown = process.report?.getReport();
  const header: unknown = isObject(report) ? report['header'] : undefined;
  return isObject(header) && typeof header['glibcVersionRuntime'] === 'string' ? 'glibc' : 'musl';
}

/** The prebuild directory name for a platform: `linux-x64`, `linux-arm64-musl`, `darwin-arm64`. */
export function prebuildTag(platform: string = process.platform, arch: string = process.arch, libc = linuxLibc()): string {
  return platform === 'linux' && libc === 'musl' ? `${platform}-${arch}-musl` : `${platform}-${arch}`;
}

/** The prebuild path for this platform under a package root. */
export function prebuildPath(root: string, tag: string = prebuildTag()): string {
  return path.join(root, 'prebuilds', tag, 'isopool.node');
}

/** The prebuilds every npm package of isopool holds (scripts/prebuild.js builds them). */
export const PREBUILD_TAGS: readonly string[] = ['linux-x64', 'linux-x64-musl', 'linux-arm64', 'linux-arm64-musl'];

/** Where the addon was loaded from; `undefined` until it is loaded. */
export interface NativeSource {
  /** `'prebuild'`: the packaged binary; `'build'`: the local build from source. */
  kind: 'prebuild' | 'build';
  /** The file, when known (`bindings` does not say which candidate it loaded). */
  path: string | undefined;
}

function mtimeMs(file: string): number | undefined {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

let cached: NativeAddon | undefined;
let cachedSource: NativeSource | undefined;

/** Where the cached addon came from (for diagnostics and the packaging smoke test). */
export function nativeSource(): NativeSource | undefined {
  return cachedSource;
}

/** The addon, loaded on first use and cached. */
export function loadNative(): NativeAddon {
  if (cached !== undefined) return cached;
  const root = findPackageRoot(__dirname);
  let prebuildError: unknown;
  if (root !== undefined) {
    const prebuild = prebuildPath(root);
    const prebuildTime = mtimeMs(prebuild);
    const localTime = mtimeMs(path.join(root, 'build', 'Release', 'isopool.node'));
    if (prebuildTime !== undefined && (localTime === undefined || localTime <= prebuildTime)) {
      try {
        const raw: unknown = require(prebuild);
        cached = narrowAddon(raw);
        cachedSource = { kind: 'prebuild', path: prebuild };
        return cached;
      } catch (cause) {
        prebuildError = cause; // fall through to the local build
      }
    }
  }
  const bindings: unknown = require('bindings');
  if (!isBindingsLoader(bindings)) {
    throw new Error('isopool: the "bindings" package did not export a function');
  }
  let raw: unknown;
  try {
    raw = bindings('isopool');
  } catch (cause) {
    const prebuildNote = prebuildError === undefined ? '' : ` (the prebuild failed to load too: ${String(prebuildError)})`;
    throw new Error(
      `isopool: could not load the native addon isopool.node${prebuildNote}; ` +
        `no prebuild for ${prebuildTag()} loaded (prebuilds ship for ${PREBUILD_TAGS.join(', ')}), so build it from source with ` +
        '"npm rebuild isopool" (in a checkout: "npm run build:native")',
      { cause },
    );
  }
  cached = narrowAddon(raw);
  cachedSource = { kind: 'build', path: undefined };
  return cached;
}
