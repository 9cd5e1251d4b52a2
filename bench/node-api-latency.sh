#!/usr/bin/env bash
# Event-to-kernel latency of `realip node` watching a real kube-apiserver
# (issue #12 point 4): N Services x 10 endpoints are created through the
# apiserver with kubectl, the agent syncs them, then R times one endpoint
# address of a random Service's EndpointSlice is replaced with a fresh one
# (a JSON patch sent with curl) and we time from just before the write to
# the agent's next "synced" log event. A sync is one netlink transaction
# and the event is logged after the commit, so its timestamp is when the
# kernel has the change; the first rounds are cross-checked with
# `nft list ruleset`.
#
# etcd, kube-apiserver and the agent all run in one scratch network
# namespace realip-bench-PID-api, on its 127.0.0.1; the agent programs that
# namespace's nftables. Everything is removed on exit.
#
# Usage: bench/node-api-latency.sh [sizes...]   (default: 1000 10000)
#   REALIP_K8S_BIN  etcd, kube-apiserver, kubectl (default target/k8s/bin;
#                   scripts/k8s builds them)
#   REALIP_BIN      a realip binary to run instead of building one
#   ROUNDS_<N>      rounds at size N (default 50 at 1000, 30 otherwise)
#
# Figures (2-core VM, a CI run beside it (load average up to 10),
# Kubernetes v1.37.2, realip 232a7f3; ms unless marked; p99 of 50 / 30
# rounds is the slowest one):
#   svcs   create    p50    p99   min   max | write  load  plan  sync (medians)
#   1000    9.8 s   41.1   68.1  28.1  68.1 |  10.9   9.2   6.5   3.7
#  10000  135.2 s  191.2  240.1 139.4 240.1 |  10.9  85.6  63.9  16.9
# (other runs: 1k p50 33.8 / 38.4 ms, one 1k outlier of 532 ms under
# load; 10k p50 212.6, p99 371.1 ms, creation 175.6 s.) First sync after
# start: 0.33 s at 1k, 1.86 s at 10k (40586 netlink messages).
# Where the time goes: each change is 4 netlink messages, but the agent
# rebuilds its model from the reflector stores (load) and re-plans every
# Service (plan) per sync, and sync_ms includes diffing the whole plan
# against the last one: all O(Services). At 10k those three are ~85% of
# the latency; at 1k the rest (apiserver write ~11 ms including curl's
# TLS handshake, watch delivery, process start) is about half.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
. bench/lib.sh
need "nftables python3 curl iproute2 openssl" nft python3 curl ip openssl
k8s=${REALIP_K8S_BIN:-$PWD/target/k8s/bin}
for b in etcd kube-apiserver kubectl; do
  [ -x "$k8s/$b" ] || { echo "$0: $k8s/$b is missing (run scripts/k8s, or set REALIP_K8S_BIN)" >&2; exit 2; }
done
bench_setup
ns api; n_s=$NS
ip netns exec "$n_s" ip link set lo up
# Not for background jobs: `inns x &` forks a subshell, and $! would be
# the subshell, not x (killing it leaves x running).
inns() { ip netns exec "$n_s" "$@"; }

# --- certificates, as scripts/k8s --check makes them (EC P-256: quick).
(
  cd "$dir"
  exec 2>openssl.log
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=realip-bench-ca -keyout ca.key -out ca.crt
  sign() {
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "$2" -keyout "$1.key" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
      -days 1 -extfile "$1.ext" -out "$1.crt"
  }
  sign apiserver /CN=kube-apiserver "keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
  sign admin "/O=system:masters/CN=realip-bench-admin" "keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key
  openssl pkey -in sa.key -pubout -out sa.pub
) || { echo "$0: openssl failed:" >&2; cat "$dir/openssl.log" >&2; exit 1; }

# Fixed ports: the namespace is ours alone, nothing else listens there.
etcd_port=2379 peer_port=2380 api_port=6443
cat > "$dir/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$dir/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$dir/admin.crt", client-key: "$dir/admin.key"}
contexts:
- name: bench
  context: {cluster: bench, user: admin}
current-context: bench
EOF
# Never ~/.kube: our kubeconfig, our discovery cache.
k() { inns "$k8s/kubectl" --kubeconfig="$dir/admin.kubeconfig" --cache-dir="$dir/kubectl-cache" "$@"; }

