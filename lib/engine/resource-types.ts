/**
 * The resource types of one manager, by name and by native index ('buffer' and the counted
 * types of `defineResourceType`; a shared manager's other threads may define more).
 * @internal
 * @packageDocumentation
 */
import { UnknownResourceTypeError } from '../errors';
import { TypeOut } from '../native/abi';
import type { NativeManager } from '../native/binding';
import { checkTypeName } from '../validate';
import { BUFFER_TYPE } from './state';
import type { TypeState } from './state';

export class TypeDirectory {
  readonly #native: NativeManager;
  readonly #byName = new Map<string, TypeState>();
  readonly #byIndex: TypeState[] = [];
  /** The last type looked up, without validation or hashing (most calls name one type). */
  #last: TypeState = BUFFER_TYPE;

  constructor(native: NativeManager) {
    this.#native = native;
    this.add(BUFFER_TYPE);
  }

  add(type: TypeState): void {
    this.#byName.set(type.name, type);
    this.#byIndex[type.index] = type;
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The type `resourceType` names (checked): ERR_UNKNOWN_RESOURCE_TYPE if there is none. */
  get(resourceType: unknown): TypeState {
    const last = this.#last;
    if (resourceType === last.name) return last;
    const name = checkTypeName(resourceType);
    const type = this.#byName.get(name) ?? this.#fromNative(name);
    if (type === undefined) throw new UnknownResourceTypeError(name);
    this.#last = type;
    return type;
  }

  /** The type at native index `index`, if known here. */
  at(index: number): TypeState | undefined {
    return this.#byIndex[index];
  }

  /** A type another thread defined on a shared manager (the native manager is the truth). */
  #fromNative(name: string): TypeState | undefined {
    const index = this.#native.findType(name);
    if (index < 0) return undefined;
    const type: TypeState = { name, index, memory: this.#native.out[TypeOut.Kind] === 0 };
    this.add(type);
    return type;
  }
}
