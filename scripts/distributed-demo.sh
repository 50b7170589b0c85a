#!/usr/bin/env bash
# The distributed setup on one machine: Redis, two api instances (no handlers) on :3000 and :3001,
# and two worker processes, all sharing one Redis. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT="${REDIS_PORT:-6380}"
API_PORTS=(${API_PORTS:-3000 3001})

source scripts/ensure-packages.sh
ensure_redis
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then bash scripts/install-deps.sh; fi
npm run build

data_dir="$(mktemp -d)"
pids=()
cleanup() {
  trap - INT TERM EXIT
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data_dir"
}
trap cleanup INT TERM EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$data_dir" --appendonly yes --save '' >"$data_dir/redis.log" &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

export JOB_QUEUE_BACKEND=bullmq REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
for port in "${API_PORTS[@]}"; do
  PORT="$port" JOB_QUEUE_WORKER=false node dist/apps/api/main.js > >(sed -u "s/^/[api :$port] /") 2>&1 &
  pids+=($!)
done
for n in 1 2; do
  node dist/apps/worker/main.js > >(sed -u "s/^/[worker $n] /") 2>&1 &
  pids+=($!)
done

echo "Redis on :$REDIS_PORT, apis on :${API_PORTS[*]}, two workers. Try:"
echo "  id=\$(curl -s -X POST localhost:${API_PORTS[0]}/builds -H 'content-type: application/json' -d '{\"steps\":10,\"stepMs\":500}' | sed 's/.*\"jobId\":\"\\([^\"]*\\)\".*/\\1/')"
echo "  curl -N localhost:${API_PORTS[1]}/builds/\$id/events"
wait
