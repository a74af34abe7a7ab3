/**
 * Event publication: the manager's EventEmitter events and their `diagnostics_channel` twins
 * (`isopool:pressure`, `isopool:leak`, `isopool:violation`, `isopool:limit`).
 * @packageDocumentation
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { LeakEvent, LimitEvent, PressureEvent, ViolationEvent } from './types';

/** The diagnostics_channel names isopool publishes on. */
export const DIAGNOSTICS_CHANNELS = {
  /** A soft limit was crossed ({@link PressureEvent}). */
  pressure: 'isopool:pressure',
  /** A leaked handle was found and reclaimed ({@link LeakEvent}). */
  leak: 'isopool:leak',
  /** A refused use of a handle ({@link ViolationEvent}). */
  violation: 'isopool:violation',
  /** An allocation refused by a hard limit ({@link LimitEvent}). */
  limit: 'isopool:limit',
} as const;

const pressureChannel = diagnostics_channel.channel(DIAGNOSTICS_CHANNELS.pressure);
const leakChannel = diagnostics_channel.channel(DIAGNOSTICS_CHANNELS.leak);
const violationChannel = diagnostics_channel.channel(DIAGNOSTICS_CHANNELS.violation);
const limitChannel = diagnostics_channel.channel(DIAGNOSTICS_CHANNELS.limit);

/** Where the core sends events; the ResourceManager implements it over its EventEmitter. */
export interface EventSink {
  /** True if anybody (an EventEmitter listener or a diagnostics subscriber) wants this event. */
  wants(event: 'pressure' | 'leak' | 'violation' | 'limit'): boolean;
  pressure(event: PressureEvent): void;
  leak(event: LeakEvent): void;
  violation(event: ViolationEvent): void;
  limit(event: LimitEvent): void;
}

/** Emits on `emitter` (if it has listeners) and publishes on diagnostics_channel. */
export function createEventSink(emitter: {
  emit(name: string, payload: unknown): boolean;
  listenerCount(name: string): number;
}): EventSink {
  return {
    wants(event) {
      switch (event) {
        case 'pressure':
          return pressureChannel.hasSubscribers || emitter.listenerCount('pressure') > 0;
        case 'leak':
          return leakChannel.hasSubscribers || emitter.listenerCount('leak') > 0;
        case 'violation':
          return violationChannel.hasSubscribers || emitter.listenerCount('violation') > 0;
        case 'limit':
          return limitChannel.hasSubscribers;
      }
    },
    pressure(event) {
      if (pressureChannel.hasSubscribers) pressureChannel.publish(event);
      emitter.emit('pressure', event);
    },
    leak(event) {
      if (leakChannel.hasSubscribers) leakChannel.publish(event);
      emitter.emit('leak', event);
    },
    violation(event) {
      if (violationChannel.hasSubscribers) violationChannel.publish(event);
      emitter.emit('violation', event);
    },
    limit(event) {
      if (limitChannel.hasSubscribers) limitChannel.publish(event);
    },
  };
}
