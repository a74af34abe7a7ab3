/**
 * Argument validation at the edge: every public entry point checks its arguments here before
 * anything changes. Each check throws the error (README "Errors") that names the offending value.
 * @packageDocumentation
 */
import { InvalidArgumentError, InvalidSizeError, describeValue } from './errors';
import type { AccessMode, ChannelOptions, LimitFields, ZeroMode } from './types';

export const MAX_CHANNEL_ID_LENGTH = 256;

/** A plain object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// snapshots: every option object is read exactly once
//
// An option object may have getters, or be a Proxy. It is read once, here, into a frozen plain
// object (own data properties only), and only that snapshot is validated and used afterwards:
// a getter that flips its value, throws, or calls back into the manager cannot make the value
// that was checked differ from the value that is used. What is read: the own enumerable string
// keys (as by object spread), each once; inherited properties are not options. A getter or
// Proxy trap that throws is ERR_INVALID_ARGUMENT naming the option, with the error as `cause`.

/** `run()`, with anything it throws turned into ERR_INVALID_ARGUMENT naming `argument`. */
function reading<T>(argument: string, run: () => T): T {
  try {
    return run();
  } catch (cause) {
    throw new InvalidArgumentError(argument, `reading ${argument} threw: ${cause instanceof Error ? cause.message : describeValue(cause)}`, { cause });
  }
}

/** The own enumerable string keys of an object (read once); ERR_INVALID_ARGUMENT if it is not a plain object. */
function ownKeysOf(argument: string, value: unknown, what: string): { record: object; keys: string[] } {
  if (typeof value !== 'object' || value === null || reading(argument, () => Array.isArray(value))) {
    throw new InvalidArgumentError(argument, `${argument} must be ${what}, got ${describeValue(value)}`);
  }
  return { record: value, keys: reading(argument, () => Object.keys(value)) };
}

/**
 * Reads an options object once: refuses keys outside `allowed`, then reads each allowed key
 * that is present exactly once. `prefix` names its properties in errors (`${argument}.` by default).
 */
export function readOptions<K extends string>(
  argument: string,
  value: unknown,
  allowed: readonly K[],
  prefix = `${argument}.`,
  what = 'an object',
): Readonly<Partial<Record<K, unknown>>> {
  const { record, keys } = ownKeysOf(argument, value, what);
  for (const key of keys) {
    if (!(allowed as readonly string[]).includes(key)) {
      throw new InvalidArgumentError(argument, `${argument} has an unknown option ${describeValue(key)}`);
    }
  }
  const out: Partial<Record<K, unknown>> = {};
  for (const key of keys as K[]) {
    const v: unknown = reading(`${prefix}${key}`, () => Reflect.get(record, key));
    if (v !== undefined) out[key] = v;
  }
  return Object.freeze(out);
}

/** Reads a map keyed by any string once: its own enumerable entries, each value read once. */
function readMap(argument: string, value: unknown, what: string): ReadonlyArray<readonly [string, unknown]> {
  const { record, keys } = ownKeysOf(argument, value, what);
  const out: Array<readonly [string, unknown]> = [];
  for (const key of keys) out.push(Object.freeze([key, reading(`${argument}[${JSON.stringify(key)}]`, () => Reflect.get(record, key))] as const));
  return Object.freeze(out);
}

/** Reads an array once: its `length`, then each element once. */
export function readList(argument: string, value: unknown, what: string): readonly unknown[] {
  if (typeof value !== 'object' || value === null || !reading(argument, () => Array.isArray(value))) {
    throw new InvalidArgumentError(argument, `${argument} must be ${what}, got ${describeValue(value)}`);
  }
  const list = value as readonly unknown[];
  const length: unknown = reading(`${argument}.length`, () => list.length);
  // A Proxy's `length` may be anything: compared as given, it could run code (valueOf).
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) {
    throw new InvalidArgumentError(`${argument}.length`, `${argument}.length must be a safe integer >= 0, got ${describeValue(length)}`);
  }
  const out: unknown[] = [];
  for (let i = 0; i < length; i++) out.push(reading(`${argument}[${i}]`, () => list[i]));
  return Object.freeze(out);
}

/** `undefined` or a boolean; anything else is ERR_INVALID_ARGUMENT. */
export function checkOptionalBoolean(argument: string, value: unknown): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new InvalidArgumentError(argument, `${argument} must be a boolean, got ${describeValue(value)}`);
  }
  return value;
}

/** A non-empty string of at most 256 characters. */
export function checkChannelId(channelId: unknown, argument = 'channelId'): string {
  if (typeof channelId !== 'string' || channelId.length === 0 || channelId.length > MAX_CHANNEL_ID_LENGTH) {
    throw new InvalidArgumentError(
      argument,
      `${argument} must be a non-empty string of at most ${MAX_CHANNEL_ID_LENGTH} characters, got ${describeValue(channelId)}`,
    );
  }
  return channelId;
}

export function checkTypeName(resourceType: unknown, argument = 'resourceType'): string {
  if (typeof resourceType !== 'string' || resourceType.length === 0) {
    throw new InvalidArgumentError(argument, `${argument} must be a non-empty string, got ${describeValue(resourceType)}`);
  }
  return resourceType;
}

