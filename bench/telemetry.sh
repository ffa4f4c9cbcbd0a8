#!/usr/bin/env bash
# Benchmark (not a test): what metrics and logging cost. Two connectors from the same release build
# in front of one simulated tenant: "on" (KANDJI_CONNECTOR_METRICS=on, KANDJI_CONNECTOR_LOG=info,
# KANDJI_CONNECTOR_LOG_FORMAT=json: a JSON line per request, written to a file, and /metrics
# scraped every second) and "off" (KANDJI_CONNECTOR_METRICS=off, KANDJI_CONNECTOR_LOG=warn). wrk
# drives get_device invocations against each in turn, alternating, ROUNDS times; prints every
# round, the median of each and the cost, in throughput and in the connector process's CPU time
# per invocation (user + system, from /proc: far less sensitive than throughput to whatever else
# runs on the machine).
# Usage: [TOGETHER=1 PIN=1] bench/telemetry.sh [seconds per round] [connections] [rounds]
# ON_METRICS, ON_LOG, ON_LOG_FORMAT change what "on" runs with (to tell the costs apart);
# ON_LOG_TO=/dev/null sends its log there instead of a file (what the writes to a file cost).
# TOGETHER=1 drives both at the same time (one wrk thread each) instead of in alternating rounds:
# with PIN=1 they share one core, so both run at the same clock speed next to the same neighbours
# (on a VM whose cores drift in speed, the steadiest figure; README "What it costs").
# PIN=1 keeps the connectors on the last CPU and wrk, the simulated tenant and the scraper on the
# others (taskset), so that what drives them does not take the connectors' time (on a 2-core
# machine the unpinned spread between rounds is larger than the cost measured).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"; CONNS="${2:-8}"; ROUNDS="${3:-5}"
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null; }
# BIN=path/to/kandji-connector measures a given build.
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet
    BIN="${CARGO_TARGET_DIR:-target}/release/kandji-connector"
fi
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
SIM=127.0.0.1:18191; ON=127.0.0.1:18192; OFF=127.0.0.1:18193
TOKEN=00000000-0000-4000-8000-00000000cafe
KEY=bench-key-0123456789abcdef
LAST=$(( $(nproc) - 1 ))
if [[ -n "${PIN:-}" && $LAST -ge 1 ]]; then
    APP_CPUS=(taskset -c "$LAST"); LOAD_CPUS=(taskset -c "0-$(( LAST - 1 ))")
else
    APP_CPUS=(); LOAD_CPUS=()
