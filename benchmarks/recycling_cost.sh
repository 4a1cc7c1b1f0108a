#!/usr/bin/env bash
# The cost of worker recycling under load: 2 workers, wrk on keep-alive connections,
# recycling off and on alternated; prints req/s, wrk's errors and the recycles logged.
# Usage: benchmarks/recycling_cost.sh [ROUNDS] [SECONDS] [MAX_REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; seconds=${2:-8}; max_requests=${3:-10000}
port=18941
on=(--max-requests "$max_requests" --max-requests-jitter $((max_requests / 10)) --min-worker-lifetime 0)
run() {
  local label=$1; shift
  PYTHONPATH=benchmarks/apps python -m gunrunner bench_asgi:app --bind 127.0.0.1:$port \
    --workers 2 "$@" >/tmp/recycling_cost.log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$port/ && break; sleep 0.1; done
  local out
  out=$(wrk -t2 -c50 -d"${seconds}"s http://127.0.0.1:$port/)
  kill -TERM $pid; wait $pid || true
  local rps errors recycles
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  errors=$(awk '/Socket errors|Non-2xx/ {print}' <<<"$out" | tr '\n' ' ')
  recycles=$(grep -c "recycling worker" /tmp/recycling_cost.log || true)
  echo "$label $rps recycles=$recycles ${errors:-errors=0}"
}
for r in $(seq "$rounds"); do
  if (( r % 2 )); then run off; run on "${on[@]}"; else run on "${on[@]}"; run off; fi
done | tee /tmp/recycling_cost.txt
python3 - <<'PY'
import statistics
rows = [line.split() for line in open("/tmp/recycling_cost.txt")]
off = [float(r[1]) for r in rows if r[0] == "off"]
on = [float(r[1]) for r in rows if r[0] == "on"]
print(f"median req/s: off {statistics.median(off):.0f}, on {statistics.median(on):.0f}, "
      f"on/off {statistics.median(on) / statistics.median(off):.3f}")
PY
