/**
 * isopool: pooled native memory and counted resources with per-channel isolation, quotas,
 * security-boundary validation and typed metrics.
 * @packageDocumentation
 */
export {
  ResourceManager,
  DEFAULT_POOLS,
  DEFAULT_MAX_ALLOCATION_SIZE,
  DEFAULT_LEAK_SAMPLE_RATE,
  DEFAULT_CHANNEL_MAX_HANDLES,
} from './manager';
export type { ResourceManagerEvents } from './manager';
export {
  IsopoolError,
  InvalidArgumentError,
  InvalidSizeError,
  UnknownResourceTypeError,
  UnknownChannelError,
  ChannelClosedError,
  ResourceLimitError,
  PoolExhaustedError,
  HandleTableFullError,
  InvalidHandleError,
  StaleHandleError,
  IsolationViolationError,
  ManagerClosedError,
} from './errors';
export type { IsopoolErrorCode, LimitScopeName } from './errors';
export { DIAGNOSTICS_CHANNELS } from './events';
export type {
  AccessMode,
  ZeroMode,
  LeakDetectionMode,
  ViolationCode,
  ResourceLimits,
  LimitFields,
  PoolOptions,
  ChannelOptions,
  ResourceManagerOptions,
  ResourceTypeOptions,
  ResourceHandle,
  Violation,
  SecurityValidationResult,
  ResourceIsolationResult,
  ResourceMetrics,
  PoolMetrics,
  ChannelMetrics,
  LatencyMetrics,
  ManagerMetrics,
  ChannelCloseReport,
  ChannelScope,
  IResourceManager,
  PressureEvent,
  ViolationEvent,
  LeakEvent,
  LimitEvent,
} from './types';
