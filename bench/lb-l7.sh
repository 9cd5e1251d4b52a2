#!/usr/bin/env bash
# realip lb --mode http against HAProxy (mode http, option forwardfor) and
# nginx (proxy_pass with $proxy_add_x_forwarded_for), side by side in one
# run, on loopback. Each proxy runs one worker thread, adds X-Forwarded-For,
# keeps its connections to the backend alive, and talks to the same backend
# (realip whoami, one thread, answering /bench with "1").
#
# wrk (1 thread, 64 keep-alive connections) has CPU 1; the proxies and the
# backend share CPU 0. The proxies run in turn, the order alternating per
# round; the script prints req/s and p99 per round and the median ratios.
# Usage: bench/lb-l7.sh [seconds per run, default 5] [rounds, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-5}
. bench/lib.sh
need "wrk haproxy nginx util-linux python3" wrk haproxy nginx taskset python3
bench_setup

bport=$(port)
RUST_LOG=warn taskset -c 0 "$realip" whoami --listen "127.0.0.1:$bport" --threads 1 2>/dev/null &
pids+=($!)

rport=$(port)
RUST_LOG=warn taskset -c 0 "$realip" lb --mode http --listen "127.0.0.1:$rport" --backend "127.0.0.1:$bport" \
  --header x-forwarded-for --threads 1 2>/dev/null &
pids+=($!)

hport=$(port)
cat >"$dir/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  option forwardfor
  http-reuse always
  timeout connect 3s
  timeout client 30s
  timeout server 30s
listen l7
  bind 127.0.0.1:$hport
  server b 127.0.0.1:$bport
CFG
taskset -c 0 haproxy -f "$dir/haproxy.cfg" -db >/dev/null 2>&1 &
pids+=($!)

nport=$(port)
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<CFG
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
$(nginx_temps "$dir/nginx")
  keepalive_requests 1000000;
  upstream b { server 127.0.0.1:$bport; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass http://b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CFG
taskset -c 0 nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" >/dev/null 2>&1 &
pids+=($!)
for p in "$bport" "$rport" "$hport" "$nport"; do wait_port "$p"; done

run() { # port -> "req/s p99_ms"
  taskset -c 1 wrk -t1 -c64 -d"${secs}s" --latency "http://127.0.0.1:$1/bench" | awk '
    /^Requests\/sec:/ { r = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } p = v }
    END { printf "%.0f %.2f\n", r, p }'
}

for p in "$rport" "$hport" "$nport"; do taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$p/bench" >/dev/null 2>&1 || true; done
printf '%-6s %18s %18s %18s %9s %9s\n' round "realip req/s p99" "haproxy req/s p99" "nginx req/s p99" "r/haproxy" "r/nginx"
rh=(); rn=(); pr=(); ph=(); pn=()
for round in $(seq "$rounds"); do
  if (( round % 2 )); then r=$(run "$rport"); h=$(run "$hport"); n=$(run "$nport")
  else n=$(run "$nport"); h=$(run "$hport"); r=$(run "$rport"); fi
  read -r rr rp <<<"$r"; read -r hr hp <<<"$h"; read -r nr np <<<"$n"
  a=$(awk -v x="$rr" -v y="$hr" 'BEGIN { printf "%.3f", x / y }')
  b=$(awk -v x="$rr" -v y="$nr" 'BEGIN { printf "%.3f", x / y }')
  rh+=("$a"); rn+=("$b"); pr+=("$rp"); ph+=("$hp"); pn+=("$np")
  printf '%-6s %11s %6sms %11s %6sms %11s %6sms %9s %9s\n' "$round" "$rr" "$rp" "$hr" "$hp" "$nr" "$np" "$a" "$b"
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'req/s realip/haproxy, median of %s rounds: %s (target >= 1.00)\n' "$rounds" "$(printf '%s\n' "${rh[@]}" | median)"
printf 'req/s realip/nginx, median of %s rounds: %s (target >= 1.20)\n' "$rounds" "$(printf '%s\n' "${rn[@]}" | median)"
printf 'p99 ms, median: realip %s, haproxy %s, nginx %s (target: realip no worse than either)\n' \
  "$(printf '%s\n' "${pr[@]}" | median)" "$(printf '%s\n' "${ph[@]}" | median)" "$(printf '%s\n' "${pn[@]}" | median)"