# A fresh etcd + kube-apiserver (a new data dir): each size starts from
# an empty store. Deleting the objects instead would be slow, and a
# namespace cannot be deleted without kube-controller-manager.
cluster=()
cluster_up() {
  local p
  # KILL: the store is thrown away anyway, and a TERMed kube-apiserver
  # can take minutes over its graceful shutdown (for ever if etcd is gone).
  for p in "${cluster[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  cluster=()
  rm -rf "$dir/etcd"
  # --- etcd. No fsync: a throw-away data dir on a shared disk.
  ip netns exec "$n_s" "$k8s/etcd" --name bench --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "bench=http://127.0.0.1:$peer_port" \
    --quota-backend-bytes=4294967296 \
    --unsafe-no-fsync --log-level warn > "$dir/etcd.log" 2>&1 &
  pids+=($!); cluster+=($!)

  # --- kube-apiserver. --endpoint-reconciler-type=none: the reconciler
  # refuses a loopback advertise address and the apiserver would exit.
  # The Service range is 10.64.0.0/10 so that the `kubernetes` Service takes
  # 10.64.0.1, not 10.96.0.1, which gen_services.py gives svc0. More
  # requests in flight: the creation runs several kubectl at once.
  ip netns exec "$n_s" "$k8s/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --endpoint-reconciler-type=none \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --service-cluster-ip-range=10.64.0.0/10 \
    --tls-cert-file="$dir/apiserver.crt" --tls-private-key-file="$dir/apiserver.key" \
    --client-ca-file="$dir/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$dir/sa.pub" \
    --service-account-signing-key-file="$dir/sa.key" \
    --authorization-mode=Node,RBAC \
    --max-requests-inflight=1000 --max-mutating-requests-inflight=500 \
    --cert-dir="$dir/apiserver-certs" \
    --profiling=false > "$dir/kube-apiserver.log" 2>&1 &
  # First in both lists: stopped before etcd, or it hangs waiting for it.
  pids=("$!" "${pids[@]}"); cluster=("$!" "${cluster[@]}")
  t0=$SECONDS
  until k get --raw=/readyz >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -lt 120 ] || { echo "$0: kube-apiserver not ready:" >&2; tail -20 "$dir/kube-apiserver.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "kube-apiserver ready after $((SECONDS - t0)) s"
}

# One JSON patch straight to the apiserver: curl starts in a few ms, so the
# timestamp taken before it is close to the write itself (kubectl spends
# ~100 ms starting up before it sends anything).
api_patch() { # PATH BODY
  inns curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' --cacert "$dir/ca.crt" \
    --cert "$dir/admin.crt" --key "$dir/admin.key" -X PATCH \
    -H 'Content-Type: application/json-patch+json' --data "$2" \
    "https://127.0.0.1:$api_port$1"
}

