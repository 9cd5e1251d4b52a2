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
cleanup() { for n in "${made[@]}"; do ip netns del "$n" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
ns() { local n="realip-bench-$id-$1"; ip netns add "$n"; made+=("$n"); echo "$n"; }
# "seconds peak-KiB" of a command.
measure() { /usr/bin/time -f "%e %M" -o "$dir/t" "$@" >/dev/null; cat "$dir/t"; }

printf '%-8s %-34s %9s %10s\n' services step seconds peak-MiB
for n in "${sizes[@]}"; do
  python3 bench/gen_services.py "$dir" "$n" 10
  read -r plan_s plan_k < <(measure "$realip" node plan --objects "$dir/objects.yaml" --node node-1 --family ip)
  "$realip" node plan --objects "$dir/objects.yaml" --node node-1 --family ip > "$dir/plan.nft" 2>/dev/null
  a=$(ns "nft-$n"); read -r load_s load_k < <(measure ip netns exec "$a" nft -f "$dir/plan.nft")
  b=$(ns "legacy-$n"); read -r leg_s leg_k < <(measure ip netns exec "$b" iptables-legacy-restore --noflush "$dir/kube-proxy.rules")
  c=$(ns "ipt-nft-$n"); read -r ipn_s ipn_k < <(measure ip netns exec "$c" iptables-nft-restore --noflush "$dir/kube-proxy.rules")
  mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
  printf '%-8s %-34s %9s %10s\n' "$n" "realip plan (objects -> ruleset)" "$plan_s" "$(mib "$plan_k")"
  printf '%-8s %-34s %9s %10s\n' "$n" "realip ruleset load (nft -f)" "$load_s" "$(mib "$load_k")"
  printf '%-8s %-34s %9s %10s\n' "$n" "realip incremental sync" "n/a" "-"
  printf '%-8s %-34s %9s %10s\n' "$n" "kube-proxy iptables-legacy-restore" "$leg_s" "$(mib "$leg_k")"
  printf '%-8s %-34s %9s %10s\n' "$n" "kube-proxy iptables-nft-restore" "$ipn_s" "$(mib "$ipn_k")"
  awk -v p="$plan_s" -v l="$load_s" -v g="$leg_s" -v f="$ipn_s" -v n="$n" 'BEGIN {
    ours = p + l; if (ours <= 0) ours = 0.01;
    printf "%-8s ratio kube-proxy/realip full sync: legacy %.1fx, nf_tables %.1fx\n", n, g / ours, f / ours }'
  for x in "$a" "$b" "$c"; do ip netns del "$x"; done; made=()
done
