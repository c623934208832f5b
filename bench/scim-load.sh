#!/usr/bin/env bash
# Load benchmark of an IdP's SCIM push: benches/scim_load.rs (Entra's provisioning requests) on
# loopback -> kratos-jit serve --dev (SCIM on 127.0.0.1:4480 over an in-memory SQLite store, the
# in-memory Kratos stand-in on 127.0.0.1:4434, both in the one process).
# See bench/README.md, "SCIM push".
#
#   bash bench/scim-load.sh          # from the repository root; prints one block per phase
#
# Settings (environment variables, all optional):
#   USERS=10000         users of the initial push (filter, then POST each)
#   GROUP_COUNT=100     groups of the push (filter, POST, then PATCHes adding the users)
#   MEMBERS_PER_PATCH=10
#   RATE=200            users/s of the push (open loop); 0: as fast as CONCURRENCY workers go
#   GROUP_RATE=10       groups/s of the push (open loop)
#   CONCURRENCY=4       workers of the closed-loop push (RATE=0) and of the load phase
#   IDENTITIES=100000   users (Kratos identities and store users) before the filter phase
#   FILTER_RATE=500     GET /Users?filter=userName eq "…" per second (open loop)
#   FILTER_DURATION=20  seconds of the measured filter phase
#   DATABASE_URL=sqlite::memory:   the SCIM store (serve --dev's default); e.g. sqlite:$OUT/scim.db
#   OUT=<new temp dir>  where the server log, results.json, summary.txt and meta.txt go
set -euo pipefail

die() { echo "scim-load: $*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*" >&2; }

[[ -f Cargo.toml && -f benches/scim_load.rs ]] ||
  die "run me from the repository root: bash bench/scim-load.sh"

USERS=${USERS:-10000}
GROUP_COUNT=${GROUP_COUNT:-100}   # not GROUPS: bash's own array of the user's group ids
MEMBERS_PER_PATCH=${MEMBERS_PER_PATCH:-10}
RATE=${RATE:-200}
GROUP_RATE=${GROUP_RATE:-10}
CONCURRENCY=${CONCURRENCY:-4}
IDENTITIES=${IDENTITIES:-100000}
FILTER_RATE=${FILTER_RATE:-500}
FILTER_DURATION=${FILTER_DURATION:-20}
DATABASE_URL=${DATABASE_URL:-sqlite::memory:}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/kratos-jit-scim-bench.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PORTS=(4480 4434 4445)

busy_ports() {
  local port found=()
  for port in "${PORTS[@]}"; do
    ss -Hltn "sport = :$port" | grep -q . && found+=("$port")
  done
  echo "${found[*]}"
}
[[ -z $(busy_ports) ]] || die "something already listens on port(s) $(busy_ports); serve --dev needs 4480, 4434 and 4445"

say "cargo build --release; cargo bench --bench scim_load --no-run"
cargo build --release
DRIVER=$(cargo bench --bench scim_load --no-run 2>&1 | tee /dev/stderr | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[[ -x $DRIVER ]] || die "cannot find the scim_load driver cargo built"
# Private copies: other builds in this target directory must not swap the binaries (or the
# mapper workers the server spawns from itself) in the middle of a run.
cp "${CARGO_TARGET_DIR:-target}/release/kratos-jit" "$OUT/kratos-jit"
cp "$DRIVER" "$OUT/scim_load"
BIN=$OUT/kratos-jit

SERVER_PID=
stop_server() {
  local i
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || { SERVER_PID=; return 0; }
  for ((i = 0; i < 150; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT
trap 'exit 130' INT TERM

GIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
  echo "commit: $GIT"
  echo "machine: $(nproc) cores, $CPU_MODEL, $(free -g | awk '/^Mem/ {print $2}') GiB, $(uname -sr)"
  echo "rustc: $(rustc --version)"
  echo "binary sha256: $(sha256sum "$BIN" | cut -c1-16)"
  echo "settings: USERS=$USERS GROUP_COUNT=$GROUP_COUNT MEMBERS_PER_PATCH=$MEMBERS_PER_PATCH RATE=$RATE GROUP_RATE=$GROUP_RATE CONCURRENCY=$CONCURRENCY IDENTITIES=$IDENTITIES FILTER_RATE=$FILTER_RATE FILTER_DURATION=$FILTER_DURATION DATABASE_URL=$DATABASE_URL"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/meta.txt" >&2

say "starting serve --dev (log in $OUT/server.log)"
(
  # Only serve --dev's own settings: a stray KRATOS_JIT__ variable would change them.
  while read -r name; do unset "$name"; done < <(compgen -e | grep '^KRATOS_JIT' || true)
  export KRATOS_JIT_LOG=info
  # SCIM answers report their waits on Kratos and the store, so the driver can subtract them.
  export KRATOS_JIT__SCIM__SERVER_TIMING=true
  export KRATOS_JIT__SCIM__DATABASE_URL=$DATABASE_URL
  exec "$BIN" serve --dev --log-format json 2>"$OUT/server.log"
) &
SERVER_PID=$!
python3 bench/provision_load.py wait-http http://127.0.0.1:4480/health/alive --pid "$SERVER_PID" --timeout 60 ||
  { tail -20 "$OUT/server.log" >&2; die "serve --dev did not start"; }

status=0
"$OUT/scim_load" --users "$USERS" --groups "$GROUP_COUNT" --members-per-patch "$MEMBERS_PER_PATCH" \
  --rate "$RATE" --group-rate "$GROUP_RATE" --concurrency "$CONCURRENCY" \
  --identities "$IDENTITIES" --filter-rate "$FILTER_RATE" --filter-duration "$FILTER_DURATION" \
  --server-pid "$SERVER_PID" --json "$OUT/results.json" | tee "$OUT/summary.txt" || status=$?
echo "server RSS after the run: $(awk '/VmRSS/ {print $2, $3}' "/proc/$SERVER_PID/status" 2>/dev/null || echo '?')" | tee -a "$OUT/summary.txt" >&2
for level in WARN ERROR; do
  echo "server log: $(grep -c "\"level\":\"$level\"" "$OUT/server.log" || true) $level lines" | tee -a "$OUT/summary.txt" >&2
done
stop_server
say "results in $OUT (meta.txt, summary.txt, results.json, server.log)"
exit "$status"
