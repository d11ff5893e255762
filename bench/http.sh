#!/usr/bin/env bash
# The HTTP benchmark: one axum service without AirlockLayer, with it on the
# routes (`Router::layer`) and with it around the router, zero and one effect
# per request, over loopback. Two parts, both in rounds that alternate the
# configurations in one go, so the machine's load hits them alike:
#
# 1. Throughput: wrk at saturation (CONNECTIONS connections), one
#    configuration at a time; requests per second and the server's CPU time
#    per request.
# 2. Latency: `load` (bench/http/src/bin/load.rs), open loop at a fixed RATE
#    below saturation, the three layer configurations interleaved request by
#    request; p99 from each request's due time.
#
# The medians and the per-round ratios are printed at the end, with `uptime`
# before and after.
#
#   bash bench/http.sh                  # 5 rounds of 5 s, 64 connections
#   ROUNDS=9 DURATION=10 CONNECTIONS=128 bash bench/http.sh
#
# Environment: ROUNDS, DURATION (seconds), CONNECTIONS, THREADS (wrk's),
# WORKERS (the server's tokio worker threads), PORT (uses PORT to PORT+2),
# RATE (the latency part's requests per second, all three together) and
# LOAD_CONNECTIONS (its connections per configuration).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-1}
PORT=${PORT:-39080}
RATE=${RATE:-30000}
LOAD_CONNECTIONS=${LOAD_CONNECTIONS:-16}

if ! command -v wrk >/dev/null; then
    echo "installing wrk (apt-get install -y wrk)" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

SQLX_OFFLINE=true cargo build --release -q -p airlock-bench-http
server=target/release/airlock-bench-http
load=target/release/load
# The server on the first core and wrk on the second (on a machine with
# two or more): neither preempts the other, which is what made p99 swing by
# tens of percent between rounds when they shared both cores.
pin_server=() pin_wrk=()
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
    pin_server=(taskset -c 0) pin_wrk=(taskset -c 1)
fi
WORKERS=$WORKERS "${pin_server[@]}" "$server" "$PORT" >/dev/null &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$((PORT + 2))/zero" >/dev/null 2>&1 && break
    sleep 0.1
done

# The server's user + system CPU time, in clock ticks: CPU per request is
# far less sensitive to other processes on the machine than throughput is.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

# plain: no layer; layer: AirlockLayer on the routes; around: around the router.
port_of() {
    case $1 in
        plain/*) echo "$PORT" ;;
        layer/*) echo $((PORT + 1)) ;;
        around/*) echo $((PORT + 2)) ;;
    esac
}

out=$(mktemp -d)
# Wait (up to two minutes) for an idle machine: the server and wrk take both
# cores, so anything else running skews the rounds it overlaps.
for _ in $(seq 24); do
    awk '{ exit !($1 < 1) }' /proc/loadavg && break
    sleep 5
done
load_before=$(awk '{ print $1 }' /proc/loadavg)
echo "load before: $(uptime)"
if ! awk -v l="$load_before" 'BEGIN { exit !(l < 1) }'; then
    echo "UNDER LOAD: the one-minute load was $load_before at the start; treat the figures below as noise"
fi
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency; server: $WORKERS tokio worker(s); $ROUNDS rounds"
configs="plain/zero layer/zero around/zero plain/one layer/one around/one"
# Warm up every configuration once, unmeasured.
for config in $configs; do
    port=$(port_of "$config")
    "${pin_wrk[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/${config#*/}" >/dev/null
done
for round in $(seq "$ROUNDS"); do
    # Alternate the order each round as well.
    order=$configs
    (( round % 2 == 0 )) && order=$(echo "$configs" | tr ' ' '\n' | tac | tr '\n' ' ')
    for config in $order; do
        port=$(port_of "$config")
        before=$(cpu_ticks)
        "${pin_wrk[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
            "http://127.0.0.1:$port/${config#*/}" >"$out/${config/\//-}.$round"
        echo "server-cpu-ticks: $(( $(cpu_ticks) - before ))" >>"$out/${config/\//-}.$round"
    done
done
echo "load $RATE req/s for ${DURATION}s, $LOAD_CONNECTIONS connections per configuration, interleaved; $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
    for effects in zero one; do
        urls=()
        for config in plain layer around; do
            urls+=("http://127.0.0.1:$(port_of "$config/")/$effects")
        done
        # Which configuration goes first in the rotation alternates too.
        (( round % 2 == 0 )) && urls=("${urls[2]}" "${urls[1]}" "${urls[0]}")
        "${pin_wrk[@]}" "$load" "$RATE" "$DURATION" "$LOAD_CONNECTIONS" "${urls[@]}" >"$out/latency-$effects.$round"
    done
