#!/usr/bin/env bash
# Benchmark (not a test): device-trust lookups against a simulated tenant of 100,000 devices run in
# its own process. Prints the full sync (time, Kandji calls), the index's memory, the time a
# restarted server takes to answer from the stored inventory, and lookups/s with p50/p99 through
# GET /v1/connections/{id}/device-trust under wrk (its own process), next to baselines measured in
# the same run: the same lookups with the sync off (one Kandji call per lookup), and GET /healthz
# (no auth, no work: what HTTP alone costs on this machine at this moment).
# Usage: bench/trust.sh [devices] [seconds] [connections]
# BENCH_TARGET_DIR (default: target) is where the release binary is built.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES="${1:-100000}"; DURATION="${2:-10}"; CONNS="${3:-32}"
TARGET_DIR="${BENCH_TARGET_DIR:-target}"
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null; }
# BIN=path/to/kandji-connector measures a given build (e.g. two builds back to back).
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet --target-dir "$TARGET_DIR"
    BIN="$TARGET_DIR/release/kandji-connector"
fi
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
SIM=127.0.0.1:18281; APP=127.0.0.1:18280
TOKEN=00000000-0000-4000-8000-00000000cafe
KEY=bench-key-0123456789abcdef
SECRET=$(head -c32 /dev/urandom | base64)
# The simulator does not limit requests; give the connection a budget that never throttles so
# the figures are the connector's own cost, not a quota's.
BUDGET=4000000000

