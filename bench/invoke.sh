#!/usr/bin/env bash
# Benchmark (not a test): what one card invocation costs next to a plain reverse proxy.
#
# In one run, against one static upstream (nginx serving one device's JSON, captured once from
# the simulated tenant, as GET /api/v1/devices/{id}; static so that the upstream costs the same
# for every path and the figures show the cost of what sits in front of it):
#   direct     wrk -> upstream                      GET /api/v1/devices/{id}
#   proxy      wrk -> nginx reverse proxy -> upstream (keep-alive to the upstream)
#   connector  wrk -> connector -> upstream         POST /v1/cards/get_device/invoke
# each driven by the same wrk (its own process, THREADS threads, CONNS connections), then one
# connection at a time for the latency each layer adds. Prints the figures and the ratios.
#
# Usage: bench/invoke.sh [seconds] [connections]      (defaults: 10 s, 32 connections)
# Environment: BIN=path/to/kandji-connector to measure a given build (default: this tree's
# release build); METRICS=off runs the connector with KANDJI_CONNECTOR_METRICS=off (bench/telemetry.sh
# compares both); CONNECTOR_ENV="NAME=value ..." extra settings for the connector;
# PROFILE=callgrind runs the connector under valgrind's callgrind instead, drives only the
# connector path (4 connections, [seconds]) and prints instructions per invocation and the
# functions that cost most (instruction counts do not depend on what else the machine runs,
# so they compare builds on a busy machine).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"; CONNS="${2:-32}"; THREADS=2
for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "installing $tool"; apt-get install -y -q wrk nginx-light >/dev/null; }
done
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet
    BIN="${CARGO_TARGET_DIR:-target}/release/kandji-connector"
fi
WORK=$(mktemp -d); chmod 755 "$WORK"
trap 'kill $(jobs -p) 2>/dev/null; [[ -f $WORK/nginx.pid ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; [[ -n "${KEEP:-}" ]] || rm -rf "$WORK"' EXIT
SIM=127.0.0.1:18181; UP=127.0.0.1:18182; PROXY=127.0.0.1:18183; APP=127.0.0.1:18180
TOKEN=00000000-0000-4000-8000-00000000cafe
KEY=bench-key-0123456789abcdef
wait_for() { for _ in $(seq 100); do curl -sf -o /dev/null "$@" && return 0; sleep 0.1; done; echo "no answer from $*"; exit 1; }

# One device as the simulated tenant serves it, then the simulator goes away.
"$BIN" simulate --listen $SIM --devices 10 >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
wait_for -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices?limit=1"
mkdir -p "$WORK/www"
curl -sf -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices?limit=1" >"$WORK/www/devices.json"
DEVICE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["device_id"])' "$WORK/www/devices.json")
curl -sf -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices/$DEVICE" >"$WORK/www/device.json"
kill $SIM_PID; wait $SIM_PID 2>/dev/null || true

