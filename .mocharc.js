'use strict';
// mocha's configuration. mocha re-spawns Node with `node-option`:
// - expose-gc: tests that wait for the garbage collector call global.gc();
// - enable-source-maps: stack traces name the TypeScript lines;
// - on Node 20 only, harmony-rab-gsab-transfer: V8's flag for ArrayBuffer.prototype.transfer
//   (unflagged from Node 21), so the suite exercises the revocation method users get on current
//   Node, 'transfer', there too. test/transfer-revocation.test.ts checks that it got there
//   (ISOPOOL_EXPECT_REVOCATION, unless already set). `--node-option` on the command line adds
//   to this list; a run without the flag needs `--no-config` (.ci/run's Node 20 'detach' run).
const major = Number(process.versions.node.split('.')[0]);
const nodeOption = ['expose-gc', 'enable-source-maps'];
if (major === 20) {
  nodeOption.push('harmony-rab-gsab-transfer');
  process.env.ISOPOOL_EXPECT_REVOCATION ??= 'transfer';
}

// Test files named on the command line run alone (mocha adds a configured `spec` to them).
const named = process.argv.slice(2).some((arg) => arg.endsWith('.test.js'));

module.exports = {
  spec: named ? [] : ['build/ts/test/**/*.test.js'],
  'node-option': nodeOption,
  timeout: 20000,
};
