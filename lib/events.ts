/**
 * Event publication: the manager's EventEmitter events and their `diagnostics_channel` twins
 * (`isopool:pressure`, `isopool:leak`, `isopool:violation`, `isopool:limit`).
 *
 * Listeners and subscribers are other people's code, run inside isopool's operations. Two rules
 * keep them from changing what an operation does (docs/SECURITY.md):
 * - Delivery cannot fail. Every subscriber and every listener is called, each on its own: one
 *   that throws keeps neither the others nor the operation from going on. Its error is re-thrown
 *   from `process.nextTick`, so it reaches `'uncaughtException'` (or the domain or process
 *   handler) as an error of its own: what Node's `diagnostics_channel` does for its subscribers,
 *   and here for the EventEmitter listeners too (where `emit()` would throw into the operation).
 * - The core publishes an event only once its state is consistent: after every change of the
 *   operation and everything the operation returns has been read from the native side, so a
 *   listener that calls back into the manager sees the operation complete (lib/engine/engine.ts, each
 *   call of this sink).
 * @packageDocumentation
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { Channel } from 'node:diagnostics_channel';
import type { LeakEvent, LimitEvent, PressureEvent, ViolationEvent } from './types';

/** The diagnostics_channel names isopool publishes on. */
export const DIAGNOSTICS_CHANNELS = {
  /** A soft limit was crossed ({@link PressureEvent}). A subscriber that throws changes nothing (its error is re-thrown from `process.nextTick`). */
  pressure: 'isopool:pressure',
  /** A leaked handle was found and reclaimed ({@link LeakEvent}). A subscriber that throws changes nothing (its error is re-thrown from `process.nextTick`). */
  leak: 'isopool:leak',
  /** A refused use of a handle ({@link ViolationEvent}). A subscriber that throws changes nothing (its error is re-thrown from `process.nextTick`). */
  violation: 'isopool:violation',
  /** An allocation refused by a hard limit ({@link LimitEvent}). A subscriber that throws changes nothing (its error is re-thrown from `process.nextTick`). */
  limit: 'isopool:limit',
} as const;

const pressureChannel = diagnostics_channel.channel(DIAGNOSTICS_CHANNELS.pressure);
const leakChannel = diagnostics_channel.channel(DIAGNOSTICS_CHANNELS.leak);
const violationChannel = diagnostics_channel.channel(DIAGNOSTICS_CHANNELS.violation);
const limitChannel = diagnostics_channel.channel(DIAGNOSTICS_CHANNELS.limit);

/**
 * Where the core sends events; the ResourceManager implements it over its EventEmitter. Its
 * methods never throw, and the core calls them only when its state is consistent.
 */
export interface EventSink {
  /** True if anybody (an EventEmitter listener or a diagnostics subscriber) wants this event. */
  wants(event: 'pressure' | 'leak' | 'violation' | 'limit'): boolean;
  pressure(event: PressureEvent): void;
  leak(event: LeakEvent): void;
  violation(event: ViolationEvent): void;
  limit(event: LimitEvent): void;
}

/** What the sink needs of the manager's EventEmitter. */
export interface EventTarget {
  listenerCount(name: string): number;
  /** A copy of the listeners (`once` wrappers included, which remove themselves when called). */
  rawListeners(name: string): unknown[];
}

/** Re-throws a listener's error on its own, after the current operation (as diagnostics_channel does). */
function rethrowLater(error: unknown): void {
  process.nextTick(() => {
    throw error;
  });
}

/** Publishes on `channel`, then calls each listener of `name` on `target`; nothing they throw escapes. */
function deliver(channel: Channel, target: EventTarget, name: string | null, event: object): void {
  if (channel.hasSubscribers) {
    try {
      channel.publish(event); // catches and re-throws its subscribers' errors itself
    } catch (error) {
      rethrowLater(error);
    }
  }
  if (name === null || target.listenerCount(name) === 0) return;
  const listeners = target.rawListeners(name);
  for (let i = 0; i < listeners.length; i++) {
    const listener = listeners[i];
    if (typeof listener !== 'function') continue;
    try {
      Reflect.apply(listener, target, [event]);
    } catch (error) {
      rethrowLater(error);
    }
  }
}

/**
 * Emits on `target`'s listeners and publishes on diagnostics_channel. Never throws: see the
 * module comment.
 */
export function createEventSink(target: EventTarget): EventSink {
  return {
    wants(event) {
      switch (event) {
        case 'pressure':
          return pressureChannel.hasSubscribers || target.listenerCount('pressure') > 0;
        case 'leak':
          return leakChannel.hasSubscribers || target.listenerCount('leak') > 0;
        case 'violation':
          return violationChannel.hasSubscribers || target.listenerCount('violation') > 0;
        case 'limit':
          return limitChannel.hasSubscribers;
      }
    },
    pressure(event) {
      deliver(pressureChannel, target, 'pressure', event);
    },
    leak(event) {
      deliver(leakChannel, target, 'leak', event);
    },
    violation(event) {
      deliver(violationChannel, target, 'violation', event);
    },
    limit(event) {
      deliver(limitChannel, target, null, event);
    },
  };
}
