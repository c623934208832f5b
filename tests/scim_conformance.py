#!/usr/bin/env python3
"""SCIM 2.0 conformance: scim2-tester against `kratos-jit serve` and the Kratos stand-in.

Starts `kratos-jit standin` and `kratos-jit serve` on free loopback ports, the providers being
tests/fixtures/scim-conformance/ (one provider, `conformance`, whose SCIM mapper accepts
scim2-tester's random e-mails: docs/scim.md §6.2) and the SCIM store `sqlite::memory:`. Then runs
scim2-tester's `check_server` for discovery, User and Group, prints every result and a count per
status, and exits 1 when any check ends ERROR or CRITICAL (a MUST of RFC 7643/7644 broken, or a
fundamental protocol violation); DEVIATION and SKIPPED are reported, not failures.

Needs scim2-tester and scim2-client's HTTP engine (`pip install "scim2-tester[httpx2]==0.5.2"`,
in a venv: .ci/run does it). Usage:

    python tests/scim_conformance.py [--bin target/debug/kratos-jit] [--verbose]
"""

import argparse
import collections
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ROOT / "tests" / "fixtures" / "scim-conformance"
PROVIDER = "conformance"
FAILING = (Status.ERROR, Status.CRITICAL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{process.args[1]} exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer within 60 s:\n{log.read_text()}")


def line(result) -> str:
    where = f" [{result.resource_type}]" if result.resource_type else ""
    reason = f": {result.reason}" if result.reason else ""
    return f"{result.status.name:<10} {result.title}{where}{reason}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    parser.add_argument("--bin", type=Path, default=target / "debug" / "kratos-jit")
    parser.add_argument("--verbose", action="store_true", help="also print each failing check's data")
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} is not an executable; build it first (cargo build)")

    secret = secrets.token_urlsafe(32)
    processes = []
    with tempfile.TemporaryDirectory(prefix="kjit-scim-conformance.") as tmp:
        logs = Path(tmp)
        try:
            kratos_port = free_port()
            standin_log = logs / "standin.log"
            standin = subprocess.Popen(
                [args.bin, "standin", "--listen", f"127.0.0.1:{kratos_port}"],
                stdout=standin_log.open("w"),
                stderr=subprocess.STDOUT,
            )
            processes.append(standin)
            wait_until_up(f"http://127.0.0.1:{kratos_port}/health/alive", standin, standin_log)

            port = free_port()
            env = dict(
                os.environ,
                KRATOS_JIT__LISTEN=f"127.0.0.1:{port}",
                KRATOS_JIT__PROVIDERS=str(PROVIDERS),
                KRATOS_JIT__KRATOS__ADMIN_URL=f"http://127.0.0.1:{kratos_port}",
                KRATOS_JIT__API__TRUSTED_SECRETS=secrets.token_urlsafe(32),
                KRATOS_JIT__HOOKS__SECRETS=secrets.token_urlsafe(32),
                KRATOS_JIT__SCIM__DATABASE_URL="sqlite::memory:",
                KRATOS_JIT_SCIM_CONFORMANCE_SECRET=secret,
                KRATOS_JIT_LOG=os.environ.get("KRATOS_JIT_LOG", "warn"),
            )
            serve_log = logs / "serve.log"
            serve = subprocess.Popen(
                [args.bin, "serve"], env=env, stdout=serve_log.open("w"), stderr=subprocess.STDOUT
            )
            processes.append(serve)
            wait_until_up(f"http://127.0.0.1:{port}/health/alive", serve, serve_log)

            http = httpx2.Client(
                base_url=f"http://127.0.0.1:{port}/scim/v2/{PROVIDER}",
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            )
            results = check_server(SyncSCIMClient(http), resource_types=["User", "Group"])
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()

        counts = collections.Counter(result.status for result in results)
        for result in results:
            print(line(result))
            if args.verbose and result.status in FAILING and result.data is not None:
                print(f"           data: {result.data!r}")
        print()
        print("summary: " + ", ".join(f"{status.name} {counts[status]}" for status in Status))
        for status in (Status.DEVIATION, Status.SKIPPED):
            for result in results:
                if result.status == status:
                    print(f"{status.name.lower()}: {result.title} [{result.resource_type or '-'}]")
        failing = sum(counts[status] for status in FAILING)
        if failing:
            print(f"\n{failing} check(s) ERROR or CRITICAL; serve's log:", file=sys.stderr)
            print(serve_log.read_text()[-20000:], file=sys.stderr)
            return 1
        if not results:
            print("scim2-tester returned no result", file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
