#!/usr/bin/env bash
# realip lb (TCP, PROXY v2) against HAProxy (mode tcp, send-proxy-v2), side
# by side in one run, on loopback, each with one worker thread and the same
# backend (realip whoami expecting PROXY v2 from 127.0.0.1).
#
# New connections per second: wrk with `Connection: close`, so every request
# is a new connection through the proxy to the backend. Bulk throughput: one
# 1 GiB download through each proxy, against the same download direct.
#
# Both proxies and the backend share CPU 0; the load generator has CPU 1.
# Usage: bench/lb-l4.sh [seconds per run, default 5] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
. bench/lib.sh
need "wrk haproxy curl util-linux python3" wrk haproxy curl taskset python3
bench_setup

# Backends: one expecting PROXY v2 (behind the proxies), one plain (direct).
bport=$(port); dport=$(port)
RUST_LOG=warn taskset -c 0 "$realip" whoami --listen "127.0.0.1:$bport" --proxy-protocol v2 --trusted 127.0.0.1/32 --threads 1 2>/dev/null &
pids+=($!)
RUST_LOG=warn taskset -c 0 "$realip" whoami --listen "127.0.0.1:$dport" --threads 1 2>/dev/null &
pids+=($!)

rport=$(port)
RUST_LOG=warn taskset -c 0 "$realip" lb --listen "127.0.0.1:$rport" --backend "127.0.0.1:$bport" --client-ip proxy-v2 2>/dev/null &
pids+=($!)

hport=$(port)
cat >"$dir/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  timeout connect 3s
  timeout client 300s
  timeout server 300s
listen l4
  bind 127.0.0.1:$hport
  server b 127.0.0.1:$bport send-proxy-v2
CFG
taskset -c 0 haproxy -f "$dir/haproxy.cfg" -db >/dev/null 2>&1 &
pids+=($!)
for p in "$bport" "$dport" "$rport" "$hport"; do wait_port "$p"; done

cps() { # port -> new connections (requests) per second
  taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H 'Connection: close' "http://127.0.0.1:$1/bench" | awk '/^Requests\/sec:/ {print $2}'
}
bulk() { # port -> MB/s of a 1 GiB download
  taskset -c 1 curl -s -o /dev/null -w '%{speed_download}\n' "http://127.0.0.1:$1/data?size=1&unit=GB" | awk '{ printf "%.0f", $1 / 1e6 }'
}

taskset -c 1 wrk -t1 -c32 -d1s -H 'Connection: close' "http://127.0.0.1:$rport/bench" >/dev/null 2>&1 || true
taskset -c 1 wrk -t1 -c32 -d1s -H 'Connection: close' "http://127.0.0.1:$hport/bench" >/dev/null 2>&1 || true
printf '%-6s %16s %16s %7s\n' round "realip conn/s" "haproxy conn/s" ratio
ratios=()
for round in $(seq "$rounds"); do
  if (( round % 2 )); then r=$(cps "$rport"); h=$(cps "$hport"); else h=$(cps "$hport"); r=$(cps "$rport"); fi
  ratio=$(awk -v r="$r" -v h="$h" 'BEGIN { printf "%.3f", r / h }')
  ratios+=("$ratio")
  printf '%-6s %16s %16s %7s\n' "$round" "$r" "$h" "$ratio"
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'new connections/s, realip/haproxy, median of %s rounds: %s (target >= 1.00)\n' "$rounds" "$(printf '%s\n' "${ratios[@]}" | median)"

direct=$(bulk "$dport"); viar=$(bulk "$rport"); viah=$(bulk "$hport")
printf 'bulk 1 GiB download, MB/s: direct %s, via realip %s, via haproxy %s\n' "$direct" "$viar" "$viah"
awk -v d="$direct" -v r="$viar" -v h="$viah" 'BEGIN { printf "bulk through realip: %.0f%% of direct (target >= 90%%); haproxy %.0f%%\n", 100 * r / d, 100 * h / d }'