done
echo "load after:  $(uptime)"

python3 - "$out" "$ROUNDS" "$TICK_US" "$PORT" "$RATE" <<'PY'
import re, statistics, sys
out, rounds, tick_us, port, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def ms(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
results = {}
for config in ["plain-zero", "layer-zero", "around-zero", "plain-one", "layer-one", "around-one"]:
    rps, p99, cpu = [], [], []
    for r in range(1, rounds + 1):
        text = open(f"{out}/{config}.{r}").read()
        rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
        requests = int(re.search(r"(\d+) requests in", text).group(1))
        ticks = int(re.search(r"server-cpu-ticks: (\d+)", text).group(1))
        cpu.append(ticks * tick_us / requests)
        p99.append(ms(re.search(r"\s99%\s+(\S+)", text).group(1)))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text)
        if errors:
            print(f"  note: {config} round {r}: {errors.group(0)}")
    results[config] = (statistics.median(rps), statistics.median(p99), rps, statistics.median(cpu), p99)
print(f"{'config':<12}{'req/s (median)':>16}{'p99 ms (median)':>17}{'server CPU us/req':>19}   req/s per round")
for config, (rps, p99, all_rps, cpu, _) in results.items():
    print(f"{config:<12}{rps:>16.0f}{p99:>17.3f}{cpu:>19.2f}   {' '.join(f'{x:.0f}' for x in all_rps)}")
# Each round runs the two halves of a pair back to back: the median of the
# per-round ratios cancels most of the load that drifts between rounds.
for layered, effects in [(l, e) for e in ["zero", "one"] for l in ["layer", "around"]]:
    plain, layer = results[f"plain-{effects}"], results[f"{layered}-{effects}"]
    ratios = sorted(l / p for l, p in zip(layer[2], plain[2]))
    p99_ratios = sorted(l / p for l, p in zip(layer[4], plain[4]))
    print(f"{effects} effect(s): {layered}/plain throughput, median of per-round ratios "
          f"{100 * (statistics.median(ratios) - 1):+.1f}% (range {100 * (ratios[0] - 1):+.1f}% "
          f"to {100 * (ratios[-1] - 1):+.1f}%); medians {100 * (layer[0] / plain[0] - 1):+.1f}%; "
          f"p99, median of per-round ratios {100 * (statistics.median(p99_ratios) - 1):+.1f}%, "
          f"medians {100 * (layer[1] / plain[1] - 1):+.1f}%; "
          f"server CPU per request {100 * (layer[3] / plain[3] - 1):+.1f}%")

# The latency part: each round's file has one line per configuration.
names = {port: "plain", port + 1: "layer", port + 2: "around"}
print(f"\nopen loop at {rate} req/s, the three configurations interleaved request by request; medians")
print(f"{'config':<12}{'p50 us':>8}{'p99 us':>8}{'p999 us':>9}{'service p99 us':>16}   p99 us per round")
for effects in ["zero", "one"]:
    p99 = {name: [] for name in names.values()}
    rows = {name: [] for name in names.values()}
    for r in range(1, rounds + 1):
        for line in open(f"{out}/latency-{effects}.{r}"):
            name = names[int(re.search(r":(\d+)/", line).group(1))]
            fields = dict(re.findall(r"(\w+)=(\d+)", line))
            if int(fields["errors"]):
                print(f"  note: {name}-{effects} round {r}: {fields['errors']} answers not 2xx")
            p99[name].append(int(fields["p99_us"]))
            rows[name].append([int(fields[k]) for k in ["p50_us", "p99_us", "p999_us", "service_p99_us"]])
    for name, values in rows.items():
        medians = [statistics.median(column) for column in zip(*values)]
        print(f"{name + '-' + effects:<12}{medians[0]:>8.0f}{medians[1]:>8.0f}{medians[2]:>9.0f}"
              f"{medians[3]:>16.0f}   {' '.join(str(x) for x in p99[name])}")
    for layered in ["layer", "around"]:
        ratios = sorted(l / p for l, p in zip(p99[layered], p99["plain"]))
        print(f"{effects} effect(s): {layered}/plain p99 at {rate} req/s, "
              f"median of per-round ratios {100 * (statistics.median(ratios) - 1):+.1f}% "
              f"(range {100 * (ratios[0] - 1):+.1f}% to {100 * (ratios[-1] - 1):+.1f}%)")
PY