field() { grep -o "\"$1\":[0-9.]*" <<<"$2" | head -1 | cut -d: -f2; }
synced() { grep -c '"message":"synced"' "$1" 2>/dev/null || true; }
wait_synced() { # LOG COUNT SECONDS
  local i
  for i in $(seq $(($3 * 100))); do
    [ "$(synced "$1")" -ge "$2" ] && return 0
    sleep 0.01
  done
  echo "$0: no sync in $3 s; the agent's log:" >&2; tail -20 "$1" >&2; return 1
}
# A JSON log line's timestamp field.
stamp() { local x=${1#*\"timestamp\":\"}; echo "${x%%\"*}"; }
# Wall-clock seconds of a JSON log line's RFC 3339 timestamp.
epoch() { python3 -c 'import sys, datetime; print(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp())' "$1"; }

declare -A summary
fresh=0
for n in "${sizes[@]}"; do
  rounds_var=ROUNDS_$n
  if [ "$n" -le 1000 ]; then rounds=${!rounds_var:-50}; else rounds=${!rounds_var:-30}; fi
  python3 bench/gen_services.py "$dir" "$n" 10
  cluster_up
  k create namespace bench >/dev/null
  # Split into 4 files so 4 kubectl run at once: one kubectl creates its
  # objects one request after another. The Node goes first, alone; its
  # status (InternalIP) is a subresource that create drops, so set it after.
  python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
docs = open(f"{d}/objects.yaml").read().split("---\n")
open(f"{d}/node.yaml", "w").write(docs[0])
rest = docs[1:]
for i in range(4):
    open(f"{d}/part{i}.yaml", "w").write("---\n".join(rest[i::4]))
PY
  k create -f "$dir/node.yaml" >/dev/null
  k patch node node-1 --subresource=status --type=merge \
    -p '{"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.11"}]}}' >/dev/null
  c0=$(date +%s.%N)
  cpids=()
  for i in 0 1 2 3; do
    k create --validate=false -f "$dir/part$i.yaml" > "$dir/create$i.log" 2>&1 &
    cpids+=($!)
  done
  for p in "${cpids[@]}"; do wait "$p" || { echo "$0: kubectl create failed:" >&2; tail -5 "$dir"/create*.log >&2; exit 1; }; done
  c1=$(date +%s.%N)
  create_s=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }')
  echo "$n: created $n Services + $n EndpointSlices in $create_s s ($(k get endpointslices -n bench --no-headers | wc -l) slices listed)"

  # The agent: no minimum gap between syncs (each change is its own sync)
  # and no periodic full resync during the rounds.
  log=$dir/agent-$n.log
  : > "$log"
  a0=$(date +%s.%N)
  RUST_LOG=info ip netns exec "$n_s" "$realip" node --kubeconfig "$dir/admin.kubeconfig" --node node-1 \
    --min-sync-period 0s --sync-period 1h --log-format json \
    --healthz 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 --health-address 127.0.0.1 \
    2>"$log" &
  agent=$!
  pids+=("$agent")
  wait_synced "$log" 1 600
  first=$(grep '"message":"synced"' "$log" | head -1)
  first_s=$(awk -v a="$a0" -v b="$(epoch "$(stamp "$first")")" 'BEGIN { printf "%.2f", b - a }')
  echo "$n: agent start to first sync $first_s s (load_ms $(field load_ms "$first"), plan_ms $(field plan_ms "$first"), sync_ms $(field sync_ms "$first"), $(field messages "$first") messages)"
  sleep 1

  : > "$dir/rounds-$n"
  for r in $(seq "$rounds"); do
    s=$(((RANDOM * 32768 + RANDOM) % n))
    e=$((RANDOM % 10))
    fresh=$((fresh + 1))
    ip="10.250.$((fresh / 250)).$((fresh % 250 + 1))"
    before=$(synced "$log")
    t=$(date +%s.%N)
    read -r code write_s < <(api_patch "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices/svc$s-1" \
      "[{\"op\":\"replace\",\"path\":\"/endpoints/$e/addresses/0\",\"value\":\"$ip\"}]")
    [ "$code" = 200 ] || { echo "$0: patch answered $code" >&2; exit 1; }
    wait_synced "$log" $((before + 1)) 60
    line=$(grep '"message":"synced"' "$log" | sed -n "$((before + 1))p")
    ts=$(stamp "$line")
    ms=$(awk -v a="$t" -v b="$(epoch "$ts")" 'BEGIN { printf "%.2f", (b - a) * 1000 }')
    # The first rounds: the kernel really has the new address once the
    # event is logged (nft list is slow at 10k, so only a few).
    if [ "$r" -le 3 ]; then
      # grep -c, not -q: -q stops reading, nft gets SIGPIPE, and pipefail
      # turns that into a failure.
      [ "$(inns nft list ruleset | grep -cF "$ip")" -gt 0 ] || { echo "$0: $ip not in the ruleset after the synced event" >&2; exit 1; }
      check="in the ruleset"
    else
      check=""
    fi
    echo "$ms $(field load_ms "$line") $(field plan_ms "$line") $(field sync_ms "$line") $(field messages "$line") $(awk -v w="$write_s" 'BEGIN { printf "%.2f", w * 1000 }')" >> "$dir/rounds-$n"
    [ -z "$check" ] || echo "$n: round $r svc$s endpoint $e -> $ip: $ms ms, $check"
    sleep 0.2
  done
  kill -TERM "$agent"; wait "$agent" 2>/dev/null || true
  summary[$n]=$(python3 - "$dir/rounds-$n" "$n" "$rounds" "$create_s" "$first_s" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
n, rounds, create_s, first_s = sys.argv[2:]
lat = sorted(r[0] for r in rows)
def pct(p):
    # nearest-rank percentile
    import math
    return lat[max(0, math.ceil(p / 100 * len(lat)) - 1)]
med = lambda i: statistics.median(r[i] for r in rows)
# The slowest round's own breakdown, to tell a slow agent from a slow
# apiserver or a busy machine.
w = max(rows, key=lambda r: r[0])
print(f"{n}: slowest round {w[0]:.1f} ms: write {w[5]:.1f}, load {w[1]:.2f}, plan {w[2]:.2f}, sync {w[3]:.2f} ms",
      file=sys.stderr)
print(f"{n:>6} {rounds:>6} {create_s:>9} {first_s:>8} {pct(50):8.1f} {pct(99):8.1f} {lat[0]:8.1f} {lat[-1]:8.1f}"
      f" {med(5):8.1f} {med(1):8.2f} {med(2):8.2f} {med(3):8.2f} {med(4):6.0f}")
PY
)
done

echo
echo "event-to-kernel latency, ms (curl PATCH of one EndpointSlice endpoint -> agent's synced event after its netlink commit)"
printf '%6s %6s %9s %8s %8s %8s %8s %8s %8s %8s %8s %8s %6s\n' \
  svcs rounds create_s 1st_s p50 p99 min max write_ms load_ms plan_ms sync_ms msgs
for n in "${sizes[@]}"; do echo "${summary[$n]}"; done
echo "(medians: write_ms = curl's PATCH round trip, TLS handshake included; load/plan/sync = the"
echo " agent's own figures for those syncs; msgs = netlink messages per sync. create_s: kubectl"
echo " create of all Services + EndpointSlices, 4 in parallel; 1st_s: agent start to first sync)"
