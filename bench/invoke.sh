#!/usr/bin/env bash
# Benchmark (not a test): get_device invocations through the connector vs the same
# GET /api/v1/devices/{id} straight to the simulated tenant, each driven by wrk from its own process.
# Prints throughput and p50/p99 for both and their ratio. Usage: bench/invoke.sh [seconds] [connections]
# METRICS=off runs the connector with KANDJI_CONNECTOR_METRICS=off (bench/telemetry.sh compares both).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"; CONNS="${2:-8}"
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null; }
cargo build --release --quiet
BIN=target/release/kandji-connector
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
SIM=127.0.0.1:18181; APP=127.0.0.1:18180
TOKEN=00000000-0000-4000-8000-00000000cafe
KEY=bench-key-0123456789abcdef
$BIN simulate --listen $SIM --devices 1000 >"$WORK/sim.log" 2>&1 &
KANDJI_CONNECTOR_LISTEN=$APP KANDJI_CONNECTOR_API_KEYS=$KEY \
KANDJI_CONNECTOR_SECRET_KEY=$(head -c32 /dev/urandom | base64) \
KANDJI_CONNECTOR_DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc" \
KANDJI_CONNECTOR_RATE_LIMIT_PER_SECOND=1000000 KANDJI_CONNECTOR_RATE_LIMIT_BURST=1000000 \
KANDJI_CONNECTOR_METRICS="${METRICS:-on}" KANDJI_CONNECTOR_LOG=warn $BIN serve >"$WORK/app.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://$APP/healthz" >/dev/null && curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices?limit=1" && break; sleep 0.1; done
CONN=$(curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d "{\"name\":\"bench\",\"api_url\":\"http://$SIM\",\"api_token\":\"$TOKEN\",\"requests_per_hour\":4000000000}" \
  "http://$APP/v1/connections" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
DEVICE=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["device_id"])')
cat >"$WORK/invoke.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"connection":"$CONN","inputs":{"device_id":"$DEVICE"},"options":{"details":"basic"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
# Warm up both paths, then measure.
wrk -t2 -c"$CONNS" -d2s -s "$WORK/invoke.lua" "http://$APP/v1/cards/get_device/invoke" >/dev/null
wrk -t2 -c"$CONNS" -d2s -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices/$DEVICE" >/dev/null
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices/$DEVICE" >"$WORK/direct.txt"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/invoke.lua" "http://$APP/v1/cards/get_device/invoke" >"$WORK/via.txt"
# Every invocation must have succeeded for the figures to mean anything.
grep -q "Non-2xx" "$WORK/via.txt" && { echo "connector answered non-2xx:"; cat "$WORK/via.txt"; exit 1; }
python3 - "$WORK/direct.txt" "$WORK/via.txt" <<'PY'
import re, sys
def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    def lat(p):
        v, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()
        return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    return rps, lat(50), lat(99)
d, v = parse(sys.argv[1]), parse(sys.argv[2])
print(f"direct to simulator : {d[0]:10.0f} req/s   p50 {d[1]:7.3f} ms   p99 {d[2]:7.3f} ms")
print(f"through connector   : {v[0]:10.0f} req/s   p50 {v[1]:7.3f} ms   p99 {v[2]:7.3f} ms")
print(f"connector/direct    : throughput {v[0]/d[0]:.2f}x   added p50 {v[1]-d[1]:+.3f} ms   added p99 {v[2]-d[2]:+.3f} ms")
PY
