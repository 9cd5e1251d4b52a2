# Shared by the bench scripts; source it from the repository root.
#
#   need "apt packages" bin...   fail clearly when a tool is missing
#   bench_setup                  build realip ($realip), make $dir, and on
#                                exit (or Ctrl-C) stop the processes in
#                                $pids and delete the namespaces in $made
#   ns NAME                      a scratch namespace realip-bench-PID-NAME
#                                in $NS (call it in this shell, not in a
#                                $(...), so the exit trap knows it)
#   port / wait_port PORT        a free loopback port; wait for a listener
#   nginx_temps DIR              nginx's temp-path lines, all under DIR

need() {
  local pkgs=$1 bin
  shift
  for bin in "$@"; do
    command -v "$bin" >/dev/null || { echo "$0: $bin is missing (apt-get install $pkgs)" >&2; exit 2; }
  done
}

bench_setup() {
  # REALIP_BIN runs a given build instead (before/after comparisons run
  # the same script on two binaries, rounds alternating).
  if [ -n "${REALIP_BIN:-}" ]; then
    realip=$REALIP_BIN
  else
    cargo build --release -q -p realip
    realip=${CARGO_TARGET_DIR:-$PWD/target}/release/realip
  fi
  dir=$(mktemp -d /tmp/realip-bench-XXXXXX)
  id=$$
  pids=()
  made=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local x
  for x in "${pids[@]}"; do kill "$x" 2>/dev/null || true; wait "$x" 2>/dev/null || true; done
  # Processes started inside a namespace die with it: stop any still there.
  for x in "${made[@]}"; do ip netns pids "$x" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
  for x in "${made[@]}"; do ip netns del "$x" 2>/dev/null || true; done
  pids=()
  made=()
  rm -rf "$dir"
}

ns() { NS="realip-bench-$id-$1"; ip netns add "$NS"; made+=("$NS"); }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$0: nothing listening on $1" >&2
  exit 1
}

# nginx writes request bodies and proxy buffers here; keep them in scratch.
nginx_temps() {
  printf '  client_body_temp_path %s/body;\n' "$1"
  local t
  for t in proxy fastcgi uwsgi scgi; do
    printf '  %s_temp_path %s/%s;\n' "$t" "$1" "$t"
  done
}
