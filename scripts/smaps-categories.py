#!/usr/bin/env python3
"""Resident memory of a running process by kind of mapping, over time (a soak diagnostic).

  python3 scripts/smaps-categories.py sample OUT.jsonl PID [PID...]   # every 15 s until the PIDs exit
  python3 scripts/smaps-categories.py report OUT.jsonl PID FROM_MIN WINDOW_MIN
  python3 scripts/smaps-categories.py mappings OUT.jsonl PID FROM_MIN WINDOW_MIN [TOP]

`sample` appends one JSON line per PID and read of /proc/PID/smaps. `mappings` lists the single
mappings (by start address) whose median resident KiB changed most between the two windows, with
their size, permissions and category: which mapping grows, not only which kind. `report` compares the median
resident KiB of each category over minutes [FROM, FROM + WINDOW) with the last WINDOW minutes.
Categories: file-backed mappings by file name, [heap] (glibc's main arena, brk), [stack] and the
other named kernel mappings, anonymous mappings that start on a 64 MiB boundary (glibc's thread
arenas reserve 64 MiB-aligned heaps; V8 may map such a region too), and all other anonymous
mappings (isopool's slabs, the V8 heap, glibc's mmapped chunks, thread stacks).
"""
import collections
import json
import statistics
import sys
import time


def read_smaps(pid):
    maps, cur = [], None
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            parts = line.split()
            if not parts[0].endswith(':') and '-' in parts[0]:
                start, end = (int(x, 16) for x in parts[0].split('-'))
                cur = [start, end, parts[1], parts[5] if len(parts) > 5 else '', 0]
                maps.append(cur)
            elif parts[0] == 'Rss:':
                cur[4] = int(parts[1])
    return maps


def category(m):
    start, name = m[0], m[3]
    if name.startswith('/'):
        return 'file ' + name.rsplit('/', 1)[-1]
    if name:
        return name
    return 'anonymous, 64 MiB-aligned' if start % (64 << 20) == 0 else 'anonymous, other'


def sample(out, pids):
    with open(out, 'a') as o:
        while pids:
            for pid in list(pids):
                try:
                    maps = read_smaps(pid)
                except OSError:
                    pids.remove(pid)
                    continue
                o.write(json.dumps({'t': time.time(), 'pid': int(pid), 'maps': maps}) + '\n')
                o.flush()
            time.sleep(15)


def windows(path, pid, start_min, window_min):
    """The samples of `pid`: all, those of minutes [FROM, FROM + WINDOW), and the last WINDOW minutes."""
    rows = [r for r in map(json.loads, open(path)) if r['pid'] == pid]
    if not rows:
        sys.exit(f'no samples of pid {pid} in {path}')
    t0, t_end = rows[0]['t'], rows[-1]['t']
    first = [r for r in rows if start_min * 60 <= r['t'] - t0 < (start_min + window_min) * 60]
    last = [r for r in rows if r['t'] >= t_end - window_min * 60]
    if not first or not last:
        sys.exit('a window holds no samples: choose FROM_MIN and WINDOW_MIN inside the run')
    return rows, first, last


def report(path, pid, start_min, window_min):
    rows, first, last = windows(path, pid, start_min, window_min)
    t0, t_end = rows[0]['t'], rows[-1]['t']

    def medians(sel):
        counts = []
        for r in sel:
            sums = collections.Counter()
            for m in r['maps']:
                sums[category(m)] += m[4]
                sums['total'] += m[4]
            counts.append(sums)
        keys = set().union(*counts)
        return {k: statistics.median(c.get(k, 0) for c in counts) for k in keys}

    a, b = medians(first), medians(last)
    print(f'pid {pid}: {len(rows)} samples over {(t_end - t0) / 60:.1f} min; '
          f'medians of {len(first)} samples from minute {start_min:g} and of the last {len(last)}')
    print(f'{"first KiB":>12} {"last KiB":>12} {"change":>10}  category')
    for k in sorted(set(a) | set(b), key=lambda k: -abs(b.get(k, 0) - a.get(k, 0))):
        print(f'{a.get(k, 0):12.0f} {b.get(k, 0):12.0f} {b.get(k, 0) - a.get(k, 0):+10.0f}  {k}')


def mappings(path, pid, start_min, window_min, top):
    _, first, last = windows(path, pid, start_min, window_min)

    def medians(sel):
        per = collections.defaultdict(list)
        info = {}
        for r in sel:
            for m in r['maps']:
                per[m[0]].append(m[4])
                info[m[0]] = m
        # A mapping absent from a sample counts 0 there.
        return {k: statistics.median(v + [0] * (len(sel) - len(v))) for k, v in per.items()}, info

    (a, ia), (b, ib) = medians(first), medians(last)
    info = {**ia, **ib}
    changes = sorted(set(a) | set(b), key=lambda k: -abs(b.get(k, 0) - a.get(k, 0)))
    print(f'pid {pid}: the {top} mappings whose resident KiB changed most, minute {start_min:g} vs the last {window_min:g} min')
    print(f'{"first KiB":>10} {"last KiB":>10} {"change":>9} {"size KiB":>10}  start         perms category')
    for k in changes[:top]:
        m = info[k]
        print(f'{a.get(k, 0):10.0f} {b.get(k, 0):10.0f} {b.get(k, 0) - a.get(k, 0):+9.0f} {(m[1] - m[0]) // 1024:10d}  '
              f'{m[0]:012x}  {m[2]:5} {category(m)}')
    gone = sum(1 for k in a if k not in b)
    new = sum(1 for k in b if k not in a)
    print(f'{len(a)} mappings in the first window, {len(b)} in the last ({new} new, {gone} gone)')


if __name__ == '__main__':
    if len(sys.argv) >= 4 and sys.argv[1] == 'sample':
        sample(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 6 and sys.argv[1] == 'report':
        report(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    elif len(sys.argv) in (6, 7) and sys.argv[1] == 'mappings':
        mappings(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]),
                 int(sys.argv[6]) if len(sys.argv) == 7 else 15)
    else:
        sys.exit(__doc__)