# The upstream and the reverse proxy: one nginx, one worker per core, no access log.
cat >"$WORK/nginx.conf" <<NGINX
worker_processes auto;
user root;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream kandji { server $UP; keepalive 64; }
    server {
        listen $UP;
        root $WORK/www;
        default_type application/json;
        location = /api/v1/devices { try_files /devices.json =404; }
        location = /api/v1/devices/$DEVICE { try_files /device.json =404; }
    }
    server {
        listen $PROXY;
        location / {
            proxy_pass http://kandji;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon off;' 2>"$WORK/nginx.log" &
wait_for "http://$UP/api/v1/devices/$DEVICE"
wait_for "http://$PROXY/api/v1/devices/$DEVICE"

# The connector, at its defaults (info logs, on stdout to a file) but with limits out of the way.
env KANDJI_CONNECTOR_LISTEN=$APP KANDJI_CONNECTOR_API_KEYS=$KEY \
    KANDJI_CONNECTOR_SECRET_KEY="$(head -c32 /dev/urandom | base64)" \
    KANDJI_CONNECTOR_DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc" \
    KANDJI_CONNECTOR_RATE_LIMIT_PER_SECOND=1000000 KANDJI_CONNECTOR_RATE_LIMIT_BURST=1000000 \
    KANDJI_CONNECTOR_METRICS="${METRICS:-on}" ${CONNECTOR_ENV:-} ${PROFILE:+valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$WORK/callgrind.out"} "$BIN" serve >"$WORK/app.log" 2>&1 &
APP_PID=$!
wait_for "http://$APP/healthz"
CONN=$(curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d "{\"name\":\"bench\",\"api_url\":\"http://$UP\",\"api_token\":\"$TOKEN\",\"requests_per_hour\":4000000000}" \
  "http://$APP/v1/connections" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
cat >"$WORK/invoke.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"connection":"$CONN","inputs":{"device_id":"$DEVICE"},"options":{"details":"basic"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
ANSWER=$(curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d "{\"connection\":\"$CONN\",\"inputs\":{\"device_id\":\"$DEVICE\"},\"options\":{\"details\":\"basic\"}}" \
  "http://$APP/v1/cards/get_device/invoke")
python3 -c 'import json,sys; a=json.loads(sys.argv[1]); assert a["outputs"]["device"]["device_id"]==sys.argv[2], a' "$ANSWER" "$DEVICE"

if [[ "${PROFILE:-}" == callgrind ]]; then
    set +o pipefail    # the reports below are cut short with head/grep -m1
    connector_once() { wrk --timeout 30s "$@" -s "$WORK/invoke.lua" "http://$APP/v1/cards/get_device/invoke"; }
    connector_once -t1 -c4 -d3s >/dev/null                            # warm up
    callgrind_control -i on "$APP_PID" >/dev/null
    connector_once -t1 -c4 -d"${DURATION}s" >"$WORK/profiled.txt"
    callgrind_control -i off "$APP_PID" >/dev/null
    kill -INT "$APP_PID"; wait "$APP_PID" 2>/dev/null || true
    grep -q "Non-2xx\|Socket errors" "$WORK/profiled.txt" && { cat "$WORK/profiled.txt"; exit 1; }
    N=$(grep -oE '^ *[0-9]+ requests in' "$WORK/profiled.txt" | grep -oE '[0-9]+')
    TOTAL=$(callgrind_annotate "$WORK/callgrind.out" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | grep -oE '^[0-9,]+' | tr -d ,)
    echo "invocations: $N   instructions: $TOTAL   per invocation: $(( TOTAL / N ))"
    OUT="${PROFILE_OUT:-/tmp/kandji-connector-callgrind.out}"
    cp "$WORK/callgrind.out" "$OUT"
    { callgrind_annotate --inclusive=no "$OUT" 2>/dev/null || true; } | sed -n '/file:function/,$p' | sed -n 1,40p | cut -c1-160
    echo "(the whole profile: $OUT; callgrind_annotate --inclusive=yes --tree=caller $OUT)"
    exit 0
fi

direct() { wrk "$@" -H "Authorization: Bearer $TOKEN" "http://$UP/api/v1/devices/$DEVICE"; }
proxy() { wrk "$@" -H "Authorization: Bearer $TOKEN" "http://$PROXY/api/v1/devices/$DEVICE"; }
connector() { wrk "$@" -s "$WORK/invoke.lua" "http://$APP/v1/cards/get_device/invoke"; }
for path in direct proxy connector; do
    $path -t$THREADS -c"$CONNS" -d2s >/dev/null                       # warm up
    $path -t$THREADS -c"$CONNS" -d"${DURATION}s" --latency >"$WORK/$path.txt"
    $path -t1 -c1 -d"$(( DURATION / 2 > 2 ? DURATION / 2 : 2 ))s" --latency >"$WORK/$path-1.txt"
done
# Every request must have succeeded for the figures to mean anything.
for f in "$WORK"/*.txt; do
    if grep -q "Non-2xx\|Socket errors" "$f"; then echo "errors in $(basename "$f"):"; cat "$f"; exit 1; fi
done
python3 - "$WORK" "$THREADS" "$CONNS" <<'PY'
import re, sys
work, threads, conns = sys.argv[1:]
def parse(name):
    t = open(f"{work}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    def lat(p):
        v, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()
        return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    return rps, lat(50), lat(99)
rows = {p: parse(p) for p in ("direct", "proxy", "connector")}
ones = {p: parse(p + "-1") for p in rows}
print(f"wrk -t{threads} -c{conns}; static upstream (nginx, one device's JSON)")
print(f"{'path':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} | one at a time: {'req/s':>7} {'p50 ms':>7}")
for p, (rps, p50, p99) in rows.items():
    o = ones[p]
    print(f"{p:<10} {rps:9.0f} {p50:8.3f} {p99:8.3f} |                {o[0]:7.0f} {o[1]:7.3f}")
c, x, d = rows["connector"], rows["proxy"], rows["direct"]
print(f"connector/proxy throughput: {c[0]/x[0]:.2f}x (goal >= 0.80)")
print(f"proxy/direct throughput:    {x[0]/d[0]:.2f}x")
print(f"added p50, one request at a time: connector {ones['connector'][1]-ones['direct'][1]:+.3f} ms "
      f"(goal < 0.25), proxy {ones['proxy'][1]-ones['direct'][1]:+.3f} ms")
PY
