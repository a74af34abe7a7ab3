/**
 * Typed errors (README "Errors"). One base class, one subclass per failure, each with a literal
 * `code` so callers can narrow on `err.code`.
 * @packageDocumentation
 */

/** Every error code isopool throws. */
export type IsopoolErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INVALID_SIZE'
  | 'ERR_UNKNOWN_RESOURCE_TYPE'
  | 'ERR_UNKNOWN_CHANNEL'
  | 'ERR_CHANNEL_CLOSED'
  | 'ERR_RESOURCE_LIMIT'
  | 'ERR_POOL_EXHAUSTED'
  | 'ERR_INVALID_HANDLE'
  | 'ERR_STALE_HANDLE'
  | 'ERR_ISOLATION_VIOLATION'
  | 'ERR_MANAGER_CLOSED'
  | 'ERR_HANDLE_TABLE_FULL';

/** Base class of every error isopool throws. */
export abstract class IsopoolError extends Error {
  /** The literal error code (README "Errors"). */
  abstract readonly code: IsopoolErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Renders a value for an error message: strings quoted, objects by their type. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/** An argument of the wrong type, or unknown options. */
export class InvalidArgumentError extends IsopoolError {
  readonly code = 'ERR_INVALID_ARGUMENT' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'InvalidArgumentError' as const;
  /** Name of the offending argument or option. */
  readonly argument: string;
  /** `options.cause`: what reading the argument threw (a getter or Proxy trap), if that is why. */
  constructor(argument: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.argument = argument;
  }
}

/** A size that is a number but not a safe integer from 1 to maxAllocationSize. */
export class InvalidSizeError extends IsopoolError {
  readonly code = 'ERR_INVALID_SIZE' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'InvalidSizeError' as const;
  /** The refused size, as given. */
  readonly size: number;
  /** The manager-wide maximum allocation size (bytes, or units for counted types). */
  readonly maxAllocationSize: number;
  constructor(size: number, maxAllocationSize: number) {
    super(`size ${describeValue(size)} is not a safe integer from 1 to ${maxAllocationSize}`);
    this.size = size;
    this.maxAllocationSize = maxAllocationSize;
  }
}

/** A resource type that was never defined. */
export class UnknownResourceTypeError extends IsopoolError {
  readonly code = 'ERR_UNKNOWN_RESOURCE_TYPE' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'UnknownResourceTypeError' as const;
  /** The type name that was never defined. */
  readonly resourceType: string;
  constructor(resourceType: string) {
    super(`unknown resource type ${describeValue(resourceType)}`);
    this.resourceType = resourceType;
  }
}

/** A channel that is not open (and may not be opened implicitly). */
export class UnknownChannelError extends IsopoolError {
  readonly code = 'ERR_UNKNOWN_CHANNEL' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'UnknownChannelError' as const;
  /** The id of the channel that is not open. */
  readonly channelId: string;
  constructor(channelId: string) {
    super(`unknown channel ${describeValue(channelId)}`);
    this.channelId = channelId;
  }
}

/** A channel that was closed and not reopened. */
export class ChannelClosedError extends IsopoolError {
  readonly code = 'ERR_CHANNEL_CLOSED' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'ChannelClosedError' as const;
  /** The closed channel's id. */
  readonly channelId: string;
  constructor(channelId: string) {
    super(`channel ${describeValue(channelId)} is closed`);
    this.channelId = channelId;
  }
}

/** Which limit scope refused: a type's total, a channel's total, or a type within a channel. */
export type LimitScopeName = 'type' | 'channel' | 'channel-type';

/** An allocation that would cross a hard limit. Nothing changed except the refusal counter. */
export class ResourceLimitError extends IsopoolError {
  readonly code = 'ERR_RESOURCE_LIMIT' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'ResourceLimitError' as const;
  /** Which limit: bytes (units for counters), handles, or the per-allocation size. */
  readonly limitKind: 'maxBytes' | 'maxHandles' | 'maxAllocationSize';
  /** The limit's value. */
  readonly limit: number;
  /** What the refused allocation asked for: charged bytes, 1 handle, or its size. */
  readonly requested: number;
  /** Usage in that scope when refused (bytes, handles, or 0 for maxAllocationSize). */
  readonly inUse: number;
  /** Which scope refused: the type's total, the channel's total, or the type within the channel. */
  readonly scope: LimitScopeName;
  /** The resource type of the refused allocation. */
  readonly resourceType: string;
  /** The channel of the refused allocation; `null` for the unscoped domain. */
  readonly channelId: string | null;
  constructor(fields: {
    limitKind: 'maxBytes' | 'maxHandles' | 'maxAllocationSize';
    limit: number;
    requested: number;
    inUse: number;
    scope: LimitScopeName;
    resourceType: string;
    channelId: string | null;
  }) {
    const where = fields.channelId === null ? `type ${describeValue(fields.resourceType)}` : `channel ${describeValue(fields.channelId)}`;
    super(
      `${fields.limitKind} limit of ${where} (${fields.scope} scope) refused ${fields.requested}: ` +
        `${fields.inUse} in use, limit ${fields.limit}`,
    );
    this.limitKind = fields.limitKind;
    this.limit = fields.limit;
    this.requested = fields.requested;
    this.inUse = fields.inUse;
    this.scope = fields.scope;
    this.resourceType = fields.resourceType;
    this.channelId = fields.channelId;
  }
}

/** The system refused memory. */
export class PoolExhaustedError extends IsopoolError {
  readonly code = 'ERR_POOL_EXHAUSTED' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'PoolExhaustedError' as const;
  /** Bytes the refused allocation asked for. */
  readonly requested: number;
  constructor(requested: number) {
    super(`the system refused memory for an allocation of ${requested} bytes`);
    this.requested = requested;
  }
}

/**
 * Every handle of the manager's handle table is live: the table, not the system's memory nor
 * a limit, refused the allocation. Per-channel `maxHandles` caps keep any one channel from
 * getting there (README, "Limits").
 */
export class HandleTableFullError extends IsopoolError {
  readonly code = 'ERR_HANDLE_TABLE_FULL' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'HandleTableFullError' as const;
  /** How many handles the table holds: all of them are live. */
  readonly capacity: number;
  constructor(capacity: number) {
    super(`the handle table is full: all ${capacity} handles of the manager are live`);
    this.capacity = capacity;
  }
}

/** A forged or malformed handle. */
export class InvalidHandleError extends IsopoolError {
  readonly code = 'ERR_INVALID_HANDLE' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'InvalidHandleError' as const;
  /** The forged or malformed id, as given. */
  readonly handleId: number;
  constructor(handleId: number, detail = 'was never issued by this manager') {
    super(`handle ${describeValue(handleId)} ${detail}`);
    this.handleId = handleId;
  }
}

/** A handle that was freed (or whose slot was reused). */
export class StaleHandleError extends IsopoolError {
  readonly code = 'ERR_STALE_HANDLE' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'StaleHandleError' as const;
  /** The freed handle's id. */
  readonly handleId: number;
  /** True when the handle was freed by its channel's close. */
  readonly closedByChannel: boolean;
  constructor(handleId: number, closedByChannel: boolean) {
    super(`handle ${handleId} is stale: it was freed${closedByChannel ? ' by its channel\'s close' : ''}`);
    this.handleId = handleId;
    this.closedByChannel = closedByChannel;
  }
}

/**
 * Cross-channel use of a handle, where the caller may be told so. A `ChannelScope` never
 * throws it: another channel's live id gets a forged id's `ERR_INVALID_HANDLE` there, so a scope
 * is no oracle for other channels' ids (the use is still counted as `CROSS_CHANNEL`).
 */
export class IsolationViolationError extends IsopoolError {
  readonly code = 'ERR_ISOLATION_VIOLATION' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'IsolationViolationError' as const;
  /** The id of the other channel's handle. */
  readonly handleId: number;
  /** The channel whose scope presented the handle. */
  readonly channelId: string;
  constructor(handleId: number, channelId: string) {
    super(`handle ${handleId} does not belong to channel ${describeValue(channelId)}`);
    this.handleId = handleId;
    this.channelId = channelId;
  }
}

/** Any operation after `close()`, except `close()` and `getResourceMetrics()`. */
export class ManagerClosedError extends IsopoolError {
  readonly code = 'ERR_MANAGER_CLOSED' as const;
  /** The class name, as shown in stack traces. */
  override readonly name = 'ManagerClosedError' as const;
  /** The method that was called after `close()`. */
  readonly operation: string;
  constructor(operation: string) {
    super(`${operation}: the resource manager is closed`);
    this.operation = operation;
  }
}
