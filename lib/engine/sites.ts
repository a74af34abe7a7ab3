/**
 * Allocation sites of handles watched for leaks (`'paranoid'` leak detection).
 * @internal
 * @packageDocumentation
 */
/** isopool's own frames: the engine, its leak watch and the public wrappers, from source (lib/) or built (dist/). */
const OWN_FRAMES = /[\\/](?:lib|dist)[\\/](?:engine[\\/](?:engine|leaks)|manager|scope)\.[jt]s/;

/** Sites captured in this turn of the event loop and not formatted yet. */
const unformattedSites: AllocationSite[] = [];
/** Past this many, the pending sites are formatted at once (a long synchronous run holds no more traces). */
const UNFORMATTED_SITES_MAX = 1024;

/** Formats the sites of this turn's watched allocations that are still live. */
function formatSites(): void {
  for (let i = 0; i < unformattedSites.length; i++) unformattedSites[i].format();
  unformattedSites.length = 0;
}

/**
 * A watched allocation's site: the caller's stack without isopool's own frames.
 *
 * Capturing a stack costs about a quarter of capturing and formatting it (V8 formats lazily, on
 * the first read of `stack`: bench/OPTIMISATIONS.md), and most handles are freed soon after
 * their allocation. So formatting waits for the first read of {@link AllocationSite.text}, the
 * end of the current turn of the event loop or the 1,024th site captured in that turn,
 * whichever comes first, and the site of a handle freed before then is never formatted.
 *
 * The captured frames hold their receivers, and a receiver may hold the handle's buffer:
 * keeping them past that turn could keep a leak from being collected, so they are not kept.
 */
export class AllocationSite {
  #trace: { stack?: string } | null = {};
  #text = '';

  constructor() {
    Error.captureStackTrace(this.#trace as object, AllocationSite);
    if (unformattedSites.length >= UNFORMATTED_SITES_MAX) formatSites();
    if (unformattedSites.push(this) === 1) setImmediate(formatSites).unref();
  }

  get text(): string {
    this.format();
    return this.#text;
  }

  format(): void {
    const trace = this.#trace;
    if (trace === null) return;
    this.#trace = null;
    const lines = (trace.stack ?? '').split('\n').slice(1);
    const outside = lines.filter((line) => !OWN_FRAMES.test(line));
    this.#text = (outside.length > 0 ? outside : lines).map((l) => l.trim()).join('\n');
  }

  /** The handle was freed: its site is not needed any more. */
  drop(): void {
    this.#trace = null;
  }
}
