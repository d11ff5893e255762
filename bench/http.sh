#!/usr/bin/env bash
# The HTTP benchmark: the same axum service without AirlockLayer (plain), with
# it on the routes (layer: `Router::layer`) and with it around the router
# (around), zero and one effect per request, over loopback.
#
# Each configuration is a server process of its own, all three pinned to the
# first core, the load on the second. Two parts, in rounds:
#
# 1. Saturation: one wrk per configuration, all three at once. The servers
#    share the core, so each round's ratios compare the three under the same
#    moment of the machine: run one after the other, the same
#    configuration's throughput moved by up to 3x from round to round on this
#    project's shared VM, and the ratios by tens of percent. Reported: each
#    server's CPU time per request (schedstat, in ns), which is what
#    saturation throughput is the inverse of, and its requests per second
#    (which also depend on how the kernel shares the core out).
# 2. Latency below saturation: `load` (bench/http/src/bin/load.rs), open loop
#    at RATE requests per second in all, the three configurations interleaved
#    request by request, so a stall of the machine (which decides p99 on a
#    shared VM) lands on all three alike: p99 from each request's due time.
#
# The medians and the medians of the per-round ratios are printed at the
# end, with `uptime` before and after.
#
#   bash bench/http.sh                  # 5 rounds of 5 s
#   ROUNDS=9 DURATION=10 bash bench/http.sh
#
# Environment: ROUNDS, DURATION (seconds per round and part), CONNECTIONS
# (wrk's, per configuration), WORKERS (each server's tokio worker threads),
# PORT (uses PORT to PORT+2), RATE (the latency part's requests per second,
# all three together) and LOAD_CONNECTIONS (its connections per
# configuration).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-1}
PORT=${PORT:-39080}
RATE=${RATE:-30000}
LOAD_CONNECTIONS=${LOAD_CONNECTIONS:-16}
CONFIGS=(plain layer around)

if ! command -v wrk >/dev/null; then
    echo "installing wrk (apt-get install -y wrk)" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

SQLX_OFFLINE=true cargo build --release -q -p airlock-bench-http
server=target/release/airlock-bench-http
load=target/release/load
# The servers on the first core and the load on the second (on a machine
# with two or more): the load never preempts a server.
pin_server=() pin_load=()
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
    pin_server=(taskset -c 0) pin_load=(taskset -c 1)
fi
declare -A pid port
servers=()
for i in "${!CONFIGS[@]}"; do
    config=${CONFIGS[$i]}
    port[$config]=$((PORT + i))
    WORKERS=$WORKERS "${pin_server[@]}" "$server" "${port[$config]}" "$config" >/dev/null &
    pid[$config]=$!
    servers+=($!)
done
trap 'kill "${servers[@]}" 2>/dev/null || true' EXIT
for config in "${CONFIGS[@]}"; do
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:${port[$config]}/zero" >/dev/null 2>&1 && break
        sleep 0.1
    done
done

# A server's CPU time so far, all its threads, in ns.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ ns += $1 } END { printf "%d\n", ns }'; }

out=$(mktemp -d)
# Wait (up to two minutes) for an idle machine: the servers and the load take
# both cores, so anything else running skews the rounds it overlaps.
for _ in $(seq 24); do
    awk '{ exit !($1 < 1) }' /proc/loadavg && break
    sleep 5
done
load_before=$(awk '{ print $1 }' /proc/loadavg)
echo "load before: $(uptime)"
if ! awk -v l="$load_before" 'BEGIN { exit !(l < 1) }'; then
    echo "UNDER LOAD: the one-minute load was $load_before at the start; treat the figures below as noise"
fi

# Runs one wrk per configuration at once against /$1 for $2 seconds; with an
# output prefix $3, saves each one's output and its server's CPU time.
saturate() {
    local effects=$1 seconds=$2 prefix=${3:-} config
    local -A before wrk_pid
    for config in "${CONFIGS[@]}"; do before[$config]=$(cpu_ns "${pid[$config]}"); done
    for config in "${CONFIGS[@]}"; do
        "${pin_load[@]}" wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" \
            "http://127.0.0.1:${port[$config]}/$effects" >"${prefix:-/dev/null}${prefix:+-$config-$effects}" &
        wrk_pid[$config]=$!
    done
    for config in "${CONFIGS[@]}"; do wait "${wrk_pid[$config]}"; done
    if [[ -n $prefix ]]; then
        for config in "${CONFIGS[@]}"; do
            echo "server-cpu-ns: $(( $(cpu_ns "${pid[$config]}") - ${before[$config]} ))" >>"$prefix-$config-$effects"
        done
    fi
}