$BIN simulate --listen $SIM --devices "$DEVICES" >"$WORK/sim.log" 2>&1 &
serve() {
  KANDJI_CONNECTOR_LISTEN=$APP KANDJI_CONNECTOR_API_KEYS=$KEY KANDJI_CONNECTOR_SECRET_KEY=$SECRET \
  KANDJI_CONNECTOR_DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc" \
  KANDJI_CONNECTOR_RATE_LIMIT_PER_SECOND=1000000 KANDJI_CONNECTOR_RATE_LIMIT_BURST=1000000 \
  KANDJI_CONNECTOR_LOG=warn $BIN serve >>"$WORK/app.log" 2>&1 &
  APP_PID=$!
}
serve
for _ in $(seq 300); do curl -sf "http://$APP/healthz" >/dev/null && curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices?limit=1" && break; sleep 0.1; done
api() { curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' "$@"; }
json() { python3 -c "import json,sys; v=json.load(sys.stdin); print($1)"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$APP_PID/status"; }
connection() {
  api -d "{\"name\":\"$1\",\"api_url\":\"http://$SIM\",\"api_token\":\"$TOKEN\",\"requests_per_hour\":$BUDGET}" \
    "http://$APP/v1/connections" | json 'v["id"]'
}
CONN=$(connection synced); LIVE=$(connection live)

# Serial numbers to look up: 3,000 spread over the whole tenant, in lower case (matching ignores case).
for off in $(seq 0 $((DEVICES / 10)) $((DEVICES - 1))); do
  curl -sf -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices?limit=300&offset=$off"
done | python3 -c '
import json, sys
dec = json.JSONDecoder(); text = sys.stdin.read(); i = 0
while i < len(text):
    page, i = dec.raw_decode(text, i)
    while i < len(text) and text[i].isspace(): i += 1
    for d in page: print(d["serial_number"].lower())' >"$WORK/serials.txt"

# Full sync.
RSS_BEFORE=$(rss_kib)
api -X PATCH -d '{"inventory_sync":true}' "http://$APP/v1/connections/$CONN" >/dev/null
until api "http://$APP/v1/connections/$CONN" | json 'v["inventory"]["last_sync"] is not None' | grep -q True; do sleep 0.05; done
STATUS=$(api "http://$APP/v1/connections/$CONN")
RSS_AFTER=$(rss_kib)

# Restart: how long until the stored inventory answers (the first sync has not finished by then).
SERIAL=$(head -1 "$WORK/serials.txt")
kill "$APP_PID"; wait "$APP_PID" 2>/dev/null || true
T0=$(date +%s%N); serve
until curl -sf -H "Authorization: Bearer $KEY" "http://$APP/v1/connections/$CONN/device-trust?serial_number=$SERIAL" >"$WORK/first.json" 2>/dev/null; do sleep 0.01; done
RESTART_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
FIRST_SOURCE=$(json 'v["source"]' <"$WORK/first.json")
until api "http://$APP/v1/connections/$CONN" | json 'v["inventory"]["state"]' | grep -q idle; do sleep 0.1; done

cat >"$WORK/lookup.lua" <<LUA
local serials = {}
for line in io.lines("$WORK/serials.txt") do serials[#serials + 1] = line end
wrk.headers["Authorization"] = "Bearer $KEY"
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/connections/" .. CONNECTION .. "/device-trust?serial_number=" .. serials[(n * 7919) % #serials + 1])
end
LUA
lookups() { # connection seconds output
  sed "s/CONNECTION/\"$1\"/" "$WORK/lookup.lua" >"$WORK/lookup-$1.lua"
  wrk -t2 -c"$CONNS" -d"$2s" --latency -s "$WORK/lookup-$1.lua" "http://$APP" >"$3"
  if grep -q "Non-2xx" "$3"; then echo "the connector answered non-2xx:"; cat "$3"; exit 1; fi
}
used() { api "http://$APP/v1/connections/$1" | json 'v["budget"]["used_last_hour"]'; }

lookups "$CONN" 2 /dev/null  # warm-up
USED_BEFORE=$(used "$CONN")
lookups "$CONN" "$DURATION" "$WORK/inventory.txt"
USED_AFTER=$(used "$CONN")
# Baseline: the same lookups with the sync off, each one GET /devices?serial_number= to Kandji.
LIVE_BEFORE=$(used "$LIVE")
lookups "$LIVE" 5 "$WORK/live.txt"
LIVE_AFTER=$(used "$LIVE")
wrk -t2 -c"$CONNS" -d5s --latency "http://$APP/healthz" >"$WORK/healthz.txt"

python3 - "$WORK/inventory.txt" "$WORK/live.txt" "$WORK/healthz.txt" <<PY
import json, re, sys
status = json.loads('''$STATUS''')
inv, sync = status["inventory"], status["inventory"]["last_sync"]
def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    total = int(re.search(r"(\d+) requests in", t).group(1))
    def lat(p):
        v, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()
        return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    return rps, lat(50), lat(99), total
i, l, h = parse(sys.argv[1]), parse(sys.argv[2]), parse(sys.argv[3])
calls = $USED_AFTER - $USED_BEFORE
live_calls = $LIVE_AFTER - $LIVE_BEFORE
print(f"tenant                : {sync['devices']:,} devices (simulator in its own process)")
print(f"full sync             : {sync['duration_ms'] / 1000:.2f} s, {sync['kandji_calls']} Kandji calls")
print(f"index memory          : {inv['index_bytes'] / 2**20:.1f} MiB (estimate from allocations); "
      f"server RSS {$RSS_BEFORE / 1024:.0f} -> {$RSS_AFTER / 1024:.0f} MiB (+{($RSS_AFTER - $RSS_BEFORE) / 1024:.0f} MiB)")
print(f"restart               : first answer after {$RESTART_MS} ms (source: $FIRST_SOURCE)")
print(f"lookups, inventory    : {i[0]:10.0f} /s   p50 {i[1]:6.3f} ms   p99 {i[2]:6.3f} ms   "
      f"{i[3]:,} lookups, {calls} Kandji calls")
print(f"lookups, live (sync off): {l[0]:8.0f} /s   p50 {l[1]:6.3f} ms   p99 {l[2]:6.3f} ms   "
      f"{l[3]:,} lookups, {live_calls} Kandji calls")
print(f"GET /healthz (floor)  : {h[0]:10.0f} /s   p50 {h[1]:6.3f} ms   p99 {h[2]:6.3f} ms")
print(f"inventory/live        : throughput {i[0] / l[0]:.0f}x; inventory/healthz: {i[0] / h[0]:.2f}x")
PY
