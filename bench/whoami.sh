#!/usr/bin/env bash
# realip whoami vs nginx, side by side in one run, on loopback.
#
# Both servers get one core (CPU 0) and one worker; wrk gets the other core
# (CPU 1) with 1 thread and 64 keep-alive connections. realip whoami serves
# its full `/` page (hostname, IPs, RemoteAddr, the request dump, RealIP and
# Hop lines); nginx returns a body of similar size built from $remote_addr
# and friends. Access logs are off on both (RUST_LOG=warn, access_log off).
#
# Usage: bench/whoami.sh [seconds per run, default 5] [rounds, default 5]
# Prints req/s, p99 latency and server CPU time per request for both, per
# round and as medians, with the median of the per-round ratios. On a
# two-core machine wrk saturates its own core too, so req/s may be capped by
# the load generator; server CPU per request (from /proc/PID/schedstat,
# softirq work done in the server's context included) is the server's cost.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-5}

. bench/lib.sh
need "wrk nginx util-linux python3" wrk nginx taskset python3
bench_setup

rport=$(port)
RUST_LOG=warn taskset -c 0 "$realip" whoami --listen "127.0.0.1:$rport" --threads 1 --trusted loopback >/dev/null 2>"$dir/realip.log" &
pids+=($!)

nport=$(port)
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
worker_cpu_affinity 01;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
$(nginx_temps "$dir/nginx")
  server {
    listen 127.0.0.1:$nport;
    location / {
      default_type text/plain;
      return 200 "Hostname: \$hostname\nIP: 127.0.0.1\nIP: ::1\nRemoteAddr: \$remote_addr:\$remote_port\n\$request_method \$request_uri \$server_protocol\nHost: \$host\nUser-Agent: \$http_user_agent\n\nRealIP: \$remote_addr:\$remote_port (peer)\nStrategy: rightmost-trusted-range:X-Forwarded-For (no entries; the trusted peer is the answer)\nHop: peer \$remote_addr:\$remote_port trusted (in 127.0.0.0/8 (loopback)) <- client\n";
    }
  }
}
CONF
taskset -c 0 nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" &
pids+=($!)

wait_port "$rport"; wait_port "$nport"
rpid=${pids[0]}
# nginx's worker is the master's child; the master does nothing per request.
npid=$(pgrep -P "${pids[1]}" nginx | head -1)
[ -n "$npid" ] || { echo "bench/whoami.sh: no nginx worker" >&2; exit 1; }

size() { curl -s "http://127.0.0.1:$1/" 2>/dev/null | wc -c || echo "?"; }
# On-CPU nanoseconds of every thread of a process (schedstat's first field).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

run() { # port server-pid -> "rps p99 cpu-us-per-request"
  local out rps p99 before after total
  before=$(cpu_ns "$2")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" --latency "http://127.0.0.1:$1/")
  after=$(cpu_ns "$2")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$rps $p99 $(awk -v a="$after" -v b="$before" -v n="$total" 'BEGIN { printf "%.2f", (a - b) / 1000 / n }')"
}

# Warm both up, then alternate which goes first, so a noisy neighbour on a
# shared machine hits both sides alike; the verdict is the median of the
# per-round ratios.
taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$rport/" >/dev/null 2>&1 || true
taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$nport/" >/dev/null 2>&1 || true
printf '%-6s %13s %9s %7s %13s %9s %7s %7s %7s\n' round "realip req/s" p99 "us/req" "nginx req/s" p99 "us/req" ratio "cpu"
results=()
for round in $(seq "$rounds"); do
  if (( round % 2 )); then
    read -r r_rps r_p99 r_cpu < <(run "$rport" "$rpid"); read -r n_rps n_p99 n_cpu < <(run "$nport" "$npid")
  else
    read -r n_rps n_p99 n_cpu < <(run "$nport" "$npid"); read -r r_rps r_p99 r_cpu < <(run "$rport" "$rpid")
  fi
  ratio=$(awk -v r="$r_rps" -v n="$n_rps" 'BEGIN { printf "%.3f", r / n }')
  # Server CPU per request, nginx's over ours: above 1 means we are cheaper.
  cratio=$(awk -v r="$r_cpu" -v n="$n_cpu" 'BEGIN { printf "%.3f", n / r }')
  printf '%-6s %13s %9s %7s %13s %9s %7s %7s %7s\n' "$round" "$r_rps" "$r_p99" "$r_cpu" "$n_rps" "$n_p99" "$n_cpu" "$ratio" "$cratio"
  results+=("$r_rps $r_p99 $n_rps $n_p99 $ratio $r_cpu $n_cpu $cratio")
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { printf '%s\n' "${results[@]}" | awk -v c="$1" '{ print $c }'; }
# wrk prints p99 with a unit; compare in microseconds.
us() { awk '{ v = $1; if (v ~ /us$/) v += 0; else if (v ~ /ms$/) v *= 1000; else if (v ~ /s$/) v *= 1000000; print v }'; }
echo
printf '%-16s %12s %12s %16s %8s\n' server "req/s (med)" "p99 us (med)" "cpu us/req (med)" bytes
printf '%-16s %12s %12s %16s %8s\n' "realip whoami" "$(col 1 | median)" "$(col 2 | us | median)" "$(col 6 | median)" "$(size "$rport")"
printf '%-16s %12s %12s %16s %8s\n' "nginx 1 worker" "$(col 3 | median)" "$(col 4 | us | median)" "$(col 7 | median)" "$(size "$nport")"
printf 'ratio realip/nginx req/s, median of %s rounds: %s (target >= 1.00)\n' "$rounds" "$(col 5 | median)"
printf 'server CPU per request, nginx/realip, median: %s (above 1: realip is cheaper)\n' "$(col 8 | median)"
# With two cores wrk saturates its own core as well, so req/s can be capped
# by the load generator; the CPU figure is the server's own cost.
