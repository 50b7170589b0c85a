#!/usr/bin/env bash
# Runs every test from a fresh checkout: installs what is missing (Redis, Chromium and nginx where it can), builds,
# then runs the whole Jest suite and prints a one-line summary.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/ensure-packages.sh
# Where they cannot be installed, the tests that need them fail and say why (they never skip).
ensure_test_packages || true

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  bash scripts/install-deps.sh
fi
npm run build

mkdir -p .test-tmp
status=0
npm test -- --json --outputFile=.test-tmp/jest-results.json "$@" || status=$?
if [ -f .test-tmp/jest-results.json ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(".test-tmp/jest-results.json", "utf8"));
    const failedSuites = r.numFailedTestSuites + (r.numRuntimeErrorTestSuites || 0);
    if (failedSuites) console.log(`${failedSuites} test suite(s) failed to run or failed`);
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests + (r.numRuntimeErrorTestSuites || 0)} failed`);
  '
fi
exit $status
