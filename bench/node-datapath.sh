#!/usr/bin/env bash
# Per-connection cost of the Service data plane as the cluster grows: TCP
# connect latency to one ClusterIP with 10 and with 10k Services installed,
# realip's ruleset (programmed by `realip node --once` over netlink)
# against kube-proxy's iptables-mode ruleset (iptables-legacy-restore).
#
# Each run is a scratch network namespace named realip-bench-*: the
# measured Service's ten endpoint addresses live on its loopback, a
# server listens on them, and a client in the same namespace connects to
# the cluster IP (nat OUTPUT does the DNAT). The measured Service is the
# last one generated: kube-proxy's KUBE-SERVICES chain is a list, walked
# per new connection, while realip dispatches through a verdict map.
#
# Usage: bench/node-datapath.sh [connections per run, default 3000]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-3000}
. bench/lib.sh
need "iptables python3" iptables-legacy-restore python3
bench_setup

# The client: `conns` connects to ADDR:80, each timed; prints median and
# p99 in microseconds. Runs inside the namespace.
cat >"$dir/client.py" <<'PY'
import socket, sys, time
addr, n = sys.argv[1], int(sys.argv[2])
def once():
    s = socket.socket()
    s.settimeout(2)
    t = time.perf_counter_ns()
    s.connect((addr, 80))
    d = time.perf_counter_ns() - t
    s.close()
    return d
for _ in range(200):
    once()
ts = sorted(once() for _ in range(n))
print(f"{ts[len(ts) // 2] / 1000:.1f} {ts[int(len(ts) * 0.99)] / 1000:.1f}")
PY
# The server: accepts and closes, on every address of the namespace.
cat >"$dir/server.py" <<'PY'
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.close()
PY

# One run in namespace $1 (made by the caller, in this shell, so the exit
# trap knows it): endpoint addresses, rules (realip or iptables), server,
# client. Prints "median p99"; runs in a subshell.
run() { # namespace kind services
  local a=$1 kind=$2 n=$3 cip e server
  mapfile -t lines < <(python3 bench/gen_services.py --service "$((n - 1))" 10)
  cip=${lines[0]}
  ip -n "$a" link set lo up
  # A route for the Service range, as a node has one (here: local, so
  # connect() finds a path; nat OUTPUT then rewrites the destination).
  ip -n "$a" route add local 10.96.0.0/12 dev lo
  for e in "${lines[@]:1}"; do ip -n "$a" addr add "$e/32" dev lo; done
  case $kind in
    realip) ip netns exec "$a" "$realip" node --objects "$dir/objects.yaml" --node node-1 --once 2>/dev/null ;;
    iptables) ip netns exec "$a" iptables-legacy-restore --noflush "$dir/kube-proxy.rules" ;;
  esac
  ip netns exec "$a" python3 "$dir/server.py" &
  server=$!
  for _ in $(seq 50); do
    ip netns exec "$a" python3 -c "import socket; socket.create_connection(('${lines[1]}', 8080), 1)" 2>/dev/null && break
    sleep 0.1
  done
  ip netns exec "$a" python3 "$dir/client.py" "$cip" "$conns" || echo "failed failed"
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
}

printf '%-10s %-10s %12s %12s\n' services ruleset "median us" "p99 us"
declare -A med
for n in 10 10000; do
  python3 bench/gen_services.py "$dir" "$n" 10
  for kind in realip iptables; do
    ns "$kind-$n"
    read -r m p < <(run "$NS" "$kind" "$n")
    ip netns del "$NS"; made=()
    med[$kind-$n]=$m
    printf '%-10s %-10s %12s %12s\n' "$n" "$kind" "$m" "$p"
  done
done
awk -v r10="${med[realip-10]}" -v r10k="${med[realip-10000]}" -v i10="${med[iptables-10]}" -v i10k="${med[iptables-10000]}" 'BEGIN {
  printf "growth 10 -> 10k Services (median connect): realip %.2fx, iptables %.2fx\n", r10k / r10, i10k / i10
  printf "at 10k Services, iptables/realip: %.2fx\n", i10k / r10k }'
