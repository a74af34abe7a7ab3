/**
 * Limits as the native ledgers hold them (README "Limits"), and a channel's isolation check.
 * @internal
 * @packageDocumentation
 */
import { describeValue } from '../errors';
import { LimitsOut, RecountOut, UsageOut, VIOLATION_CODES } from '../native/abi';
import type { NativeManager } from '../native/binding';
import type { LimitFields, ResourceIsolationResult, ResourceLimits } from '../types';
import type { ChannelState } from './state';

/** The limits set on exactly one scope (type -1: a channel's total; channel -1: a type's total). */
export function scopeLimits(native: NativeManager, type: number, channel: number): LimitFields {
  native.getScopeLimits(type, channel);
  const out = native.out;
  return {
    maxBytes: out[LimitsOut.MaxBytes],
    maxHandles: out[LimitsOut.MaxHandles],
    maxAllocationSize: out[LimitsOut.MaxAllocationSize],
    softBytes: out[LimitsOut.SoftBytes],
  };
}

/** The effective limits of (type, channel): field by field the tightest scope that applies. */
export function effectiveLimits(native: NativeManager, typeName: string, type: number, channel: ChannelState | null): ResourceLimits {
  native.getLimits(type, channel === null ? -1 : channel.index);
  const out = native.out;
  return {
    resourceType: typeName,
    channelId: channel === null ? null : channel.name,
    maxBytes: out[LimitsOut.MaxBytes],
    maxHandles: out[LimitsOut.MaxHandles],
    maxAllocationSize: out[LimitsOut.MaxAllocationSize],
    softBytes: out[LimitsOut.SoftBytes],
  };
}

/** verifyResourceIsolation: the channel's ledger against a recount of its live handles, and its recorded violations. */
export function isolationOf(native: NativeManager, state: ChannelState): ResourceIsolationResult {
  const out = native.out;
  native.recountChannel(state.index);
  const liveHandles = out[RecountOut.Handles];
  const liveCharged = out[RecountOut.Charged];
  native.channelUsage(state.index);
  const ledgerBytes = out[UsageOut.Bytes];
  const ledgerHandles = out[UsageOut.Handles];
  const violations: ResourceIsolationResult['violations'] = [];
  for (let k = 0; k < VIOLATION_CODES.length; k++) {
    const count = out[UsageOut.Violations + k];
    if (count > 0) {
      const code = VIOLATION_CODES[k];
      violations.push({ code, message: `${count} ${code} violation(s) recorded against channel ${describeValue(state.name)}`, count });
    }
  }
  const agrees = ledgerBytes === liveCharged && ledgerHandles === liveHandles;
  if (!agrees) {
    violations.push({
      code: 'OUT_OF_BOUNDS',
      message: `ledger (${ledgerHandles} handles, ${ledgerBytes} bytes) disagrees with live handles (${liveHandles}, ${liveCharged})`,
      count: 1,
    });
  }
  return {
    channelId: state.name,
    isolated: agrees && violations.length === 0,
    handleCount: liveHandles,
    bytesInUse: liveCharged,
    limits: effectiveLimits(native, '*', -1, state),
    violations,
  };
}