echo "saturation: 3 x wrk -t1 -c$CONNECTIONS -d${DURATION}s at once; servers: $WORKERS tokio worker(s) each, one core in all; $ROUNDS rounds"
saturate zero 1
saturate one 1
for round in $(seq "$ROUNDS"); do
    for effects in zero one; do
        saturate "$effects" "$DURATION" "$out/sat.$round"
    done
done
echo "latency: load at $RATE req/s for ${DURATION}s, $LOAD_CONNECTIONS connections per configuration, interleaved; $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
    for effects in zero one; do
        urls=()
        for config in "${CONFIGS[@]}"; do urls+=("http://127.0.0.1:${port[$config]}/$effects"); done
        # Which configuration leads the rotation alternates.
        (( round % 2 == 0 )) && urls=("${urls[2]}" "${urls[1]}" "${urls[0]}")
        "${pin_load[@]}" "$load" "$RATE" "$DURATION" "$LOAD_CONNECTIONS" "${urls[@]}" >"$out/latency-$effects.$round"
    done
done
echo "load after:  $(uptime)"

python3 - "$out" "$ROUNDS" "$PORT" "$RATE" "$DURATION" <<'PY'
import re, statistics, sys
out, rounds, port, rate, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
configs = ["plain", "layer", "around"]
median = statistics.median

def ratio_line(what, layered, values, plain):
    ratios = sorted(l / p for l, p in zip(values, plain))
    return (f"  {layered}/plain {what}: {100 * (median(ratios) - 1):+.1f}% "
            f"(rounds {100 * (ratios[0] - 1):+.1f}% to {100 * (ratios[-1] - 1):+.1f}%)")

print("\nsaturation, the three at once; medians over rounds")
print(f"{'config':<14}{'req/s':>9}{'CPU ns/req':>12}   req/s per round")
for effects in ["zero", "one"]:
    rps, cpu, busy = {}, {}, []
    for config in configs:
        rps[config], cpu[config] = [], []
        for r in range(1, rounds + 1):
            text = open(f"{out}/sat.{r}-{config}-{effects}").read()
            requests = int(re.search(r"(\d+) requests in", text).group(1))
            rps[config].append(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
            cpu[config].append(int(re.search(r"server-cpu-ns: (\d+)", text).group(1)) / requests)
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text)
            if errors:
                print(f"  note: {config}-{effects} round {r}: {errors.group(0)}")
    for r in range(rounds):
        busy.append(sum(cpu[c][r] * rps[c][r] for c in configs) / 1e9)
    for config in configs:
        print(f"{config + '-' + effects:<14}{median(rps[config]):>9.0f}{median(cpu[config]):>12.0f}   "
              + " ".join(f"{x:.0f}" for x in rps[config]))
    print(f"  the servers' core was busy {100 * median(busy):.0f}% of the time"
          + ("" if median(busy) > 0.95 else ": wrk, not the servers, set the pace; the throughput ratios are not the servers'"))
    for layered in ["layer", "around"]:
        print(ratio_line("throughput", layered, rps[layered], rps["plain"]))
        print(ratio_line("CPU per request", layered, cpu[layered], cpu["plain"]))

ports = {port + i: c for i, c in enumerate(configs)}
print(f"\nlatency at {rate} req/s in all, open loop, interleaved request by request; medians over rounds")
print(f"{'config':<14}{'p50 us':>8}{'p99 us':>8}{'p999 us':>9}{'service p99 us':>16}   p99 us per round")
for effects in ["zero", "one"]:
    rows = {c: [] for c in configs}
    for r in range(1, rounds + 1):
        for line in open(f"{out}/latency-{effects}.{r}"):
            config = ports[int(re.search(r":(\d+)/", line).group(1))]
            fields = dict(re.findall(r"(\w+)=(\d+)", line))
            if int(fields["errors"]):
                print(f"  note: {config}-{effects} round {r}: {fields['errors']} answers not 2xx")
            rows[config].append([int(fields[k]) for k in ["p50_us", "p99_us", "p999_us", "service_p99_us"]])
    for config, values in rows.items():
        m = [median(column) for column in zip(*values)]
        print(f"{config + '-' + effects:<14}{m[0]:>8.0f}{m[1]:>8.0f}{m[2]:>9.0f}{m[3]:>16.0f}   "
              + " ".join(str(v[1]) for v in values))
    for layered in ["layer", "around"]:
        print(ratio_line("p99", layered, [v[1] for v in rows[layered]], [v[1] for v in rows["plain"]]))
PY