fi
"${LOAD_CPUS[@]}" $BIN simulate --listen $SIM --devices 1000 >"$WORK/sim.log" 2>&1 &
start() { # name listen metrics log
    local log="$WORK/$1.log"
    [[ $1 == on && -n "${ON_LOG_TO:-}" ]] && log=$ON_LOG_TO
    KANDJI_CONNECTOR_LISTEN=$2 KANDJI_CONNECTOR_API_KEYS=$KEY \
    KANDJI_CONNECTOR_SECRET_KEY=$(head -c32 /dev/urandom | base64) \
    KANDJI_CONNECTOR_DATABASE_URL="sqlite://$WORK/$1.db?mode=rwc" \
    KANDJI_CONNECTOR_RATE_LIMIT_PER_SECOND=1000000 KANDJI_CONNECTOR_RATE_LIMIT_BURST=1000000 \
    KANDJI_CONNECTOR_METRICS=$3 KANDJI_CONNECTOR_LOG=$4 KANDJI_CONNECTOR_LOG_FORMAT=$5 \
    "${APP_CPUS[@]}" $BIN serve >"$log" 2>&1 &
    echo $! >"$WORK/$1.pid"
}
# CPU time (clock ticks, user + system) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$(cat "$WORK/$1.pid")/stat"; }
start on $ON "${ON_METRICS:-on}" "${ON_LOG:-info}" "${ON_LOG_FORMAT:-json}"
start off $OFF off warn text
for _ in $(seq 100); do curl -sf "http://$ON/healthz" >/dev/null && curl -sf "http://$OFF/healthz" >/dev/null && curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices?limit=1" && break; sleep 0.1; done
DEVICE=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://$SIM/api/v1/devices?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["device_id"])')
for name in on off; do
    addr=$([ $name = on ] && echo $ON || echo $OFF)
    conn=$(curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
      -d "{\"name\":\"bench\",\"api_url\":\"http://$SIM\",\"api_token\":\"$TOKEN\",\"requests_per_hour\":4000000000}" \
      "http://$addr/v1/connections" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    cat >"$WORK/$name.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"connection":"$conn","inputs":{"device_id":"$DEVICE"},"options":{"details":"basic"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
done
# A Prometheus-like scraper, every second, of both (so that both answer it: "off" with a 404).
( while sleep 1; do for a in $ON $OFF; do curl -s -o /dev/null -H "Authorization: Bearer $KEY" "http://$a/metrics"; done; done ) &
for name in on off; do
    addr=$([ $name = on ] && echo $ON || echo $OFF)
    "${LOAD_CPUS[@]}" wrk -t2 -c"$CONNS" -d2s -s "$WORK/$name.lua" "http://$addr/v1/cards/get_device/invoke" >/dev/null
done
round() { # name round: drives one connector for DURATION seconds
    local name=$1 r=$2 addr before
    addr=$([ "$name" = on ] && echo $ON || echo $OFF)
    before=$(ticks "$name")
    "${LOAD_CPUS[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/$name.lua" "http://$addr/v1/cards/get_device/invoke" >"$WORK/$name.$r.txt"
    echo $(( $(ticks "$name") - before )) >"$WORK/$name.$r.cpu"
}
WRK_THREADS=2; [[ -n "${TOGETHER:-}" ]] && WRK_THREADS=1
for r in $(seq "$ROUNDS"); do
    if [[ -n "${TOGETHER:-}" ]]; then
        # Which starts first changes from round to round.
        if (( r % 2 )); then
            round off "$r" & a=$!; round on "$r" & b=$!
        else
            round on "$r" & a=$!; round off "$r" & b=$!
        fi
        wait $a $b
    else
        round off "$r"; round on "$r"
    fi
    for name in off on; do
        grep -q "Non-2xx" "$WORK/$name.$r.txt" && { echo "$name answered non-2xx:"; cat "$WORK/$name.$r.txt"; exit 1; }
    done
done
[[ -n "${ON_LOG_TO:-}" ]] || echo "request log lines written by \"on\": $(grep -c '"message":"request"' "$WORK/on.log")"
python3 - "$WORK" "$ROUNDS" "$(getconf CLK_TCK)" <<'PY'
import re, statistics, sys
work, rounds, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    v, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", t).groups()
    n = int(re.search(r"(\d+) requests in", t).group(1))
    cpu_us = int(open(path.replace(".txt", ".cpu")).read()) * 1e6 / tck / n
    return rps, float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit], cpu_us
res = {n: [parse(f"{work}/{n}.{r}.txt") for r in range(1, rounds + 1)] for n in ("off", "on")}
for r in range(rounds):
    o, n = res["off"][r], res["on"][r]
    print(f"round {r+1}: off {o[0]:8.0f} req/s {o[2]:6.1f} us CPU/req   on {n[0]:8.0f} req/s {n[2]:6.1f} us CPU/req   on/off throughput {n[0]/o[0]:.3f}, CPU {n[2]/o[2]:.3f}")
cpu_off = statistics.median(x[2] for x in res["off"]); cpu_on = statistics.median(x[2] for x in res["on"])
print(f"CPU per invocation (median): off {cpu_off:.1f} us, on {cpu_on:.1f} us: metrics + JSON request logs cost {100*(cpu_on/cpu_off-1):+.1f} % CPU")
off = statistics.median(x[0] for x in res["off"]); on = statistics.median(x[0] for x in res["on"])
ratios = [res["on"][r][0] / res["off"][r][0] for r in range(rounds)]
print(f"median: off {off:.0f} req/s (p50 {statistics.median(x[1] for x in res['off']):.3f} ms), on {on:.0f} req/s (p50 {statistics.median(x[1] for x in res['on']):.3f} ms)")
print(f"cost of metrics + JSON request logs: {100*(1-on/off):+.1f} % throughput (median of per-round ratios: {100*(1-statistics.median(ratios)):+.1f} %, spread {100*(1-max(ratios)):+.1f} .. {100*(1-min(ratios)):+.1f} %)")
PY
