/**
 * What the engine publishes (docs/MONITORING.md): violations (each also counted natively, against
 * the presenting scope's channel or the owner's), soft-limit pressure and hard-limit refusals.
 * Each is published once the operation's state is consistent.
 * @internal
 * @packageDocumentation
 */
import type { ResourceLimitError } from '../errors';
import type { EventSink } from '../events';
import { UsageOut, VIOLATION_CODES } from '../native/abi';
import type { NativeManager } from '../native/binding';
import { scopeLimits } from './limits';
import { UNSCOPED_INDEX } from './state';
import type { ChannelState, TypeState } from './state';
import { SCOPE_NAMES } from './status';

export class Notices {
  readonly #native: NativeManager;
  readonly #events: EventSink;

  constructor(native: NativeManager, events: EventSink) {
    this.#native = native;
    this.#events = events;
  }

  /** Publishes the violations of `mask` for handle `id`, as seen by `presenter` (null: the manager). */
  emit(mask: number, id: number, presenter: ChannelState | null): void {
    if (mask === 0 || !this.#events.wants('violation')) return;
    const channelId = presenter === null ? null : presenter.name;
    for (let bit = 0; bit < VIOLATION_CODES.length; bit++) {
      if (mask & (1 << bit)) this.#events.violation({ channelId, code: VIOLATION_CODES[bit], handleId: id });
    }
  }

  /** A malformed id (not a safe non-negative integer): counted and published as FORGED_HANDLE. */
  malformed(presenter: ChannelState | null, id: number): void {
    const kind = VIOLATION_CODES.indexOf('FORGED_HANDLE');
    this.#native.countViolation(presenter === null ? UNSCOPED_INDEX : presenter.index, kind);
    this.emit(1 << kind, id, presenter);
  }

  /** 'pressure': an allocation crossed the soft limit of native scope `scope` (LimitScope). */
  pressure(type: TypeState, channel: ChannelState | null, scope: number): void {
    const native = this.#native;
    const scopeName = SCOPE_NAMES[scope] ?? 'type';
    const channelIndex = channel === null ? UNSCOPED_INDEX : channel.index;
    if (scopeName === 'type') native.typeUsage(type.index, -1);
    else if (scopeName === 'channel') native.channelUsage(channelIndex);
    else native.typeUsage(type.index, channelIndex);
    const bytesInUse = native.out[UsageOut.Bytes];
    const scopeType = scopeName === 'channel' ? -1 : type.index;
    const scopeChannel = scopeName === 'type' ? -1 : channelIndex;
    this.#events.pressure({
      channelId: channel === null ? null : channel.name,
      resourceType: type.name,
      scope: scopeName,
      bytesInUse,
      softBytes: scopeLimits(native, scopeType, scopeChannel).softBytes,
    });
  }

  /** 'isopool:limit' for a refusal, once the refused allocation is fully undone. */
  limit(error: ResourceLimitError): void {
    if (!this.#events.wants('limit')) return;
    const { channelId, resourceType, scope, limit, requested, inUse } = error;
    this.#events.limit({ channelId, resourceType, scope, limit, requested, inUse });
  }
}
