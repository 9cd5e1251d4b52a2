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
# Prints req/s and p99 latency for both per round, their medians, and the
# median of the per-round ratios realip/nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-5}

for bin in wrk nginx taskset; do
  command -v "$bin" >/dev/null || { echo "bench/whoami.sh: $bin is missing (apt-get install wrk nginx util-linux)" >&2; exit 2; }
done
cargo build --release -q -p realip
realip=target/release/realip

dir=$(mktemp -d /tmp/realip-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench/whoami.sh: nothing listening on $1" >&2; exit 1
}

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
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
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

size() { curl -s "http://127.0.0.1:$1/" 2>/dev/null | wc -c || echo "?"; }
run() { # port -> "rps p99"
  local out rps p99
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" --latency "http://127.0.0.1:$1/")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$rps $p99"
}

# Warm both up, then alternate which goes first, so a noisy neighbour on a
# shared machine hits both sides alike; the verdict is the median of the
# per-round ratios.
taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$rport/" >/dev/null 2>&1 || true
taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$nport/" >/dev/null 2>&1 || true
printf '%-6s %14s %10s %14s %10s %7s\n' round "realip req/s" p99 "nginx req/s" p99 ratio
results=()
for round in $(seq "$rounds"); do
  if (( round % 2 )); then
    read -r r_rps r_p99 < <(run "$rport"); read -r n_rps n_p99 < <(run "$nport")
  else
    read -r n_rps n_p99 < <(run "$nport"); read -r r_rps r_p99 < <(run "$rport")
  fi
  ratio=$(awk -v r="$r_rps" -v n="$n_rps" 'BEGIN { printf "%.3f", r / n }')
  printf '%-6s %14s %10s %14s %10s %7s\n' "$round" "$r_rps" "$r_p99" "$n_rps" "$n_p99" "$ratio"
  results+=("$r_rps $r_p99 $n_rps $n_p99 $ratio")
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { printf '%s\n' "${results[@]}" | awk -v c="$1" '{ print $c }'; }
# wrk prints p99 with a unit; compare in microseconds.
us() { awk '{ v = $1; if (v ~ /us$/) v += 0; else if (v ~ /ms$/) v *= 1000; else if (v ~ /s$/) v *= 1000000; print v }'; }
echo
printf '%-16s %12s %12s %8s\n' server "req/s (med)" "p99 us (med)" bytes
printf '%-16s %12s %12s %8s\n' "realip whoami" "$(col 1 | median)" "$(col 2 | us | median)" "$(size "$rport")"
printf '%-16s %12s %12s %8s\n' "nginx 1 worker" "$(col 3 | median)" "$(col 4 | us | median)" "$(size "$nport")"
printf 'ratio realip/nginx req/s, median of %s rounds: %s (target >= 1.00)\n' "$rounds" "$(col 5 | median)"
