#!/usr/bin/env bash
# Load benchmark of `POST /v1/provision`: oha on loopback -> kratos-jit serve -> the in-memory
# Kratos admin API stand-in (`kratos-jit standin`, its own process). See bench/README.md.
#
#   bash bench/provision-load.sh          # from the repository root; prints the tables
#
# Settings (environment variables, all optional):
#   DURATION=25          seconds per measured run
#   RATE=1000            requests/s of the fixed-rate runs
#   SUBJECTS=200         distinct okta-acme users seeded before the runs
#   VARIANTS=250         last names per subject in the `updated` bodies (unchanged share ~1/VARIANTS)
#   MAPPER_WORKERS=2     mapper.workers of the sidecar
#   RATE_CONNECTIONS=32  oha connections of the fixed-rate runs
#   MAX_CONNECTIONS=16   oha connections of the open-throttle (max throughput) runs
#   WARMUP=3             seconds of unmeasured traffic before each traffic type
#   CAPTURE=auto         auto|yes|no: the per-request attribution runs under tcpdump
#   WAIT_IDLE=300        before each run, wait up to this many seconds for the machine to go
#                        quiet (<= 0.25 cores busy); 0: do not wait
#   BUSY_RETRIES=2       run a measured run again (at most this many times) when processes
#                        other than the benchmark's used more than BUSY_THRESHOLD cores during it
#   BUSY_THRESHOLD=0.15  (the CPU other processes used is reported for every run either way)
#   OUT=<new temp dir>   where logs, oha JSON, results.json and summary.md go
set -euo pipefail

die() { echo "provision-load: $*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*" >&2; }

[[ -f Cargo.toml && -d mappers/okta-acme && -f bench/provision_load.py ]] ||
  die "run me from the repository root: bash bench/provision-load.sh"

DURATION=${DURATION:-25}
RATE=${RATE:-1000}
SUBJECTS=${SUBJECTS:-200}
VARIANTS=${VARIANTS:-250}
MAPPER_WORKERS=${MAPPER_WORKERS:-2}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-32}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-16}
WARMUP=${WARMUP:-3}
CAPTURE=${CAPTURE:-auto}
WAIT_IDLE=${WAIT_IDLE:-300}
BUSY_RETRIES=${BUSY_RETRIES:-2}
BUSY_THRESHOLD=${BUSY_THRESHOLD:-0.15}
OHA_VERSION=1.16.0
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/kratos-jit-bench.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
HELPER=(python3 "$PWD/bench/provision_load.py")
RESULTS=$OUT/results.json
TIMEOUT=$((DURATION + 90)) # per run, load generator included

command -v python3 >/dev/null || die "python3 is required"
command -v cargo >/dev/null || die "cargo is required (a Rust toolchain, 1.89 or newer)"

# ------------------------------------------------------------------ load generator
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v oha >/dev/null; then
  # Default features = rustls only (no OpenSSL). oha 1.16.0 does not compile with
  # --no-default-features (client.rs uses its TLS stream unconditionally). ~5-10 min on 2 cores.
  say "installing oha $OHA_VERSION (cargo install --locked; rustls, no OpenSSL)"
  cargo install oha --version "$OHA_VERSION" --locked
fi
OHA_FOUND=$(oha --version)
[[ $OHA_FOUND == *"$OHA_VERSION"* ]] ||
  echo "provision-load: note: using $OHA_FOUND (the figures in bench/README.md come from oha $OHA_VERSION)" >&2

# ------------------------------------------------------------------ build
say "cargo build --release"
cargo build --release
# Run a private copy: other builds in this target directory must not swap the binary (or the
# mapper workers it spawns from itself) in the middle of a run.
cp "${CARGO_TARGET_DIR:-target}/release/kratos-jit" "$OUT/kratos-jit"
BIN=$OUT/kratos-jit

# ------------------------------------------------------------------ processes
STANDIN_PID= SIDECAR_PID= TCPDUMP_PID=
stop_pid() { # pid signal
  local pid=$1 signal=$2 i
  [[ -n $pid ]] || return 0
  kill -"$signal" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$TCPDUMP_PID" INT
  stop_pid "$SIDECAR_PID" TERM
  stop_pid "$STANDIN_PID" INT
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r STANDIN_PORT SIDECAR_PORT < <("${HELPER[@]}" free-ports 2)
STANDIN_URL=http://127.0.0.1:$STANDIN_PORT
SIDECAR_URL=http://127.0.0.1:$SIDECAR_PORT
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(24))') # trusted caller, this run only

