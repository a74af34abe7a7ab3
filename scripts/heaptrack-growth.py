#!/usr/bin/env python3
"""Where does a long run's C heap grow?  Reads a heaptrack recording and fits, per call stack,
the growth of the memory it holds at its quietest moments.

    apt-get install heaptrack   # Debian's package
    heaptrack -o /tmp/soak node --expose-gc build/ts/bench/soak.js --cycles --minutes 40 ...
    python3 scripts/heaptrack-growth.py /tmp/soak.zst [--window 60] [--warmup 0.2] [--top 25]

heaptrack records every malloc and free with its stack. This script replays them and, for each
window of --window seconds (choose one longer than a soak cycle, so that every window holds a
cycle boundary, where the soak has drained everything and forced a GC), takes each stack's
*minimum* outstanding bytes over the window: what that stack still held at its lowest point,
without the transient allocations of the work in flight. It then fits a least-squares line
through those minima after the warm-up, per stack and summed by owner:

  isopool      the addon (isopool.node) called malloc/new itself: the project's own tables
  for isopool  Node or V8 allocated inside a call the addon made (external ArrayBuffers'
               backing-store records and global handles, say)
  other        every other stack: V8 (compiler zones, code, heap metadata), Node, libuv, glibc

and prints the fitted growth per hour (± one standard error) with the stacks that grow most.
Sizes are the requested sizes heaptrack saw, not glibc's chunk sizes.

The file format (heaptrack's interpreted output, file version 3) is text, one record per line,
numbers in hex: `s` strings, `i` instruction pointers (module, then function/file/line per
inlined frame), `t` trace nodes (ip, parent), `a` allocation infos (size, trace), `+`/`-` an
allocation / a free of an allocation info, `c` a timestamp in ms.
"""

import argparse
import subprocess
import sys
from collections import defaultdict


OWNERS = ('isopool', 'for isopool', 'other')


def open_recording(path):
    if path.endswith('.zst'):
        proc = subprocess.Popen(['zstd', '-dc', path], stdout=subprocess.PIPE, text=True, bufsize=1 << 20)
        return proc.stdout
    if path.endswith('.gz'):
        import gzip
        return gzip.open(path, 'rt')
    return open(path)


def fit(points):
    """Least-squares slope of (t, y) and its standard error; (0, 0) when it cannot be fitted."""
    n = len(points)
    if n < 3:
        return 0.0, 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((t - mt) ** 2 for t, _ in points)
    if sxx == 0:
        return 0.0, 0.0
    slope = sum((t - mt) * (y - my) for t, y in points) / sxx
    resid = sum((y - my - slope * (t - mt)) ** 2 for t, y in points)
    se = (resid / (n - 2) / sxx) ** 0.5
    return slope, se


