#!/usr/bin/env node
// A known leak, to check that scripts/heaptrack-growth.py finds one:
//   heaptrack -o /tmp/leak node scripts/heaptrack-known-leak.js
//   python3 scripts/heaptrack-growth.py /tmp/leak.zst --window 10
// must report ~36 MiB/hour of growth ("other": Node's ArrayBuffer allocator), and nothing for the
// transient buffers. For 2 minutes it keeps 1 KiB of malloc'ed backing store every 100 ms
// (36 MiB/hour) while it allocates and drops 1 MiB every 100 ms.
'use strict';
const kept = [];
let ticks = 0;
const timer = setInterval(() => {
  for (let i = 0; i < 100; i++) Buffer.allocUnsafeSlow(10240)[0] = i; // transient
  kept.push(Buffer.allocUnsafeSlow(1024));
  if (++ticks === 1200) clearInterval(timer);
}, 100);
