#!/usr/bin/env bash
# Installs the npm dependencies from package-lock.json.
# `npm ci` is tried first. Where the registry in use does not serve the optional native binaries of
# other platforms (msgpackr-extract, unrs-resolver bindings), the lock file cannot list them and
# `npm ci` refuses it as out of sync; `npm install` then installs the same locked versions.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! npm ci --no-audit --no-fund >/tmp/npm-ci.$$.log 2>&1; then
  if grep -q "in sync" /tmp/npm-ci.$$.log; then
    npm install --no-audit --no-fund
  else
    cat /tmp/npm-ci.$$.log >&2
    rm -f /tmp/npm-ci.$$.log
    exit 1
  fi
fi
rm -f /tmp/npm-ci.$$.log
