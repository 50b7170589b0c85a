#!/usr/bin/env bash
# npm run bench: installs what is missing (npm packages, redis-server where it can), builds the
# apps and the benchmark, then runs every scenario once against its own redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/ensure-packages.sh
ensure_redis

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  bash scripts/install-deps.sh
fi
npm run build
npx tsc -b bench
node dist/bench/run.js
