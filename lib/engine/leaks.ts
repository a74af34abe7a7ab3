/**
 * Leak detection (docs/SECURITY.md): which allocations are watched ('sampled': one in
 * `leakSampleRate`; 'paranoid': all, with their allocation site), and the FinalizationRegistry
 * that reports a watched handle collected while live. The engine reclaims it (onCollected).
 * @internal
 * @packageDocumentation
 */
import type { LeakDetectionMode } from '../types';
import { AllocationSite } from './sites';

/** What the leak registry remembers of a watched handle (never the handle or its buffer). */
export interface LeakHeld {
  readonly id: number;
  readonly resourceType: string;
  readonly size: number;
  readonly channelId: string | null;
  readonly site: AllocationSite | undefined;
}

export class LeakWatch {
  readonly #mode: LeakDetectionMode;
  readonly #rate: number;
  readonly #registry: FinalizationRegistry<LeakHeld>;
  /** Allocations so far (the sampling clock). */
  #allocations = 0;
  /** Watched handles found collected while live, and those of them the engine reclaimed. */
  detected = 0;
  reclaimed = 0;

  constructor(mode: LeakDetectionMode, rate: number, onCollected: (held: LeakHeld) => void) {
    this.#mode = mode;
    this.#rate = rate;
    this.#registry = new FinalizationRegistry<LeakHeld>(onCollected);
  }

  /** Whether the next allocation is watched. */
  nextWatched(): boolean {
    return this.#mode === 'paranoid' || (this.#mode === 'sampled' && this.#allocations % this.#rate === 0);
  }

  /** An allocation was made (watched or not). */
  counted(): void {
    this.#allocations++;
  }

  /**
   * A watched allocation's site: only 'paranoid' records one, since a capture is ~3.5 µs of V8
   * reading optimised frames back (docs/DECISIONS.md "Leak sites").
   */
  siteFor(watched: boolean): AllocationSite | undefined {
    return watched && this.#mode === 'paranoid' ? new AllocationSite() : undefined;
  }

  /** Watches `target` (what reaches the memory); `token` unwatches it. */
  watch(target: object, held: LeakHeld, token: object): void {
    this.#registry.register(target, held, token);
  }

  unwatch(token: object): void {
    this.#registry.unregister(token);
  }
}