say "starting the stand-in on $STANDIN_URL and the sidecar on $SIDECAR_URL (logs in $OUT)"
"$BIN" standin --listen "127.0.0.1:$STANDIN_PORT" 2>"$OUT/standin.log" &
STANDIN_PID=$!
(
  # Only this benchmark's settings: a stray KRATOS_JIT__ variable would be refused (or change it).
  while read -r name; do unset "$name"; done < <(compgen -e | grep '^KRATOS_JIT__' || true)
  export KRATOS_JIT__LISTEN=127.0.0.1:$SIDECAR_PORT
  export KRATOS_JIT__PROVIDERS=mappers
  export KRATOS_JIT__KRATOS__ADMIN_URL=$STANDIN_URL
  export KRATOS_JIT__API__TRUSTED_SECRETS=$SECRET
  export KRATOS_JIT__MAPPER__WORKERS=$MAPPER_WORKERS
  export KRATOS_JIT_LOG=info
  exec "$BIN" serve --log-format json 2>"$OUT/sidecar.log"
) &
SIDECAR_PID=$!
"${HELPER[@]}" wait-http "$STANDIN_URL/health/alive" --pid "$STANDIN_PID" --timeout 60 ||
  { cat "$OUT/standin.log" >&2; die "the stand-in did not start"; }
"${HELPER[@]}" wait-http "$SIDECAR_URL/health/alive" --pid "$SIDECAR_PID" --timeout 60 ||
  { cat "$OUT/sidecar.log" >&2; die "the sidecar did not start"; }

# ------------------------------------------------------------------ machine, data, seed
"${HELPER[@]}" meta --results "$RESULTS" \
  --set git="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')" \
  --set oha="$OHA_FOUND" --set mapper_workers="$MAPPER_WORKERS" --set subjects="$SUBJECTS" \
  --set duration="$DURATION" --set rate="$RATE" --set variants="$VARIANTS" \
  --set rustc="$(rustc --version)" --set binary_sha256="$(sha256sum "$BIN" | cut -c1-16)"

"${HELPER[@]}" gen --claims mappers/okta-acme/tests/admin.claims.json \
  --subjects "$SUBJECTS" --variants "$VARIANTS" --out "$OUT"
say "seeding $SUBJECTS okta-acme identities"
"${HELPER[@]}" seed --url "$SIDECAR_URL/v1/provision" --secret "$SECRET" \
  --lines "$OUT/unchanged.lines" --ids "$OUT/ids.json" --expect created
"${HELPER[@]}" kratos-files --standin "$STANDIN_URL" --ids "$OUT/ids.json" \
  --mapper mappers/okta-acme/mapper.jsonnet --out "$OUT"

say "machine: $(nproc) cores; $(uptime)"
"${HELPER[@]}" idle-check --wait "$WAIT_IDLE" --results "$RESULTS"

# ------------------------------------------------------------------ packet capture (optional)
if [[ $CAPTURE != no ]] && ! command -v tcpdump >/dev/null; then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing tcpdump (per-request attribution)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcpdump >/dev/null ||
      echo "provision-load: could not install tcpdump" >&2
  fi
fi
if [[ $CAPTURE == yes ]] && ! command -v tcpdump >/dev/null; then die "CAPTURE=yes needs tcpdump"; fi
capture_start() { # file
  local file=$1 i
  local drop=()
  [[ $EUID -eq 0 ]] && drop=(-Z root)
  tcpdump -i lo -n -s 0 -B 262144 --time-stamp-precision=nano "${drop[@]}" -w "$file" \
    "tcp and host 127.0.0.1 and (port $SIDECAR_PORT or port $STANDIN_PORT)" 2>"$file.log" &
  TCPDUMP_PID=$!
  for ((i = 0; i < 100; i++)); do
    grep -q 'listening on' "$file.log" 2>/dev/null && return 0
    kill -0 "$TCPDUMP_PID" 2>/dev/null || break
    sleep 0.1
  done
  stop_pid "$TCPDUMP_PID" INT
  TCPDUMP_PID=
  cat "$file.log" >&2
  return 1
}
capture_stop() { # file
  stop_pid "$TCPDUMP_PID" INT
  TCPDUMP_PID=
  grep -E 'captured|dropped' "$1.log" >&2 || true
  if grep -qE '^[1-9][0-9]* packets dropped by kernel' "$1.log"; then
    echo "provision-load: WARNING: tcpdump dropped packets; the attribution may miss requests" >&2
  fi
}

