/**
 * Argument validation at the edge: every public entry point checks its arguments here before
 * anything changes. Each check throws the SPEC.md §4 error that names the offending value.
 * @packageDocumentation
 */
import { InvalidArgumentError, InvalidSizeError, describeValue } from './errors';
import type { AccessMode, ChannelOptions, LimitFields, ZeroMode } from './types';

export const MAX_CHANNEL_ID_LENGTH = 256;

/** A plain object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Throws ERR_INVALID_ARGUMENT for keys of `value` outside `allowed`. */
export function rejectUnknownKeys(argument: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new InvalidArgumentError(argument, `${argument} has an unknown option ${describeValue(key)}`);
    }
  }
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

/** Checks a partial limits object; returns only the fields given. */
export function checkLimits(argument: string, limits: unknown): Partial<LimitFields> {
  if (!isRecord(limits)) {
    throw new InvalidArgumentError(argument, `${argument} must be an object of limits, got ${describeValue(limits)}`);
  }
  rejectUnknownKeys(argument, limits, LIMIT_KEYS);
  const out: Partial<LimitFields> = {};
  for (const key of LIMIT_KEYS) {
    if (limits[key] !== undefined) out[key] = checkCount(`${argument}.${key}`, limits[key], 0, true);
  }
  return out;
}

export interface CheckedChannelOptions {
  limits: Array<[string, Partial<LimitFields>]>;
  access: AccessMode | undefined;
  zero: ZeroMode | undefined;
  unsafeImmediateReuse: boolean | undefined;
}

export function checkChannelOptions(argument: string, options: unknown): CheckedChannelOptions {
  if (!isRecord(options)) {
    throw new InvalidArgumentError(argument, `${argument} must be an object, got ${describeValue(options)}`);
  }
  rejectUnknownKeys(argument, options, ['limits', 'access', 'zero', 'unsafeImmediateReuse']);
  const opts = options as ChannelOptions & Record<string, unknown>;
  const checked: CheckedChannelOptions = { limits: [], access: undefined, zero: undefined, unsafeImmediateReuse: undefined };
  if (opts.unsafeImmediateReuse !== undefined) {
    if (typeof opts.unsafeImmediateReuse !== 'boolean') {
      throw new InvalidArgumentError(
        `${argument}.unsafeImmediateReuse`,
        `${argument}.unsafeImmediateReuse must be a boolean, got ${describeValue(opts.unsafeImmediateReuse)}`,
      );
    }
    checked.unsafeImmediateReuse = opts.unsafeImmediateReuse;
  }
  if (opts.access !== undefined) {
    if (opts.access !== 'revocable' && opts.access !== 'view') {
      throw new InvalidArgumentError(`${argument}.access`, `${argument}.access must be 'revocable' or 'view', got ${describeValue(opts.access)}`);
    }
    checked.access = opts.access;
  }
  if (opts.zero !== undefined) {
    if (opts.zero !== 'cross-channel' && opts.zero !== 'always') {
      throw new InvalidArgumentError(`${argument}.zero`, `${argument}.zero must be 'cross-channel' or 'always', got ${describeValue(opts.zero)}`);
    }
    checked.zero = opts.zero;
  }
  if (opts.limits !== undefined) {
    if (!isRecord(opts.limits)) {
      throw new InvalidArgumentError(`${argument}.limits`, `${argument}.limits must be an object keyed by resource type or '*', got ${describeValue(opts.limits)}`);
    }
    for (const [type, l] of Object.entries(opts.limits)) {
      checked.limits.push([type, checkLimits(`${argument}.limits[${JSON.stringify(type)}]`, l)]);
    }
  }
  return checked;
}
