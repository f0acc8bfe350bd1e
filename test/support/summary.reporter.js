/**
 * Prints one plain closing line after every run, `tests: N passed, N failed, N skipped`, so that
 * tools reading the end of the output see the totals. Written at exit, after Jest's own summary.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    const line = `tests: ${results.numPassedTests} passed, ${failed} failed, ${skipped} skipped\n`;
    process.once("exit", () => process.stderr.write(line));
  }
}

module.exports = SummaryReporter;
