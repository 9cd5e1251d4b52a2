#!/usr/bin/env bash
# Sync cost at 1k and 10k Services x 10 endpoints: realip's plan and its
# ruleset's kernel load, against kube-proxy's iptables-mode ruleset loaded
# with iptables-restore (legacy and nf_tables backends), side by side.
#
# Everything is loaded into scratch network namespaces named realip-bench-*,
# removed on exit. Until realip programs nftables over netlink, its kernel
# load is measured with `nft -f` of the same ruleset; the incremental sync
# figure needs the netlink layer and is reported as not available.
#
# Usage: bench/node-sync.sh [sizes...]   (default: 1000 10000)
# Each load may take at most LIMIT seconds (default 600); a slower one is
# stopped and reported as ">LIMIT".
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
for bin in nft iptables-legacy-restore iptables-nft-restore python3; do
  command -v "$bin" >/dev/null || { echo "bench/node-sync.sh: $bin is missing (apt-get install nftables iptables python3)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "bench/node-sync.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
cargo build --release -q -p realip
realip=$PWD/target/release/realip
dir=$(mktemp -d /tmp/realip-bench-XXXXXX)
id=$$
made=()
cleanup() {
  local x
  for x in "${made[@]}"; do ip netns del "$x" 2>/dev/null || true; done
  made=()
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Namespaces are made in this shell (not a $(...) subshell) so the trap
# knows every one of them.
ns() { NS="realip-bench-$id-$1"; ip netns add "$NS"; made+=("$NS"); }
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
row() { printf '%-8s %-34s %9s %10s\n' "$1" "$2" "$3" "$(mib "$4")"; }

printf '%-8s %-34s %9s %10s\n' services step seconds peak-MiB
for n in "${sizes[@]}"; do
  python3 bench/gen_services.py "$dir" "$n" 10
  read -r plan_s plan_k < <(measure "$realip" node plan --objects "$dir/objects.yaml" --node node-1 --family ip)
  row "$n" "realip plan (objects -> ruleset)" "$plan_s" "$plan_k"
  "$realip" node plan --objects "$dir/objects.yaml" --node node-1 --family ip > "$dir/plan.nft" 2>/dev/null
  ns "nft-$n"; a=$NS; read -r load_s load_k < <(measure ip netns exec "$a" nft -f "$dir/plan.nft")
  row "$n" "realip ruleset load (nft -f)" "$load_s" "$load_k"
  printf '%-8s %-34s %9s %10s\n' "$n" "realip incremental sync" "n/a" "-"
  ns "legacy-$n"; b=$NS; read -r leg_s leg_k < <(measure ip netns exec "$b" iptables-legacy-restore --noflush "$dir/kube-proxy.rules")
  row "$n" "kube-proxy iptables-legacy-restore" "$leg_s" "$leg_k"
  ns "ipt-nft-$n"; c=$NS; read -r ipn_s ipn_k < <(measure ip netns exec "$c" iptables-nft-restore --noflush "$dir/kube-proxy.rules")
  row "$n" "kube-proxy iptables-nft-restore" "$ipn_s" "$ipn_k"
  awk -v p="$plan_s" -v l="$load_s" -v g="$leg_s" -v f="$ipn_s" -v n="$n" 'BEGIN {
    gsub(/>/, "", l); gsub(/>/, "", g); gsub(/>/, "", f);
    ours = p + l; if (ours <= 0) ours = 0.01;
    printf "%-8s ratio kube-proxy/realip full sync: legacy %.2fx, nf_tables %.2fx (\">\" marks a limit hit)\n", n, g / ours, f / ours }'
  for x in "$a" "$b" "$c"; do ip netns del "$x"; done; made=()
done
