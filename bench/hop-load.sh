#!/usr/bin/env bash
# Load benchmark of full claims-hop logins: benches/hop_load.rs (Kratos + a browser) on loopback
# -> kratos-jit serve --dev (the hop on 127.0.0.1:4480, its embedded upstream double on
# 127.0.0.1:4445 and the in-memory Kratos stand-in on 127.0.0.1:4434, all in the one process).
# See bench/README.md, "Claims hop logins".
#
#   bash bench/hop-load.sh          # from the repository root; prints one line per phase and run
#
# Settings (environment variables, all optional):
#   RATE=500           logins/s (open loop)
#   DURATION=30        seconds per measured phase
#   WARMUP=5           seconds of unmeasured logins before each phase
#   RUNS=3             runs, each against a freshly started server
#   UPDATE_SHARE=0.1   share of logins that change the identity
#   DEPS=true          also time the callback's dependency calls directly (the `deps` phase)
#   HOP_KEY=ES256      ES256 or RS256: a key generated for the run (kratos-jit keys generate);
#                      dev: the committed RS256 development key (dev/hop-signing-key.pem)
#   UPSTREAM_ALG=ES256 how the embedded upstream double signs (serve --dev --dev-upstream-alg):
#                      ES256 (its signatures cost the double, which shares the two cores with
#                      the sidecar, little; the sidecar verifies ES256, which costs it more than
#                      RS256), or RS256 as Ory Polis, Okta and Entra ID sign
#   OUT=<new temp dir> where server logs, run-<n>.json and summary.md go
set -euo pipefail

die() { echo "hop-load: $*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*" >&2; }

[[ -f Cargo.toml && -f benches/hop_load.rs && -f dev/hop-signing-key.pem ]] ||
  die "run me from the repository root: bash bench/hop-load.sh"

RATE=${RATE:-500}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-5}
RUNS=${RUNS:-3}
UPDATE_SHARE=${UPDATE_SHARE:-0.1}
DEPS=${DEPS:-true}
HOP_KEY=${HOP_KEY:-ES256}
UPSTREAM_ALG=${UPSTREAM_ALG:-ES256}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/kratos-jit-hop-bench.XXXXXX")}
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

say "cargo build --release; cargo bench --bench hop_load --no-run"
cargo build --release
DRIVER=$(cargo bench --bench hop_load --no-run 2>&1 | tee /dev/stderr | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[[ -x $DRIVER ]] || die "cannot find the hop_load driver cargo built"
# Private copies: other builds in this target directory must not swap the binaries (or the
# mapper workers the server spawns from itself) in the middle of a run.
cp "${CARGO_TARGET_DIR:-target}/release/kratos-jit" "$OUT/kratos-jit"
cp "$DRIVER" "$OUT/hop_load"
BIN=$OUT/kratos-jit
KEY_ENV=()
case $HOP_KEY in
  dev) ;;
  ES256 | RS256)
    rm -f "$OUT/hop-key.pem"
    "$BIN" keys generate --alg "$HOP_KEY" --out "$OUT/hop-key.pem" >&2
    KEY_ENV=("KRATOS_JIT__HOP__SIGNING_KEYS=$OUT/hop-key.pem")
    ;;
  *) die "HOP_KEY is dev, ES256 or RS256" ;;
esac

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
  echo "settings: RATE=$RATE DURATION=$DURATION WARMUP=$WARMUP UPDATE_SHARE=$UPDATE_SHARE HOP_KEY=$HOP_KEY UPSTREAM_ALG=$UPSTREAM_ALG"
} | tee "$OUT/meta.txt" >&2

for ((run = 1; run <= RUNS; run++)); do
  [[ -z $(busy_ports) ]] || die "port(s) $(busy_ports) still taken before run $run"
  say "run $run of $RUNS: starting serve --dev (log in $OUT/server-$run.log); load: $(cut -d' ' -f1-3 /proc/loadavg)"
  (
    # Only serve --dev's own settings: a stray KRATOS_JIT__ variable would change them.
    while read -r name; do unset "$name"; done < <(compgen -e | grep '^KRATOS_JIT' || true)
    export KRATOS_JIT_LOG=info
    # The hop reports its waits on the double and the stand-in, so the driver can subtract them.
    export KRATOS_JIT__HOP__SERVER_TIMING=true
    [[ ${#KEY_ENV[@]} -eq 0 ]] || export "${KEY_ENV[@]}"
    exec "$BIN" serve --dev --dev-upstream-alg "$UPSTREAM_ALG" --log-format json 2>"$OUT/server-$run.log"
  ) &
  SERVER_PID=$!
  python3 bench/provision_load.py wait-http http://127.0.0.1:4480/health/alive --pid "$SERVER_PID" --timeout 60 ||
    { tail -20 "$OUT/server-$run.log" >&2; die "serve --dev did not start"; }
  "$OUT/hop_load" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
    --update-share "$UPDATE_SHARE" --deps "$DEPS" --server-pid "$SERVER_PID" \
    --json "$OUT/run-$run.json" | tee -a "$OUT/summary.txt" ||
    echo "hop-load: run $run had failed logins (see run-$run.json, error_examples)" >&2
  grep -c '"level":"ERROR"' "$OUT/server-$run.log" | xargs -I{} echo "server log: {} ERROR lines" >&2 || true
  stop_server
done

say "results in $OUT (meta.txt, summary.txt, run-<n>.json, server-<n>.log)"
