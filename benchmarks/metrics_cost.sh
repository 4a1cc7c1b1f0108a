#!/usr/bin/env bash
# The cost of metrics (metrics_bind) on hello-world throughput: one worker under the
# arbiter with and without metrics, pinned to CPU 0, wrk on CPU 1, rounds alternated.
# Usage: benchmarks/metrics_cost.sh [ROUNDS] [SECONDS] [APP]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; seconds=${2:-4}; app=${3:-bench_asgi:app}
port=18931
# max_requests far away: the same arbiter + one worker as with metrics, nothing recycles.
off=(--workers 1 --max-requests 1000000000)
on=(--workers 1 --max-requests 1000000000 --metrics-bind 127.0.0.1:0)
run() {
  local label=$1; shift
  PYTHONPATH=benchmarks/apps taskset -c 0 python -m gunrunner "$app" --bind 127.0.0.1:$port "$@" \
    >/tmp/metrics_cost.log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$port/ && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c50 -d1s http://127.0.0.1:$port/ >/dev/null
  local rps
  rps=$(taskset -c 1 wrk -t1 -c50 -d"${seconds}"s http://127.0.0.1:$port/ | awk '/Requests\/sec/ {print $2}')
  kill -TERM $pid; wait $pid || true
  echo "$label $rps"
}
for r in $(seq "$rounds"); do
  if (( r % 2 )); then run off "${off[@]}"; run on "${on[@]}"; else run on "${on[@]}"; run off "${off[@]}"; fi
done | tee /tmp/metrics_cost.txt
python3 - <<'PY'
import statistics
rows = [line.split() for line in open("/tmp/metrics_cost.txt")]
off = [float(v) for k, v in rows if k == "off"]
on = [float(v) for k, v in rows if k == "on"]
print(f"median req/s: off {statistics.median(off):.0f}, on {statistics.median(on):.0f}, "
      f"on/off {statistics.median(on) / statistics.median(off):.3f}")
PY
