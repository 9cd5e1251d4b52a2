#!/usr/bin/env bash
# Sync cost at 1k and 10k Services x 10 endpoints: realip's full sync (plan
# + one netlink transaction), its one-endpoint incremental sync, and `nft
# -f` of the same ruleset, against kube-proxy's iptables-mode ruleset
# loaded with iptables-restore (legacy and nf_tables backends), side by
# side.
#
# realip's figures come from the agent's own log line (load_ms, plan_ms,
# sync_ms): "full sync" is plan + netlink commit with the objects in
# memory, which is what iptables-restore's time compares with (kube-proxy
# keeps the objects in its informers); reading the YAML is shown apart.
# Everything is loaded into scratch network namespaces named realip-bench-*,
# removed on exit.
#
# Usage: bench/node-sync.sh [sizes...]   (default: 1000 10000)
# Each load may take at most LIMIT seconds (default 600); a slower one is
# stopped and reported as ">LIMIT".
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
. bench/lib.sh
need "nftables iptables python3" nft iptables-legacy-restore iptables-nft-restore python3
[ -x /usr/bin/time ] || { echo "bench/node-sync.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
bench_setup
limit=${LIMIT:-600}
# "seconds peak-KiB" of a command, or ">LIMIT -" when it ran out of time.
measure() {
  if /usr/bin/time -f "%e %M" -o "$dir/t" timeout "$limit" "$@" >/dev/null 2>"$dir/err"; then
    cat "$dir/t"
  else
    echo ">$limit 0"
  fi
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
row() { printf '%-8s %-44s %9s %10s\n' "$1" "$2" "$3" "$(mib "$4")"; }

field() { grep -o "$1=[0-9.]*" <<<"$2" | tail -1 | cut -d= -f2; }
# The agent in namespace $1 on objects $2 until its log ($3) shows $4 syncs.
wait_syncs() {
  local i
  for i in $(seq 600); do
    [ "$(grep -c ' synced' "$3" 2>/dev/null || true)" -ge "$4" ] && return 0
    sleep 0.1
  done
  echo "bench/node-sync.sh: the agent did not sync" >&2; cat "$3" >&2; return 1
}

printf '%-8s %-44s %9s %10s\n' services step seconds peak-MiB
for n in "${sizes[@]}"; do
  python3 bench/gen_services.py "$dir" "$n" 10
  # Full sync, one process: read, plan, commit.
  ns "full-$n"; a=$NS
  read -r run_s run_k < <(RUST_LOG=info measure ip netns exec "$a" "$realip" node --objects "$dir/objects.yaml" --node node-1 --once)
  log=$(cat "$dir/err")
  load_ms=$(field load_ms "$log"); plan_ms=$(field plan_ms "$log"); sync_ms=$(field sync_ms "$log")
  full_s=$(awk -v p="$plan_ms" -v s="$sync_ms" 'BEGIN { printf "%.3f", (p + s) / 1000 }')
  row "$n" "realip full sync (plan + netlink commit)" "$full_s" "$run_k"
  row "$n" "  of which netlink commit ($(field messages "$log") messages)" "$(awk -v s="$sync_ms" 'BEGIN { printf "%.3f", s / 1000 }')" 0
  row "$n" "  reading the objects (YAML) before it" "$(awk -v s="$load_ms" 'BEGIN { printf "%.3f", s / 1000 }')" 0
  # Incremental: the agent running, one endpoint removed from the objects.
  cp "$dir/objects.yaml" "$dir/live.yaml"
  RUST_LOG=info ip netns exec "$a" "$realip" node --objects "$dir/live.yaml" --node node-1 --poll 20ms \
    --healthz 127.0.0.1:10256 --health-address 127.0.0.1 2>"$dir/agent.log" &
  agent=$!
  wait_syncs "$a" "$dir/live.yaml" "$dir/agent.log" 1
  python3 - "$dir/live.yaml" <<'PY'
import sys
p = sys.argv[1]
text = open(p).read()
line = "- {addresses: [10.100.0.5], nodeName: node-1}\n"
assert line in text
open(p + ".new", "w").write(text.replace(line, "", 1))
PY
  mv "$dir/live.yaml.new" "$dir/live.yaml"
  wait_syncs "$a" "$dir/live.yaml" "$dir/agent.log" 2
  kill -TERM "$agent"; wait "$agent" 2>/dev/null || true
  inc=$(grep ' synced' "$dir/agent.log" | tail -1)
  row "$n" "realip incremental sync, 1 endpoint ($(field messages "$inc") msgs)" "$(awk -v s="$(field sync_ms "$inc")" 'BEGIN { printf "%.4f", s / 1000 }')" 0
  row "$n" "  plus re-reading and re-planning the objects" "$(awk -v l="$(field load_ms "$inc")" -v p="$(field plan_ms "$inc")" 'BEGIN { printf "%.3f", (l + p) / 1000 }')" 0
  # The same ruleset through nft's own parser, for reference.
  "$realip" node plan --objects "$dir/objects.yaml" --node node-1 --family ip > "$dir/plan.nft" 2>/dev/null
  ns "nft-$n"; d=$NS; read -r nft_s nft_k < <(measure ip netns exec "$d" nft -f "$dir/plan.nft")
  row "$n" "the same ruleset via nft -f" "$nft_s" "$nft_k"
  ns "legacy-$n"; b=$NS; read -r leg_s leg_k < <(measure ip netns exec "$b" iptables-legacy-restore --noflush "$dir/kube-proxy.rules")
  row "$n" "kube-proxy iptables-legacy-restore" "$leg_s" "$leg_k"
  ns "ipt-nft-$n"; c=$NS; read -r ipn_s ipn_k < <(measure ip netns exec "$c" iptables-nft-restore --noflush "$dir/kube-proxy.rules")
  row "$n" "kube-proxy iptables-nft-restore" "$ipn_s" "$ipn_k"
  awk -v o="$full_s" -v g="$leg_s" -v f="$ipn_s" -v n="$n" 'BEGIN {
    gsub(/>/, "", g); gsub(/>/, "", f); if (o <= 0) o = 0.001;
    printf "%-8s ratio kube-proxy/realip full sync: legacy %.2fx, nf_tables %.2fx (\">\" marks a limit hit)\n", n, g / o, f / o }'
  for x in "$a" "$b" "$c" "$d"; do ip netns del "$x"; done; made=()
done
