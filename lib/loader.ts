/**
 * Loads the native addon (build/Release/isopool.node) once per thread.
 *
 * The addon's export is typed `unknown` and checked by {@link narrowAddon}
 * before anything else in lib/ sees it as a {@link NativeAddon}.
 * @internal
 * @packageDocumentation
 */

import type { NativeAddon } from './native';

/** `bindings`' export: finds `<name>.node` under the package root and requires it. */
type BindingsLoader = (name: string) => unknown;

function isBindingsLoader(value: unknown): value is BindingsLoader {
  return typeof value === 'function';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null;
}

/**
 * Checks the raw addon export against the {@link NativeAddon} contract.
 * Throws an Error naming what is missing (a stale or foreign `isopool.node`).
 */
export function narrowAddon(raw: unknown): NativeAddon {
  if (!isObject(raw)) {
    throw new Error(`isopool: the native addon exported ${raw === null ? 'null' : typeof raw}, expected an object`);
  }
  const { NativeManager, pageSize } = raw;
  if (typeof NativeManager !== 'function') {
    throw new Error(`isopool: the native addon has no NativeManager class (got ${typeof NativeManager}); rebuild it with "npm run build:native"`);
  }
  if (typeof pageSize !== 'number' || !Number.isSafeInteger(pageSize) || pageSize <= 0) {
    throw new Error(`isopool: the native addon's pageSize is ${String(pageSize)}, expected a positive integer; rebuild it with "npm run build:native"`);
  }
  // The checks above are all that can be checked without constructing a manager;
  // the method shapes are the addon's contract (native/manager_binding.cc).
  return raw as unknown as NativeAddon;
}

let cached: NativeAddon | undefined;

/** The addon, loaded on first use and cached. */
export function loadNative(): NativeAddon {
  if (cached !== undefined) return cached;
  const bindings: unknown = require('bindings');
  if (!isBindingsLoader(bindings)) {
    throw new Error('isopool: the "bindings" package did not export a function');
  }
  let raw: unknown;
  try {
    raw = bindings('isopool');
  } catch (cause) {
    throw new Error('isopool: could not load the native addon isopool.node; build it with "npm run build:native"', { cause });
  }
  cached = narrowAddon(raw);
  return cached;
}