/** A number that is a safe integer in 1..max; else ERR_INVALID_ARGUMENT (not a number) or ERR_INVALID_SIZE. */
export function checkSize(size: unknown, max: number): number {
  if (typeof size !== 'number') {
    throw new InvalidArgumentError('size', `size must be a number, got ${describeValue(size)}`);
  }
  if (!Number.isSafeInteger(size) || size < 1 || size > max) throw new InvalidSizeError(size, max);
  return size;
}

/** A safe integer >= min, or (if allowInfinity) Infinity. */
export function checkCount(argument: string, value: unknown, min: number, allowInfinity: boolean): number {
  const ok =
    typeof value === 'number' &&
    ((Number.isSafeInteger(value) && value >= min) || (allowInfinity && value === Infinity));
  if (!ok) {
    const what = allowInfinity ? `a safe integer >= ${min} or Infinity` : `a safe integer >= ${min}`;
    throw new InvalidArgumentError(argument, `${argument} must be ${what}, got ${describeValue(value)}`);
  }
  return value as number;
}

const LIMIT_KEYS = ['maxBytes', 'maxHandles', 'maxAllocationSize', 'softBytes'] as const;

/** Reads and checks a partial limits object once; returns a frozen snapshot of the fields given. */
export function checkLimits(argument: string, limits: unknown): Readonly<Partial<LimitFields>> {
  const read = readOptions(argument, limits, LIMIT_KEYS, `${argument}.`, 'an object of limits');
  const out: Partial<LimitFields> = {};
  for (const key of LIMIT_KEYS) {
    const value = read[key];
    if (value !== undefined) out[key] = checkCount(`${argument}.${key}`, value, 0, true);
  }
  return Object.freeze(out);
}

/** A checked, frozen snapshot of a {@link ChannelOptions} object. */
export interface CheckedChannelOptions {
  readonly limits: ReadonlyArray<readonly [string, Readonly<Partial<LimitFields>>]>;
  readonly access: AccessMode | undefined;
  readonly zero: ZeroMode | undefined;
  /** See {@link ChannelOptions.unsafeImmediateReuse}. */
  readonly unsafeImmediateReuse: boolean | undefined;
}

/** Channel options when none are given. */
export const NO_CHANNEL_OPTIONS: CheckedChannelOptions = Object.freeze({
  limits: Object.freeze([]),
  access: undefined,
  zero: undefined,
  unsafeImmediateReuse: undefined,
});

const CHANNEL_OPTION_KEYS = ['limits', 'access', 'zero', 'unsafeImmediateReuse'] as const satisfies ReadonlyArray<keyof ChannelOptions>;

const ACCESS_MODES = ['revocable', 'view'] as const satisfies readonly AccessMode[];
const ZERO_MODES = ['cross-channel', 'always'] as const satisfies readonly ZeroMode[];

/** `undefined` or one of `values` (compared, never coerced); anything else is ERR_INVALID_ARGUMENT. */
export function oneOf<T extends string>(argument: string, value: unknown, values: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  const found = values.find((v) => v === value);
  if (found === undefined) {
    throw new InvalidArgumentError(argument, `${argument} must be ${values.map((v) => `'${v}'`).join(' or ')}, got ${describeValue(value)}`);
  }
  return found;
}

/** Reads a {@link ChannelOptions} object once and checks it. */
export function checkChannelOptions(argument: string, options: unknown): CheckedChannelOptions {
  const opts = readOptions(argument, options, CHANNEL_OPTION_KEYS);
  const access = oneOf(`${argument}.access`, opts.access, ACCESS_MODES);
  const zero = oneOf(`${argument}.zero`, opts.zero, ZERO_MODES);
  const unsafeImmediateReuse = checkOptionalBoolean(`${argument}.unsafeImmediateReuse`, opts.unsafeImmediateReuse);
  const limits: Array<readonly [string, Readonly<Partial<LimitFields>>]> = [];
  if (opts.limits !== undefined) {
    const where = `${argument}.limits`;
    for (const [type, l] of readMap(where, opts.limits, "an object keyed by resource type or '*'")) {
      limits.push(Object.freeze([type, checkLimits(`${where}[${JSON.stringify(type)}]`, l)] as const));
    }
  }
  return Object.freeze({ limits: Object.freeze(limits), access, zero, unsafeImmediateReuse });
}

/** channelDefaults, overridden by explicit options (limits merged per type key). */
export function mergeChannelOptions(defaults: CheckedChannelOptions, options: CheckedChannelOptions): CheckedChannelOptions {
  const limits = new Map(defaults.limits);
  for (const [type, l] of options.limits) limits.set(type, Object.freeze({ ...limits.get(type), ...l }));
  return Object.freeze({
    limits: Object.freeze([...limits]),
    access: options.access ?? defaults.access,
    zero: options.zero ?? defaults.zero,
    unsafeImmediateReuse: options.unsafeImmediateReuse ?? defaults.unsafeImmediateReuse,
  });
}
