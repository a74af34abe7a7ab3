/**
 * Native refusals as typed errors (README "Errors"), and violation masks as violation lists.
 * @internal
 * @packageDocumentation
 */
import {
  ChannelClosedError,
  HandleTableFullError,
  InvalidArgumentError,
  InvalidHandleError,
  InvalidSizeError,
  IsolationViolationError,
  ManagerClosedError,
  PoolExhaustedError,
  ResourceLimitError,
  StaleHandleError,
  UnknownChannelError,
  UnknownResourceTypeError,
  describeValue,
} from '../errors';
import type { IsopoolError, LimitScopeName } from '../errors';
import { handleIdOf as idOf } from '../handle';
import { AllocOut, InfoOut, NativeLimitScope, NativeStatus, VIOLATION_CODES } from '../native/abi';
import { HANDLE_TABLE_CAPACITY } from '../native/binding';
import type { Violation, ViolationCode } from '../types';

/** What the caller knows of the refused call, for the error's fields. */
export interface StatusContext {
  type?: string;
  channel?: string;
  size?: number;
  id?: number;
}

/** Native limit scopes by their public names. */
export const SCOPE_NAMES: Record<number, LimitScopeName> = {
  [NativeLimitScope.Type]: 'type',
  [NativeLimitScope.Channel]: 'channel',
  [NativeLimitScope.ChannelType]: 'channel-type',
};
const VIOLATION_MESSAGES: Record<ViolationCode, string> = {
  FORGED_HANDLE: 'was never issued by this manager',
  STALE_HANDLE: 'was freed',
  CHANNEL_CLOSED: "was freed by its channel's close",
  CROSS_CHANNEL: 'belongs to another channel',
  OUT_OF_BOUNDS: "recorded extent falls outside its slot or slab",
  CANARY_CORRUPTED: 'canary bytes are damaged',
  BUFFER_DETACHED: 'buffer was detached by other code while the handle is live',
};

/** The violations of `mask` (a native violation mask) for handle `id`. */
export function violationList(mask: number, id: number): Violation[] {
  const out: Violation[] = [];
  for (let bit = 0; bit < VIOLATION_CODES.length; bit++) {
    if (mask & (1 << bit)) {
      const code = VIOLATION_CODES[bit];
      out.push({ code, message: `handle ${describeValue(id)} ${VIOLATION_MESSAGES[code]}` });
    }
  }
  return out;
}

/**
 * The error for a native status. `out` is read for what the status left there (a stale id's
 * "closed by its channel"); `maxAllocationSize` is the manager's.
 */
export function statusError(status: number, ctx: StatusContext, out: Float64Array, maxAllocationSize: number): IsopoolError {
  switch (status) {
    case NativeStatus.InvalidSize:
      return new InvalidSizeError(ctx.size ?? NaN, maxAllocationSize);
    case NativeStatus.UnknownType:
      return new UnknownResourceTypeError(ctx.type ?? '');
    case NativeStatus.UnknownChannel:
      return new UnknownChannelError(ctx.channel ?? '');
    case NativeStatus.ChannelClosed:
      return new ChannelClosedError(ctx.channel ?? '');
    case NativeStatus.PoolExhausted:
      return new PoolExhaustedError(ctx.size ?? 0);
    case NativeStatus.HandleTableFull:
      return new HandleTableFullError(HANDLE_TABLE_CAPACITY);
    case NativeStatus.InvalidHandle:
      return new InvalidHandleError(ctx.id ?? NaN, ctx.id === undefined ? 'is invalid' : 'is forged or not in transit');
    case NativeStatus.StaleHandle:
      return new StaleHandleError(ctx.id ?? NaN, out[InfoOut.ClosedByChannel] === 1);
    case NativeStatus.IsolationViolation:
      return new IsolationViolationError(ctx.id ?? NaN, ctx.channel ?? '');
    case NativeStatus.ManagerClosed:
      return new ManagerClosedError('native call');
    default:
      return new InvalidArgumentError('arguments', `the native core refused the arguments (status ${status})`);
  }
}

/** The ResourceLimitError of a refused allocation (its details in `out`, native/binding/abi.h AllocOut). */
export function limitError(out: Float64Array, resourceType: string, size: number, channelId: string | null): ResourceLimitError {
  const scope: LimitScopeName = SCOPE_NAMES[out[AllocOut.RefusedScope]] ?? 'type';
  const refusedBy = out[AllocOut.RefusedHandles];
  const limitKind = refusedBy === 1 ? 'maxHandles' : refusedBy === 2 ? 'maxAllocationSize' : 'maxBytes';
  const requested = refusedBy === 1 ? 1 : refusedBy === 2 ? size : out[AllocOut.Charged];
  return new ResourceLimitError({
    limitKind,
    limit: out[AllocOut.RefusedLimit],
    requested,
    inUse: out[AllocOut.RefusedInUse],
    scope,
    resourceType,
    channelId,
  });
}

/**
 * trackResourceUsage's error for a validation mask, or null for a live handle (whose damage, if
 * any, is reported as violations). Through a scope (`scoped`), another channel's live id gets a
 * forged id's error: a scope is no oracle for other channels' ids.
 */
export function trackError(mask: number, id: number, scoped: boolean): IsopoolError | null {
  if (mask === 0) return null;
  if (mask & (1 << VIOLATION_CODES.indexOf('FORGED_HANDLE'))) return new InvalidHandleError(id);
  if (mask & (1 << VIOLATION_CODES.indexOf('CHANNEL_CLOSED'))) return new StaleHandleError(id, true);
  if (mask & (1 << VIOLATION_CODES.indexOf('STALE_HANDLE'))) return new StaleHandleError(id, false);
  if (scoped && mask & (1 << VIOLATION_CODES.indexOf('CROSS_CHANNEL'))) return new InvalidHandleError(id);
  return null;
}

/** The id a handle argument names (a ResourceHandle or a number): ERR_INVALID_ARGUMENT for anything else. */
export function handleIdArg(handle: unknown, argument = 'handle'): number {
  const id = idOf(handle);
  if (id === undefined) {
    throw new InvalidArgumentError(argument, `${argument} must be a ResourceHandle or a handle id (number), got ${describeValue(handle)}`);
  }
  return id;
}
