/**
 * The checks a caller can make on a handle (README "Security model"): validation, usage
 * tracking and cleanup verification. A scope (`presenter`) gets a forged id's answer for another
 * channel's live id, so it is no oracle; the violation still counts against it.
 * @internal
 * @packageDocumentation
 */
import { InvalidHandleError } from '../errors';
import { Handle, isWellFormedId } from '../handle';
import { InfoOut, UsageOut, VIOLATION_CODES } from '../native/abi';
import type { NativeManager } from '../native/binding';
import type { ResourceMetrics, SecurityValidationResult } from '../types';
import type { ChannelDirectory } from './channels';
import type { RecordTable } from './records';
import type { TypeDirectory } from './resource-types';
import { UNSCOPED_INDEX, bufferOf, poolNameOf } from './state';
import type { ChannelState, LiveRecord } from './state';
import { handleIdArg, trackError, violationList } from './status';
import type { Notices } from './notices';

const BUFFER_DETACHED_KIND = VIOLATION_CODES.indexOf('BUFFER_DETACHED');
const FORGED_BIT = 1 << VIOLATION_CODES.indexOf('FORGED_HANDLE');
const CROSS_CHANNEL_BIT = 1 << VIOLATION_CODES.indexOf('CROSS_CHANNEL');

export class HandleChecks {
  readonly #native: NativeManager;
  readonly #out: Float64Array;
  readonly #channels: ChannelDirectory;
  readonly #types: TypeDirectory;
  readonly #records: RecordTable<LiveRecord>;
  readonly #notices: Notices;
  readonly #poolNames: readonly string[];

  constructor(native: NativeManager, channels: ChannelDirectory, types: TypeDirectory, records: RecordTable<LiveRecord>, notices: Notices, poolNames: readonly string[]) {
    this.#native = native;
    this.#out = native.out;
    this.#channels = channels;
    this.#types = types;
    this.#records = records;
    this.#notices = notices;
    this.#poolNames = poolNames;
  }

  /** `presenterIndex`: the presenting scope's native index (-1: the manager), checked open by the caller. */
  validate(handle: unknown, presenter: ChannelState | null, presenterIndex: number): SecurityValidationResult {
    const id = handleIdArg(handle);
    if (!isWellFormedId(id)) {
      this.#notices.malformed(presenter, id);
      return { valid: false, handleId: id, channelId: null, violations: violationList(1, id) };
    }
    let mask = this.#native.validate(id, presenterIndex);
    const out = this.#out;
    if (presenter !== null && (mask & CROSS_CHANNEL_BIT) !== 0) {
      // Counted natively as CROSS_CHANNEL against the presenter, and the operator's event says so;
      // the scope's answer is a forged id's, so a scope is no oracle for other channels' ids.
      this.#notices.emit(mask, id, presenter);
      return { valid: false, handleId: id, channelId: null, violations: violationList(FORGED_BIT, id) };
    }
    // Live: none of the bits that mean "not a live handle" (canary/bounds damage is on a live one).
    const notLive = (1 << VIOLATION_CODES.indexOf('FORGED_HANDLE')) | (1 << VIOLATION_CODES.indexOf('STALE_HANDLE')) | (1 << VIOLATION_CODES.indexOf('CHANNEL_CLOSED'));
    const live = (mask & notLive) === 0;
    let owner: string | null = null;
    if (live) {
      owner = this.#channels.nameOf(out[InfoOut.Channel]);
      if (this.#isDetached(id, handle)) {
        mask |= 1 << BUFFER_DETACHED_KIND;
        this.#native.countViolation(presenter === null ? out[InfoOut.Channel] : presenterIndex, BUFFER_DETACHED_KIND);
      }
    }
    // CANARY_CORRUPTED is counted against the owner channel (native), so its event names the owner.
    const canary = mask & (1 << VIOLATION_CODES.indexOf('CANARY_CORRUPTED'));
    const ownerState = canary !== 0 ? (this.#channels.at(out[InfoOut.Channel]) ?? null) : null;
    this.#notices.emit(mask & ~canary, id, presenter);
    if (canary !== 0) this.#notices.emit(canary, id, ownerState);
    return { valid: mask === 0, handleId: id, channelId: owner, violations: violationList(mask, id) };
  }

  /** A live revocable handle whose buffer was detached by code other than ours. */
  #isDetached(id: number, handle: unknown): boolean {
    const record = this.#records.get(id);
    if (record === undefined || record.ab === null) return false;
    const ab = bufferOf(record);
    if (ab !== undefined && ab.byteLength === 0) return true;
    // `id` was read from `handle` once already (#handleId); its buffer is read once here.
    const buffer = Handle.is(handle) ? handle.buffer : null;
    return buffer !== null && buffer.byteLength === 0;
  }
  /** `presenterIndex` as for validate. */
  track(handle: unknown, presenter: ChannelState | null, presenterIndex: number): ResourceMetrics {
    const id = handleIdArg(handle);
    if (!isWellFormedId(id)) {
      this.#notices.malformed(presenter, id);
      throw new InvalidHandleError(id, 'is not a handle id (a non-negative safe integer)');
    }
    const mask = this.#native.validate(id, presenterIndex);
    const out = this.#out;
    const error = trackError(mask, id, presenter !== null);
    if (error !== null) {
      this.#notices.emit(mask, id, presenter);
      throw error;
    }
    const type = this.#types.at(out[InfoOut.Type]);
    const channelIndex = out[InfoOut.Channel];
    const size = out[InfoOut.Size];
    const slotBytes = out[InfoOut.SlotBytes];
    const pool = poolNameOf(this.#poolNames, out[InfoOut.Pool]);
    const ageNs = out[InfoOut.AgeNs];
    const latency = out[InfoOut.LatencyNs];
    this.#native.channelUsage(channelIndex < 0 ? UNSCOPED_INDEX : channelIndex);
    const result: ResourceMetrics = {
      handleId: id,
      resourceType: type?.name ?? 'unknown',
      channelId: this.#channels.nameOf(channelIndex),
      pool,
      requestedBytes: size,
      slotBytes,
      internalFragmentation: slotBytes > 0 ? 1 - size / slotBytes : 0,
      ageMs: ageNs / 1e6,
      allocationLatencyNs: latency,
      channelBytesInUse: this.#out[UsageOut.Bytes],
    };
    // A live handle with damage (hardened canary, bounds): reported once the result is read.
    this.#notices.emit(mask, id, presenter);
    return result;
  }
  verifyCleanup(handle: unknown): boolean {
    const id = handleIdArg(handle);
    if (!isWellFormedId(id)) return false;
    if (!this.#native.isReleased(id)) return false;
    // A revocable buffer must be revoked too (view-mode buffers are never revoked: README "Access modes and their risks").
    // `id` was read from `handle` once already (#handleId); access and buffer are read once here.
    if (Handle.is(handle) && handle.access === 'revocable') {
      const buffer = handle.buffer;
      if (buffer !== null) return buffer.byteLength === 0;
    }
    return true;
  }}