# ------------------------------------------------------------------ runs
ATTEMPT=1
measure() { # name traffic target mode rate connections [--captured] -- oha...
  local name=$1 traffic=$2 target=$3 mode=$4 rate=$5 connections=$6
  shift 6
  local extra=()
  [[ $1 == --captured ]] && { extra=(--captured --extra-pid "$TCPDUMP_PID"); shift; }
  "${HELPER[@]}" run --name "$name" --traffic "$traffic" --target "$target" --mode "$mode" \
    --rate "$rate" --connections "$connections" --attempt "$ATTEMPT" "${extra[@]}" \
    --sidecar-pid "$SIDECAR_PID" --standin-pid "$STANDIN_PID" --sidecar-log "$OUT/sidecar.log" \
    --timeout "$TIMEOUT" --wait-idle "$WAIT_IDLE" --out "$OUT" --results "$RESULTS" "$@"
}
# A measured run, repeated when other processes on the machine took CPU during it.
measured() { # name pcap-file-or-empty measure-arguments...
  local name=$1 pcap=$2 busy
  shift 2
  for ((ATTEMPT = 1; ; ATTEMPT++)); do
    if [[ -n $pcap ]]; then capture_start "$pcap" || return 1; fi
    if ! measure "$name" "$@"; then
      if [[ -n $pcap ]]; then capture_stop "$pcap"; fi
      die "the run $name failed"
    fi
    if [[ -n $pcap ]]; then capture_stop "$pcap"; fi
    busy=$("${HELPER[@]}" other-load --results "$RESULTS" --name "$name")
    if awk -v b="$busy" -v t="$BUSY_THRESHOLD" 'BEGIN { exit !(b > t) }' && ((ATTEMPT <= BUSY_RETRIES)); then
      echo "provision-load: other processes used $busy cores during $name; running it again" >&2
      continue
    fi
    ATTEMPT=1
    return 0
  done
}
RATE_ARGS=(-q "$RATE" --latency-correction -c "$RATE_CONNECTIONS")
MAX_ARGS=(-c "$MAX_CONNECTIONS")

for traffic in unchanged updated; do
  lines=$OUT/$traffic.lines
  POST=(-m POST -T application/json -H "Authorization: Bearer $SECRET" -Z "$lines" "$SIDECAR_URL/v1/provision")
  say "$traffic traffic"
  measure "warmup-$traffic" "$traffic" sidecar warmup "$RATE" "$RATE_CONNECTIONS" -- \
    oha -z "${WARMUP}s" -w "${RATE_ARGS[@]}" "${POST[@]}"
  measured "$traffic-rate" "" "$traffic" sidecar rate "$RATE" "$RATE_CONNECTIONS" -- \
    oha -z "${DURATION}s" -w "${RATE_ARGS[@]}" "${POST[@]}"
  "${HELPER[@]}" sample --name "$traffic" --url "$SIDECAR_URL/v1/provision" --secret "$SECRET" \
    --lines "$lines" --n 100 --results "$RESULTS"
  measured "$traffic-max" "" "$traffic" sidecar max 0 "$MAX_CONNECTIONS" -- \
    oha -z "${DURATION}s" -w "${MAX_ARGS[@]}" "${POST[@]}"
  if [[ $CAPTURE != no ]] && command -v tcpdump >/dev/null; then
    pcap=$OUT/$traffic-rate-captured.pcap
    if measured "$traffic-rate-captured" "$pcap" "$traffic" sidecar rate "$RATE" "$RATE_CONNECTIONS" --captured -- \
      oha -z "${DURATION}s" -w "${RATE_ARGS[@]}" "${POST[@]}"; then
      "${HELPER[@]}" pcap --name "$traffic-rate-captured" --file "$pcap" --sidecar-port "$SIDECAR_PORT" \
        --standin-port "$STANDIN_PORT" --ids "$OUT/ids.json" --results "$RESULTS"
      [[ -n ${KEEP_PCAP:-} ]] || rm -f "$pcap"
    elif [[ $CAPTURE == yes ]]; then
      die "tcpdump could not capture on lo"
    fi
  fi
done

say "Kratos calls alone: the same calls straight to the stand-in"
GET=(-m GET --urls-from-file "$OUT/kratos-get.urls")
PATCH=(-m PATCH -T application/json -Z "$OUT/kratos-patch.lines" --urls-from-file "$OUT/kratos-patch.urls")
measure warmup-kratos unchanged standin warmup "$RATE" "$RATE_CONNECTIONS" -- \
  oha -z "${WARMUP}s" -w "${RATE_ARGS[@]}" "${GET[@]}"
measured kratos-get-rate "" unchanged standin rate "$RATE" "$RATE_CONNECTIONS" -- \
  oha -z "${DURATION}s" -w "${RATE_ARGS[@]}" "${GET[@]}"
# updated = GET then PATCH: both streams at the same rate at once (the stand-in sees 2x RATE,
# as it does behind the sidecar); the two latencies are added.
measured kratos-get-patch-rate "" updated standin rate "$RATE" "$RATE_CONNECTIONS" -- \
  oha -z "${DURATION}s" -w "${RATE_ARGS[@]}" "${GET[@]}" --- \
  oha -z "${DURATION}s" -w "${RATE_ARGS[@]}" "${PATCH[@]}"

# ------------------------------------------------------------------ report
kill -0 "$SIDECAR_PID" 2>/dev/null || die "the sidecar exited during the runs (see $OUT/sidecar.log)"
kill -0 "$STANDIN_PID" 2>/dev/null || die "the stand-in exited during the runs (see $OUT/standin.log)"
say "results (also in $OUT/summary.md)"
"${HELPER[@]}" report --results "$RESULTS" --out "$OUT/summary.md"
