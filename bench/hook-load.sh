#!/usr/bin/env bash
# Load benchmark of Kratos's registration web hook, `POST /v1/hooks/registration`: oha on
# loopback -> kratos-jit serve -> the in-memory Kratos stand-in (`kratos-jit standin`, its own
# process), which answers the hook's one call: who already holds the e-mail (nobody here).
#
#   bash bench/hook-load.sh      # from the repository root; prints one line per run
#
# The body is what Kratos sends for okta-acme/admin.json: the shipped body template over the
# identity Kratos builds with the shipped Kratos-side mapper (deploy/kratos/mappers/okta-acme.jsonnet),
# evaluated here with go-jsonnet, the engine Kratos embeds. No Ory-Webhook-Trigger-ID is sent,
# so every request runs the mapper and the policy (no answer is replayed from the retry cache).
# Settings: DURATION=20 (s per run), RATE=10000 (req/s of the fixed-rate run), CONNECTIONS=64,
# MAPPER_WORKERS=4 (the sidecar's default on 2 cores).
set -euo pipefail
[[ -f Cargo.toml && -d mappers/okta-acme ]] || { echo "run me from the repository root" >&2; exit 1; }
DURATION=${DURATION:-20}
RATE=${RATE:-10000}
CONNECTIONS=${CONNECTIONS:-64}
MAPPER_WORKERS=${MAPPER_WORKERS:-4}
OHA_VERSION=1.16.0
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v oha >/dev/null || cargo install oha --version "$OHA_VERSION" --locked
python3 -c 'import _gojsonnet' 2>/dev/null || python3 -m pip install --quiet gojsonnet==0.21.0
cargo build --release --locked --quiet
out=$(mktemp -d)
secret=bench-hook-secret-0123456789

# The request body, exactly as Kratos would send it.
python3 - "$out/body.json" <<'PY'
import json, sys, _gojsonnet
claims = open("mappers/okta-acme/tests/admin.claims.json").read()
carrier = open("deploy/kratos/mappers/okta-acme.jsonnet").read()
mapped = json.loads(_gojsonnet.evaluate_snippet("carrier", carrier, ext_codes={"claims": claims}))["identity"]
ctx = json.load(open("tests/fixtures/kratos-webhooks/registration-oidc-ctx.json"))
ctx["identity"]["traits"] = mapped["traits"]
ctx["identity"]["metadata_public"] = mapped["metadata_public"]
template = open("deploy/kratos/hooks/registration.jsonnet").read()
body = _gojsonnet.evaluate_snippet("registration", template, tla_codes={"ctx": json.dumps(ctx)})
open(sys.argv[1], "w").write(json.dumps(json.loads(body)))
PY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kport=$(free_port)
target/release/kratos-jit standin --listen 127.0.0.1:$kport >"$out/standin.log" 2>&1 &
standin=$!
port=$(free_port)
KRATOS_JIT__LISTEN=127.0.0.1:$port KRATOS_JIT__HOOKS__SECRETS=$secret \
  KRATOS_JIT__KRATOS__ADMIN_URL=http://127.0.0.1:$kport \
  KRATOS_JIT__MAPPER__WORKERS=$MAPPER_WORKERS KRATOS_JIT_LOG=warn \
  target/release/kratos-jit serve >"$out/serve.log" 2>&1 &
serve=$!
trap 'kill $serve $standin 2>/dev/null; wait $serve $standin 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/health/alive" >/dev/null 2>&1 && break; sleep 0.1; done

url=http://127.0.0.1:$port/v1/hooks/registration
check=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $secret" -H 'Content-Type: application/json' --data-binary @"$out/body.json" "$url")
[[ $check == 200 ]] || { echo "the hook answered $check, not 200" >&2; cat "$out/serve.log" >&2; exit 1; }

run() { # name, extra oha flags...
  local name=$1; shift
  oha -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json -m POST \
    -H "Authorization: Bearer $secret" -T application/json -D "$out/body.json" "$@" "$url" >"$out/$name.json"
  python3 - "$name" "$out/$name.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if k != "200")
print(f"{name:>12}: {s['requestsPerSec']:8.0f} req/s  p50 {p['p50']*1e3:6.2f} ms  p99 {p['p99']*1e3:6.2f} ms  "
      f"non-200 {bad}  errors {sum(r.get('errorDistribution', {}).values())}")
PY
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run "max"
sleep 5 # let the open-throttle run's connections and queues drain
run "rate-${RATE}" -q "$RATE" --latency-correction
