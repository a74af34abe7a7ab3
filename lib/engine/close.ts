/**
 * Closing a channel (README "Channels", docs/DECISIONS.md "Closing a large channel"). Once the
 * native side has begun the close, every handle of the channel is freed to every caller; a
 * ChannelClose then frees them batch by batch: claimed natively, their records dropped and
 * buffers revoked here, their memory returned natively. A close of at most CLOSE_AT_ONCE_MAX
 * handles finishes before closeChannel returns; a larger one in slices over the following turns
 * of the event loop, each at most CLOSE_AT_ONCE_MAX handles and CLOSE_SLICE_MS (checked every
 * CLOSE_STEP_HANDLES).
 * @internal
 * @packageDocumentation
 */
import type { NativeManager } from '../native/binding';
import type { ChannelCloseReport } from '../types';
import type { ChannelState } from './state';
import { statusError } from './status';

/** What a close needs of the engine. */
export interface CloseHost {
  closeRecord(id: number, revoking: boolean, close: ChannelClose): boolean;
  closeViolations(mask: number, id: number, state: ChannelState): void;
  typeName(type: number): string;
}

/** The default per-channel handle cap: a close this size stays within one call (tens of ms at most). */
const CLOSE_AT_ONCE_MAX = 16384;
const CLOSE_SLICE_MS = 10;
const CLOSE_STEP_HANDLES = 2048;

export class ChannelClose {
  readonly #host: CloseHost;
  readonly #native: NativeManager;
  readonly #state: ChannelState;
  /** Freed batches: [id, type, size, charged, violation mask] per handle. */
  readonly #freed: Float64Array[] = [];
  /** Allocation sites of freed handles (their records are gone). */
  #sites: Map<number, string> | null = null;
  /** Immediate reuse: which handles of a batch keep their memory parked (reused between batches). */
  #keep: Uint8Array | null = null;
  /** Handles not freed yet. */
  left: number;

  constructor(host: CloseHost, native: NativeManager, state: ChannelState, count: number) {
    this.#host = host;
    this.#native = native;
    this.#state = state;
    this.left = count;
  }

  /**
   * Frees what the first call may and returns the report: exact `count` and `bytes`; `handles`
   * made now for a close that finished, else when first read (reading it finishes the close).
   */
  begin(bytes: number): ChannelCloseReport {
    const report = { channelId: this.#state.name, count: this.left, bytes } as ChannelCloseReport;
    if (this.left <= CLOSE_AT_ONCE_MAX) {
      this.#run(Infinity);
      report.handles = this.#handles();
      return report;
    }
    this.#run(CLOSE_SLICE_MS);
    let handles: ChannelCloseReport['handles'] | null = null;
    Object.defineProperty(report, 'handles', {
      enumerable: true,
      configurable: true,
      get: () => {
        if (handles === null) {
          this.finish();
          handles = this.#handles();
        }
        return handles;
      },
    });
    return report;
  }

  /** One slice; true if handles are left for another. */
  slice(): boolean {
    this.#run(CLOSE_SLICE_MS);
    return this.left > 0;
  }

  /** Frees everything left now. */
  finish(): void {
    this.#run(Infinity);
  }

  /** The engine saw `site` on a record it dropped. */
  noteSite(id: number, site: string): void {
    (this.#sites ??= new Map()).set(id, site);
  }

  /**
   * Frees batches for up to `budgetMs` (Infinity: all of them). A buffer the engine cannot
   * revoke (detached or moved by other code) keeps its memory parked until that store dies.
   */
  #run(budgetMs: number): void {
    const host = this.#host;
    const native = this.#native;
    const state = this.#state;
    const deadline = budgetMs === Infinity ? Infinity : performance.now() + budgetMs;
    const revoking = !state.deferred;
    let quota = budgetMs === Infinity ? Infinity : CLOSE_AT_ONCE_MAX;
    while (this.left > 0 && quota > 0) {
      const batch = native.closeChannelClaim(state.index, budgetMs === Infinity ? this.left : CLOSE_STEP_HANDLES);
      if (typeof batch === 'number') throw statusError(-batch, {}, native.out, 0);
      this.#freed.push(batch);
      const n = batch.length / 5;
      quota -= n;
      let keep: Uint8Array | null = null;
      /** Damaged canaries found, as (mask, id) pairs: reported once the batch is freed. */
      let canaries: number[] | null = null;
      try {
        if (revoking) keep = this.#keep !== null && this.#keep.length >= n ? this.#keep.fill(0, 0, n) : (this.#keep = new Uint8Array(n));
        for (let k = 0; k < n; k++) {
          const id = batch[k * 5];
          if (host.closeRecord(id, revoking, this) && keep !== null) keep[k] = 1;
          // Hardened: a damaged canary found by the close.
          const mask = batch[k * 5 + 4];
          if (mask !== 0) (canaries ??= []).push(mask, id);
        }
      } finally {
        const left = native.closeChannelFinish(state.index, keep);
        this.left = left < 0 ? 0 : left;
      }
      if (canaries !== null) for (let i = 0; i < canaries.length; i += 2) host.closeViolations(canaries[i], canaries[i + 1], state);
      if (performance.now() >= deadline) break;
    }
  }

  /** The freed handles (ChannelCloseReport.handles). */
  #handles(): ChannelCloseReport['handles'] {
    const handles: ChannelCloseReport['handles'] = [];
    const host = this.#host;
    for (const batch of this.#freed) {
      for (let i = 0; i + 4 < batch.length; i += 5) {
        const item: ChannelCloseReport['handles'][number] = { id: batch[i], resourceType: host.typeName(batch[i + 1]), size: batch[i + 2] };
        const site = this.#sites?.get(batch[i]);
        if (site !== undefined) item.site = site;
        handles.push(item);
      }
    }
    return handles;
  }
}