def kib(x):
    return f'{x / 1024:.1f} KiB'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('recording')
    ap.add_argument('--window', type=float, default=60.0, help='window length in seconds (default 60)')
    ap.add_argument('--warmup', type=float, default=0.2, help='fraction of the windows left out of the fits (default 0.2)')
    ap.add_argument('--top', type=int, default=25, help='stacks to list (default 25)')
    ap.add_argument('--addon', default='isopool.node', help='module name that marks the project\'s own frames')
    args = ap.parse_args()

    strings = [None]          # 1-based
    ips = [None]              # 1-based: (module, [(function, file, line)])
    traces = [(0, 0)]         # 1-based: (ip, parent)
    infos = []                # 0-based: (size, trace)
    cur = defaultdict(int)    # allocation info -> outstanding count
    changed = set()           # infos changed since the last timestamp
    start_counts = {}         # the counts when the window began
    win_min = {}              # info -> minimum count over the window's timestamps
    windows = []              # (window end in s, {info: minimum count})
    window_ms = args.window * 1000.0
    window_end = window_ms
    last_ms = 0

    def close_window(end_ms):
        floor = dict(start_counts)
        floor.update(win_min)
        windows.append((end_ms / 1000.0, {k: v for k, v in floor.items() if v}))

    for line in open_recording(args.recording):
        tag = line[0]
        if tag == '+':
            info = int(line[2:], 16)
            cur[info] += 1
            changed.add(info)
        elif tag == '-':
            info = int(line[2:], 16)
            cur[info] -= 1
            changed.add(info)
        elif tag == 'c':
            ms = int(line[2:], 16)
            for info in changed:
                value = cur[info]
                if value < win_min.get(info, start_counts.get(info, 0)):
                    win_min[info] = value
            changed.clear()
            if ms >= window_end:
                close_window(ms)
                start_counts = {k: v for k, v in cur.items() if v}
                win_min = {}
                window_end = ms + window_ms
            last_ms = ms
        elif tag == 'a':
            size, trace = line[2:].split()
            infos.append((int(size, 16), int(trace, 16)))
        elif tag == 't':
            ip, parent = line[2:].split()
            traces.append((int(ip, 16), int(parent, 16)))
        elif tag == 'i':
            parts = line[2:].split()
            module = int(parts[1], 16)
            frames = []
            rest = [int(x, 16) for x in parts[2:]]
            if len(rest) == 1:  # a function without file and line
                frames.append((rest[0], 0, 0))
            for k in range(0, len(rest) - 2, 3):  # function, file, line; then inlined frames
                frames.append((rest[k], rest[k + 1], rest[k + 2]))
            ips.append((module, frames))
        elif tag == 's':
            text = line[2:].rstrip('\n')
            strings.append(text.split(' ', 1)[1] if ' ' in text else '')
    if not windows:
        sys.exit(f'no complete {args.window}s window in the recording ({last_ms / 1000:.1f} s)')

    def frames_of(trace):
        out = []
        while trace:
            ip, trace = traces[trace]
            module, fr = ips[ip]
            mod = strings[module] if 0 < module < len(strings) else '?'
            if fr:
                for fn, _file, _line in fr:
                    out.append((mod, strings[fn] if 0 < fn < len(strings) else '??'))
            else:
                out.append((mod, '??'))
        return out

    # Group allocation infos by a readable stack key: the first frames outside the allocator.
    skip = ('malloc', 'calloc', 'realloc', 'operator new', 'posix_memalign', 'aligned_alloc', 'heaptrack', '__libc_')
    group_of = {}
    owner_of = {}
    for info, (_size, trace) in enumerate(infos):
        frames = frames_of(trace)
        useful = [(mod, fn) for mod, fn in frames if not any(s in fn for s in skip) and 'libheaptrack' not in mod]
        if useful and args.addon in useful[0][0]:
            owner_of[info] = 'isopool'
        elif any(args.addon in mod for mod, _ in frames):
            owner_of[info] = 'for isopool'
        else:
            owner_of[info] = 'other'
        group_of[info] = ' < '.join(fn[:90] for _, fn in useful[:4]) or '??'

    first = int(len(windows) * args.warmup)
    fitted = windows[first:]
    groups = defaultdict(list)
    owners = defaultdict(list)
    for t, floor in fitted:
        by_group = defaultdict(int)
        by_owner = defaultdict(int)
        for info, count in floor.items():
            size = infos[info][0] * count
            by_group[group_of[info]] += size
            by_owner[owner_of[info]] += size
        for g in set(by_group) | set(groups):
            groups[g].append((t, by_group.get(g, 0)))
        for o in OWNERS:
            owners[o].append((t, by_owner.get(o, 0)))
        owners['total'].append((t, sum(by_owner.values())))

    print(f'{len(windows)} windows of {args.window:.0f} s over {last_ms / 1000:.0f} s; {len(fitted)} fitted after a warm-up of {first}')
    print('owner        held at first fitted window -> last   growth/hour (fit)')
    for o in (*OWNERS, 'total'):
        pts = owners[o]
        slope, se = fit(pts)
        print(f'{o:11}  {kib(pts[0][1]):>12} -> {kib(pts[-1][1]):>12}   {kib(slope * 3600)}/h ± {kib(se * 3600)}/h')
    rows = []
    for g, pts in groups.items():
        # a group can appear part-way: fill the windows it missed with 0
        by_t = dict(pts)
        full = [(t, by_t.get(t, 0)) for t, _ in fitted]
        slope, se = fit(full)
        rows.append((slope, se, full[0][1], full[-1][1], g))
    rows.sort(key=lambda r: -abs(r[0]))
    print(f'\nstacks by |growth| (top {args.top}); growth/hour ± SE, first -> last fitted window floor')
    for slope, se, a, b, g in rows[:args.top]:
        print(f'{kib(slope * 3600):>12}/h ± {kib(se * 3600):>10}  {kib(a):>11} -> {kib(b):>11}  {g}')


if __name__ == '__main__':
    main()
