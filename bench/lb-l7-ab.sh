#!/usr/bin/env bash
# Two builds of realip lb --mode http side by side in one run: before and
# after a change. The same setup as bench/lb-l7.sh (one worker thread,
# X-Forwarded-For added, keep-alive to one realip whoami backend; the
# proxies and the backend share CPU 0, wrk has CPU 1); the two run in turn,
# the order alternating per round. Per run it prints req/s, p99 and the
# proxy's CPU per request (user + system time from /proc over the run,
# steadier than req/s on a shared machine), then the medians and B/A.
#
# Usage: bench/lb-l7-ab.sh A_BINARY B_BINARY [seconds per run, default 5] [rounds, default 7]
# e.g. build the old revision in a git worktree:
#   git worktree add --detach /tmp/base HEAD~3 && (cd /tmp/base && cargo build --release -p realip)
#   bench/lb-l7-ab.sh /tmp/base/target/release/realip target/release/realip
set -euo pipefail
cd "$(dirname "$0")/.."
a_bin=$(realpath "$1")
b_bin=$(realpath "$2")
secs=${3:-5}
rounds=${4:-7}
. bench/lib.sh
need "wrk util-linux python3" wrk taskset python3
bench_setup

bport=$(port)
RUST_LOG=warn taskset -c 0 "$b_bin" whoami --listen "127.0.0.1:$bport" --threads 1 2>/dev/null &
pids+=($!)
start_lb() { # binary port
  RUST_LOG=warn taskset -c 0 "$1" lb --mode http --listen "127.0.0.1:$2" --backend "127.0.0.1:$bport" \
    --header x-forwarded-for --threads 1 2>/dev/null &
  pids+=($!)
}
aport=$(port); start_lb "$a_bin" "$aport"; apid=$!
cport=$(port); start_lb "$b_bin" "$cport"; cpid=$!
for p in "$bport" "$aport" "$cport"; do wait_port "$p"; done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
run() { # port pid -> "req/s p99_ms cpu_us_per_req"
  local t0 t1 out
  t0=$(ticks "$2")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" --latency "http://127.0.0.1:$1/bench")
  t1=$(ticks "$2")
  awk -v t="$((t1 - t0))" -v hz="$hz" '
    /^Requests\/sec:/ { r = $2 }
    /requests in/ { n = $1 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } p = v }
    END { printf "%.0f %.2f %.2f\n", r, p, t / hz * 1e6 / n }' <<<"$out"
}
for p in "$aport" "$cport"; do taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$p/bench" >/dev/null 2>&1 || true; done
printf '%-6s %24s %24s %8s %8s\n' round "A req/s p99 cpu/req" "B req/s p99 cpu/req" "B/A r/s" "B/A cpu"
rr=(); cc=(); ar=(); br=(); ac=(); bc=()
for round in $(seq "$rounds"); do
  if (( round % 2 )); then x=$(run "$aport" "$apid"); y=$(run "$cport" "$cpid")
  else y=$(run "$cport" "$cpid"); x=$(run "$aport" "$apid"); fi
  read -r xr xp xc <<<"$x"; read -r yr yp yc <<<"$y"
  r=$(awk -v x="$xr" -v y="$yr" 'BEGIN { printf "%.3f", y / x }')
  c=$(awk -v x="$xc" -v y="$yc" 'BEGIN { printf "%.3f", y / x }')
  rr+=("$r"); cc+=("$c"); ar+=("$xr"); br+=("$yr"); ac+=("$xc"); bc+=("$yc")
  printf '%-6s %9s %6sms %5sus %9s %6sms %5sus %8s %8s\n' "$round" "$xr" "$xp" "$xc" "$yr" "$yp" "$yc" "$r" "$c"
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'median req/s: A %s, B %s; B/A per round, median: %s\n' "$(printf '%s\n' "${ar[@]}" | median)" \
  "$(printf '%s\n' "${br[@]}" | median)" "$(printf '%s\n' "${rr[@]}" | median)"
printf 'median proxy CPU us/request: A %s, B %s; B/A per round, median: %s\n' "$(printf '%s\n' "${ac[@]}" | median)" \
  "$(printf '%s\n' "${bc[@]}" | median)" "$(printf '%s\n' "${cc[@]}" | median)"
