/**
 * ChannelScope: what a service hands to the code serving one tenant or connection.
 * Every call presents the scope's channel, so another channel's handles are refused and counted.
 * @packageDocumentation
 */
import type { ChannelState, Core } from './core';
import type {
  ChannelCloseReport,
  ChannelScope,
  ResourceHandle,
  ResourceLimits,
  ResourceMetrics,
  SecurityValidationResult,
} from './types';

/** @internal */
export class Scope implements ChannelScope {
  readonly #core: Core;
  readonly #state: ChannelState;

  constructor(core: Core, state: ChannelState) {
    this.#core = core;
    this.#state = state;
  }

  get channelId(): string {
    return this.#state.name;
  }

  allocate(resourceType: string, size: number): ResourceHandle {
    this.#core.checkOpenHot('ChannelScope.allocate');
    return this.#core.allocate(resourceType, size, undefined, this.#state);
  }

  deallocate(handle: ResourceHandle | number): boolean {
    this.#core.checkOpenHot('ChannelScope.deallocate');
    return this.#core.deallocate(handle, this.#state);
  }

  validate(handle: ResourceHandle | number): SecurityValidationResult {
    this.#core.checkOpen('ChannelScope.validate');
    return this.#core.validate(handle, this.#state);
  }

  track(handle: ResourceHandle | number): ResourceMetrics {
    this.#core.checkOpen('ChannelScope.track');
    return this.#core.track(handle, this.#state);
  }

  limits(resourceType: string): ResourceLimits {
    this.#core.checkOpen('ChannelScope.limits');
    this.#core.checkScopeOpen(this.#state);
    return this.#core.getLimits(resourceType, this.#state.name);
  }

  close(): ChannelCloseReport {
    this.#core.checkOpen('ChannelScope.close');
    this.#core.checkScopeOpen(this.#state);
    return this.#core.closeChannel(this.#state.name);
  }
}

/** The scope of a channel incarnation, created once. */
export function scopeOf(core: Core, state: ChannelState): ChannelScope {
  if (state.scope === undefined) state.scope = new Scope(core, state);
  return state.scope as ChannelScope;
}
