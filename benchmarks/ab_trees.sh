#!/bin/bash
# A/B of two checkouts of gunrunner on one app, in one run: each round serves the app from
# tree A and tree B in turn (the order alternates), one worker pinned to CPU 0, wrk pinned
# to CPU 1 (1 s warm-up, then 3 s measured). Compare the medians' ratio, not the numbers.
#
#   git worktree add /tmp/base HEAD
#   benchmarks/ab_trees.sh /tmp/base . bench_asgi:app httptools 6 [/64k]
#
# APP is an app in benchmarks/apps (bench_asgi:app, bench_wsgi:app); DRIVER is h11
# (on asyncio) or httptools (on uvloop). Each tree runs `python -m gunrunner` from its own
# directory, so it serves that tree's package.
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,11p' "$0"
  exit 2
fi
A=$(realpath "$1"); B=$(realpath "$2"); APP=$3; DRIVER=$4; ROUNDS=${5:-4}; URL_PATH=${6:-/}
LOOP=asyncio; [ "$DRIVER" = httptools ] && LOOP=uvloop
HERE=$(dirname "$(realpath "$0")")
PY=${PYTHON:-python}

serve_and_load() {  # tree port -> prints req/s
  local tree=$1 port=$2 pid rps
  (cd "$tree" && PYTHONPATH="$HERE/apps" GUNRUNNER_HTTP=$DRIVER GUNRUNNER_LOOP=$LOOP \
    exec taskset -c 0 "$PY" -m gunrunner "$APP" --bind "127.0.0.1:$port" --workers 1 \
    --log-level warning) >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$port$URL_PATH" >/dev/null
  rps=$(taskset -c 1 wrk -t1 -c50 -d3s "http://127.0.0.1:$port$URL_PATH" | awk '/Requests\/sec/{print $2}')
  kill -TERM "$pid"
  wait "$pid" || true
  echo "$rps"
}

for i in $(seq "$ROUNDS"); do
  if [ $((i % 2)) = 1 ]; then
    a=$(serve_and_load "$A" 18081); b=$(serve_and_load "$B" 18082)
  else
    b=$(serve_and_load "$B" 18082); a=$(serve_and_load "$A" 18081)
  fi
  echo "round $i A=$a B=$b"
done
