#!/usr/bin/env bash
# realip whoami vs nginx, side by side in one run, on loopback.
#
# Both servers get one core (CPU 0) and one worker; wrk gets the other core
# (CPU 1) with 1 thread and 64 keep-alive connections. realip whoami serves
# its full `/` page (hostname, IPs, RemoteAddr, the request dump, RealIP and
# Hop lines); nginx returns a body of similar size built from $remote_addr
# and friends. Access logs are off on both (RUST_LOG=warn, access_log off).
#
# Usage: bench/whoami.sh [seconds per run, default 10]
# Prints req/s and p99 latency for both and the ratio realip/nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}

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
run() { # name port -> "rps p99"
  taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$2/" >/dev/null 2>&1 || true
  local out rps p99
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" --latency "http://127.0.0.1:$2/")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$rps $p99"
}

read -r r_rps r_p99 < <(run realip "$rport")
read -r n_rps n_p99 < <(run nginx "$nport")

printf '%-16s %12s %10s %8s\n' server "req/s" p99 bytes
printf '%-16s %12s %10s %8s\n' "realip whoami" "$r_rps" "$r_p99" "$(size "$rport")"
printf '%-16s %12s %10s %8s\n' "nginx 1 worker" "$n_rps" "$n_p99" "$(size "$nport")"
awk -v r="$r_rps" -v n="$n_rps" 'BEGIN { printf "ratio realip/nginx req/s: %.2f (target >= 1.00)\n", r / n }'
