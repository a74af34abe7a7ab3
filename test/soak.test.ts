/**
 * The soak script's cycles mode (bench/soak.ts --cycles), run for a few identical, short cycles in
 * a child process: the run's own invariants hold (exit 0: nothing live and nothing parked after
 * every drain and its collections, deferred-reuse frees released once collected, counters agree,
 * every cycle made the same calls as the first), and the report gets the fitted rows in its
 * own section without touching the random mode's section of the same --minutes value. Nothing here
 * is timed: the cycles are bounded by --cycle-rounds and --cycle-count.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nodeCommand } from './helpers';

const SOAK = path.join(__dirname, '..', 'bench', 'soak.js');

function soak(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const child = spawnSync(...nodeCommand(['--expose-gc', SOAK, ...args]), { encoding: 'utf8', timeout: 60000 });
  if (child.error !== undefined) throw child.error;
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}

describe('soak script, cycles mode', function () {
  this.timeout(90000);
  let dir: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isopool-soak-'));
  });

  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs identical cycles, checks the drains and writes its own report section', () => {
    const report = path.join(dir, 'SOAK.md');
    // An existing report: a random-mode section of the same --minutes value (kept) and an older
    // cycles section (replaced).
    fs.writeFileSync(
      report,
      [
        '# old header',
        '',
        '# Runs',
        '',
        '<!-- soak-run minutes=5 -->',
        'RANDOM-MODE SECTION KEPT',
        '<!-- /soak-run -->',
        '',
        '<!-- soak-run minutes=5 mode=cycles -->',
        'OLD CYCLES SECTION',
        '<!-- /soak-run -->',
        '',
      ].join('\n'),
    );
    const run = soak(['--minutes', '5', '--cycles', '--cycle-rounds', '60', '--cycle-count', '5', '--seed', '12345', '--report', report]);
    const context = `\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
    expect(run.status, `exit code${context}`).to.equal(0);
    expect(run.stdout, 'the invariants').to.include('PASS invariants: 0 handles and 0 bytesInUse after every drain');
    expect(run.stdout, 'the invariants').to.not.include('FAIL');
    expect(run.stdout, '5 cycles, 2 of warm-up').to.match(/5 cycles of 60 rounds .*warm-up 2 cycles excluded, 3 boundaries fitted/);
    expect(run.stdout, 'the workload has unsafeImmediateReuse channels besides the default (deferred) ones').to.match(
      /over 50 ids \(\d+ view-mode, [1-9]\d* unsafeImmediateReuse\), the same ids every cycle/,
    );
    expect(run.stdout, 'no handle or charged byte at any boundary').to.match(/\| handles \/ bytesInUse at every boundary +\| 0 \/ 0 +\|/);

    const text = fs.readFileSync(report, 'utf8');
    expect(text, 'the random-mode section is kept').to.include('RANDOM-MODE SECTION KEPT');
    expect(text, 'the older cycles section is replaced').to.not.include('OLD CYCLES SECTION');
    expect(text.match(/^<!-- soak-run minutes=5 mode=cycles -->$/gm), 'one cycles section').to.have.length(1);
    expect(text.indexOf('<!-- soak-run minutes=5 -->'), 'random mode first').to.be.lessThan(text.indexOf('<!-- soak-run minutes=5 mode=cycles -->'));
    expect(text, 'the header explains the cycles method').to.include('## Reading the growth figures');
    for (const row of ['native reserved growth (fit)', 'RSS growth (fit)', 'JS heapUsed growth (fit)', 'external memory growth (fit)']) {
      expect(text, row).to.match(new RegExp(`\\| ${row.replace(/[()]/g, '\\$&')} +\\| -?[0-9.]+ (B|KiB|MiB|GiB)/h ± [0-9.]+ (B|KiB|MiB|GiB)/h`));
    }
    expect(text, 'reserved min and max at the boundaries').to.match(/\| native reserved at fitted boundaries +\| min [0-9,]+ B, max [0-9,]+ B/);
    expect(text, 'a verdict per figure').to.match(/^(PASS|INFO) RSS growth: /m);
    expect(text, 'a verdict per figure').to.match(/^(PASS|INFO) JS heapUsed growth: /m);
    expect(text, 'a verdict per figure').to.match(/^(PASS|INFO) native reserved \(totals.reservedBytes\): /m);
  });

  it('--malloc-trim trims at every boundary and writes a section of its own after the cycles one', () => {
    const report = path.join(dir, 'SOAK-trim.md');
    fs.writeFileSync(report, ['# old header', '', '# Runs', '', '<!-- soak-run minutes=5 mode=cycles -->', 'CYCLES SECTION KEPT', '<!-- /soak-run -->', ''].join('\n'));
    const run = soak(['--minutes', '5', '--cycles', '--cycle-rounds', '40', '--cycle-count', '4', '--seed', '7', '--malloc-trim', '--report', report]);
    expect(run.status, `exit code\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`).to.equal(0);
    const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
    expect(run.stdout, 'one trim per boundary on glibc, none elsewhere').to.match(glibc !== undefined ? /\| malloc_trim\(0\) at boundaries +\| 4 of 4 \(pages released at \d\)/ : /\| 0 of 4 /);
    const text = fs.readFileSync(report, 'utf8');
    expect(text, 'the cycles section is kept').to.include('CYCLES SECTION KEPT');
    const trimStart = text.indexOf('<!-- soak-run minutes=5 mode=cycles-trim -->');
    expect(trimStart, 'a cycles-trim section').to.be.greaterThan(text.indexOf('<!-- soak-run minutes=5 mode=cycles -->'));
    expect(text.slice(trimStart), 'its title names the flag').to.include('--cycles --malloc-trim');
  });

  it('refuses the cycle options without --cycles', () => {
    const run = soak(['--minutes', '0.01', '--cycle-rounds', '10']);
    expect(run.status).to.equal(1);
    expect(run.stderr).to.include('need --cycles');
    const trim = soak(['--minutes', '0.01', '--malloc-trim']);
    expect(trim.status).to.equal(1);
    expect(trim.stderr).to.include('need --cycles');
  });
});
