#!/usr/bin/env python3
"""Bounded abuse of a running kratos-jit (`kratos-jit serve --dev`, or any address).

    python3 bench/abuse.py --duration 20 --pid "$SERVER_PID"         # 20 s of mixed abuse
    python3 bench/abuse.py --requests 1000000 --pid "$SERVER_PID"    # a million requests

Sends, as fast as --connections keep-alive connections allow, a weighted mix of requests to
POST /v1/provision and the web hooks: valid logins, new users, malformed JSON, bad secrets, empty
and oversized bodies, new Ory-Webhook-Trigger-IDs on every call, empty and huge trigger ids, and
Content-Length headers that promise more than is sent. Alongside, it holds --idle connections
open doing nothing and --slow connections sending a body at one byte a second, and probes
GET /health/alive every second on a fresh connection.

It reports the requests sent, the answers by kind and status, and, given --pid, the resident
memory (VmRSS) of that process and of its children (the mapper workers) and the answers per
second, sampled every --sample-every seconds. --only KIND,... sends some kinds alone (to see
what one of them costs). It exits 1 if /health/alive stops answering, the server process goes
away, an ordinary request is not answered within --timeout or its connection closes without an
answer, or any answer is a 5xx other than 503; 2 if the server cannot be reached at the start.
Python 3 standard library only.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What `serve --dev` accepts (src/serve.rs).
DEV_API_SECRET = "kratos-jit-dev-secret"
DEV_HOOK_SECRET = "kratos-jit-dev-hook-secret"
BODY_LIMIT = 65536
# Requests a server may refuse by closing the connection, without an answer.
CLOSE_ALLOWED = {"provision-oversized", "provision-lying-length", "hook-huge-trigger"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4480)
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--requests", type=int, help="stop after this many generated requests")
    p.add_argument("--connections", type=int, default=32, help="concurrent request loops")
    p.add_argument("--idle", type=int, default=64, help="connections held open doing nothing")
    p.add_argument("--slow", type=int, default=4, help="connections sending a body at 1 byte/s")
    p.add_argument("--pid", type=int, help="the server's pid, for memory samples")
    p.add_argument("--sample-every", type=float, default=1.0, help="seconds between samples")
    p.add_argument("--timeout", type=float, default=10.0, help="per request and per probe")
    p.add_argument("--api-secret", default=os.environ.get("ABUSE_API_SECRET", DEV_API_SECRET),
                   help="a trusted API secret (default: serve --dev's)")
    p.add_argument("--hook-secret", default=os.environ.get("ABUSE_HOOK_SECRET", DEV_HOOK_SECRET),
                   help="the web hook secret (default: serve --dev's)")
    p.add_argument("--only", help="comma-separated request kinds to send (default: the whole mix)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.duration is None and args.requests is None:
        args.duration = 20.0
    return args


# ----------------------------------------------------------------------------- requests

def load_json(relative):
    return json.loads((REPO / relative).read_text())


class Traffic:
    """Builds the requests of each kind; `pick()` draws a kind by weight."""

    def __init__(self, args, rng):
        self.args = args
        self.rng = rng
        self.logins = [load_json(f"dev/requests/{n}.json") for n in ("first-login", "demoted", "foreign-domain")]
        claims = load_json("mappers/okta-acme/tests/admin.claims.json")
        self.claims = claims
        self.serial = 0
        # What the shipped registration template sends for these claims (deploy/kratos/hooks/),
        # with the claims carried as the Kratos-side mapper carries them (src/carrier.rs).
        self.registration = {
            "flow_id": "9f2b1a77-0c4e-4d3a-9b8e-1f2e3d4c5b6a",
            "identity": {
                "traits": {"email": claims["email"], "tenant_id": "tenant-acme", "role": "admin"},
                "metadata_public": {"kratos_jit_claims": {"provider": "okta-acme", "claims": claims}},
                "verifiable_addresses": [],
            },
        }
        # A login of a provider kratos-jit does not manage: answered 204 without any Kratos call.
        self.login = {
            "flow_id": "9f2b1a77-0c4e-4d3a-9b8e-1f2e3d4c5b6a",
            "identity": {"id": "6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f", "traits": {}, "metadata_public": None},
            "session": {"authenticated_at": "2026-11-23T11:30:01Z",
                        "authentication_methods": [{"method": "password"}]},
        }
        self.kinds = [
            # (name, weight, builder)
            ("provision-valid", 20, self.provision_valid),
            ("provision-new-user", 2, self.provision_new_user),
            ("provision-malformed", 10, self.provision_malformed),
            ("provision-bad-secret", 5, self.provision_bad_secret),
            ("provision-empty", 2, self.provision_empty),
            ("provision-oversized", 2, self.provision_oversized),
            ("provision-lying-length", 1, self.provision_lying_length),
            ("hook-registration-new-trigger", 20, self.hook_registration),
            ("hook-login-new-trigger", 5, self.hook_login),
            ("hook-huge-trigger", 3, self.hook_huge_trigger),
            ("hook-empty-trigger", 2, self.hook_empty_trigger),
            ("hook-bad-secret", 3, self.hook_bad_secret),
            ("hook-malformed", 5, self.hook_malformed),
            ("health", 2, self.health),
        ]
        if args.only:
            wanted = set(args.only.split(","))
            unknown = wanted - {name for name, _, _ in self.kinds}
            if unknown:
                sys.exit(f"abuse: unknown request kinds {sorted(unknown)}; known: "
                         + ", ".join(name for name, _, _ in self.kinds))
            self.kinds = [k for k in self.kinds if k[0] in wanted]
        self.weights = [w for _, w, _ in self.kinds]

    def pick(self):
        name, _, build = self.rng.choices(self.kinds, weights=self.weights)[0]
        return name, build()

    def next_id(self):
        self.serial += 1
        return f"abuse-{os.getpid()}-{self.serial}"

    # Each builder returns (request bytes, how): how is "keep" (a normal request on the
    # keep-alive connection), "close" (the connection ends after the answer) or "lie" (the
    # body is shorter than promised: wait briefly for an answer, then drop the connection).

    def request(self, method, path, headers, body, how="keep", length=None):
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.args.host}:{self.args.port}"]
        head += [f"{k}: {v}" for k, v in headers]
        head.append(f"Content-Length: {len(body) if length is None else length}")
        if how != "keep":
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        return data, how

    def provision(self, body, secret=None, how="keep", length=None, content_type=True):
        headers = []
        if secret is None:
            secret = self.args.api_secret
        if secret is not False:
            headers.append(("Authorization", f"Bearer {secret}"))
        if content_type:
            headers.append(("Content-Type", "application/json"))
        return self.request("POST", "/v1/provision", headers, body, how, length)

    def provision_valid(self):
        return self.provision(json.dumps(self.rng.choice(self.logins)).encode())

    def provision_new_user(self):
        body = json.loads(json.dumps(self.logins[0]))
        sub = self.next_id()
        body["claims"]["sub"] = sub
        body["claims"]["raw_claims"]["sub"] = sub
        email = f"{sub}@acme.example"
        body["claims"]["email"] = email
        body["claims"]["raw_claims"]["email"] = email
        body["claims"]["raw_claims"]["raw"]["email"] = email
        return self.provision(json.dumps(body).encode())

    def provision_malformed(self):
        valid = json.dumps(self.rng.choice(self.logins)).encode()
        choice = self.rng.randrange(7)
        if choice == 0:
            body = valid[: self.rng.randrange(len(valid))]
        elif choice == 1:
            body = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 200)))
        elif choice == 2:
            body = valid.replace(b"1795000000", b"1e400")
        elif choice == 3:
            body = valid.replace(b'"ada@acme.example"', b'"ada\\ud800@acme.example"', 1)
        elif choice == 4:
            body = b"[" * 5000 + b"]" * 5000
        elif choice == 5:
            body = valid.replace(b'"provider"', b'"provider": 5, "provider"', 1)
        else:
            body = b'{"provider": "okta-acme", "claims": {"sub": ' + b'"' + b"s" * 42000 + b'", "iss": "x"}}'
        return self.provision(body)

    def provision_bad_secret(self):
        body = json.dumps(self.logins[0]).encode()
        secret = self.rng.choice([False, "wrong-secret-0123456789", "", "x" * 5000])
        return self.provision(body, secret=secret)

    def provision_empty(self):
        return self.provision(b"", content_type=self.rng.random() < 0.5)

    def provision_oversized(self):
        return self.provision(b'{"provider": "' + b"x" * (BODY_LIMIT + 1) + b'"}', how="close")

    def provision_lying_length(self):
        body = json.dumps(self.logins[0]).encode()
        return self.provision(body, how="lie", length=self.rng.choice([len(body) + 1, 10**9, 2**62]))

    def hook(self, flow, body, trigger, secret=None, how="keep"):
        if secret is None:
            secret = self.args.hook_secret
        headers = [("Authorization", f"Bearer {secret}"),
                   ("Content-Type", "application/json")]
        if trigger is not None:
            headers.append(("Ory-Webhook-Trigger-ID", trigger))
        return self.request("POST", f"/v1/hooks/{flow}", headers, body, how)

    def hook_registration(self):
        return self.hook("registration", json.dumps(self.registration).encode(), self.next_id())

    def hook_login(self):
        return self.hook("login", json.dumps(self.login).encode(), self.next_id())

    def hook_huge_trigger(self):
        size = self.rng.choice([1024, 8 * 1024, 30 * 1024, 100 * 1024])
        trigger = self.next_id() + "-" + "t" * size
        return self.hook("registration", json.dumps(self.registration).encode(), trigger, how="close")

    def hook_empty_trigger(self):
        return self.hook("registration", json.dumps(self.registration).encode(), "")

    def hook_bad_secret(self):
        return self.hook("registration", json.dumps(self.registration).encode(), self.next_id(),
                         secret="wrong-hook-secret-0123456789")

    def hook_malformed(self):
        valid = json.dumps(self.registration).encode()
        choice = self.rng.randrange(4)
        if choice == 0:
            body = valid[: self.rng.randrange(len(valid))]
        elif choice == 1:
            body = valid.replace(b"1795000000", b"1e400")
        elif choice == 2:
            body = valid.replace(b'"iat": 1795000000', b'"iat": ' + b"[" * 3000 + b"]" * 3000, 1)
        else:
            body = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 200)))
        flow = self.rng.choice(["registration", "login"])
        return self.hook(flow, body, self.next_id())

    def health(self):
        return self.request("GET", "/health/alive", [], b"")


# ----------------------------------------------------------------------------- HTTP

class Closed(Exception):
    pass


async def read_answer(reader):
    """The status of one HTTP/1.1 response (its body read by Content-Length or chunks)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    keep = headers.get("connection", "").lower() != "close"
    return status, keep


class Run:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.traffic = Traffic(args, self.rng)
        self.answers = Counter()      # (kind, status or outcome) -> count
        self.sent = 0
        self.answered = 0
        self.failures = []            # reasons to exit 1
        self.samples = []             # (seconds, answered, rss of the server, [rss of each child])
        self.started = time.monotonic()
        self.stop = asyncio.Event()
        self.side = Counter()         # outcomes of the idle and slow connections, probes

    def elapsed(self):
        return time.monotonic() - self.started

    def fail(self, reason):
        if len(self.failures) < 20:
            self.failures.append(f"{self.elapsed():7.1f}s {reason}")
        self.stop.set()

    def budget_left(self):
        return self.args.requests is None or self.sent < self.args.requests

    async def connect(self):
        return await asyncio.wait_for(
            asyncio.open_connection(self.args.host, self.args.port), self.args.timeout)

    async def loop(self):
        """One keep-alive connection sending requests until the run stops."""
        conn = None
        while not self.stop.is_set() and self.budget_left():
            kind, (data, how) = self.traffic.pick()
            self.sent += 1
            # A reused connection the server closed just before this request is not a refusal
            # of it: the request is sent once more on a fresh connection.
            for attempt in range(2):
                fresh = conn is None or how != "keep"
                try:
                    if fresh:
                        if conn is not None:
                            conn[1].close()
                        conn = await self.connect()
                    conn = await self.exchange(kind, data, how, conn)
                    break
                except asyncio.TimeoutError:
                    self.answers[(kind, "timeout")] += 1
                    # An honest request unanswered within the timeout is a hang.
                    self.fail(f"{kind}: no answer within {self.args.timeout:g} s")
                    conn = None
                    break
                except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
                    conn = None
                    if not fresh and attempt == 0:
                        continue
                    self.answers[(kind, f"closed:{type(e).__name__}")] += 1
                    # The server may close on a request it refuses early (a body or headers
                    # over its limits); on any other request, closing without an answer is
                    # what a crashing handler looks like.
                    if kind not in CLOSE_ALLOWED:
                        self.fail(f"{kind}: the connection closed without an answer")
                    break
        if conn is not None:
            conn[1].close()

    async def exchange(self, kind, data, how, conn):
        """Sends one request on `conn` and counts its answer; the connection to use next."""
        reader, writer = conn
        writer.write(data)
        if how == "lie":
            # The server may wait for the promised bytes: give it a moment, then drop.
            try:
                status, _ = await asyncio.wait_for(read_answer(reader), 0.5)
                self.count(kind, status)
            except asyncio.TimeoutError:
                self.answers[(kind, "waited")] += 1
            writer.close()
            return None
        await writer.drain()
        status, keep = await asyncio.wait_for(read_answer(reader), self.args.timeout)
        self.count(kind, status)
        if not keep or how != "keep":
            writer.close()
            return None
        return conn

    def count(self, kind, status):
        self.answered += 1
        self.answers[(kind, status)] += 1
        if status >= 500 and status != 503:
            self.fail(f"{kind}: answered {status}")

    async def idle(self):
        """A connection that never sends a byte, reopened when the server closes it."""
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect()
            except (OSError, asyncio.TimeoutError):
                self.side["idle: refused"] += 1
                await asyncio.sleep(1)
                continue
            self.side["idle: opened"] += 1
            try:
                await asyncio.wait_for(self.until_stop_or_eof(reader), None)
                if not self.stop.is_set():
                    self.side["idle: closed by the server"] += 1
            finally:
                writer.close()

    async def until_stop_or_eof(self, reader):
        read = asyncio.ensure_future(reader.read(1))
        stop = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait([read, stop], return_when=asyncio.FIRST_COMPLETED)
        for task in (read, stop):
            task.cancel()

    async def slow(self):
        """A valid provisioning request whose body arrives one byte a second."""
        data, _ = self.traffic.provision(json.dumps(self.traffic.logins[0]).encode(), how="close")
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect()
            except (OSError, asyncio.TimeoutError):
                self.side["slow: refused"] += 1
                await asyncio.sleep(1)
                continue
            self.side["slow: opened"] += 1
            split = data.index(b"\r\n\r\n") + 4
            try:
                writer.write(data[:split])
                for i in range(split, len(data)):
                    if self.stop.is_set():
                        break
                    writer.write(data[i:i + 1])
                    await writer.drain()
                    try:
                        # An answer before the whole body is the server giving up on it.
                        status, _ = await asyncio.wait_for(read_answer(reader), 1.0)
                        self.side[f"slow: answered {status} after {i - split + 1} body bytes"] += 1
                        break
                    except asyncio.TimeoutError:
                        pass
                else:
                    status, _ = await asyncio.wait_for(read_answer(reader), self.args.timeout)
                    self.side[f"slow: answered {status} after the whole body"] += 1
            except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError) as e:
                self.side[f"slow: closed ({type(e).__name__})"] += 1
            finally:
                writer.close()

    async def probe(self):
        """GET /health/alive on a fresh connection every second."""
        data, _ = self.traffic.health()
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect()
                writer.write(data)
                status, _ = await asyncio.wait_for(read_answer(reader), self.args.timeout)
                writer.close()
                self.side[f"health probe: {status}"] += 1
                if status != 200:
                    self.fail(f"/health/alive answered {status}")
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                self.side["health probe: no answer"] += 1
                self.fail(f"/health/alive did not answer ({type(e).__name__})")
            try:
                await asyncio.wait_for(self.stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    async def sample(self):
        while not self.stop.is_set():
            if self.args.pid:
                server = rss_kib(self.args.pid)
                if server is None:
                    self.fail(f"the server process {self.args.pid} is gone")
                    return
                children = [rss_kib(c) or 0 for c in children_of(self.args.pid)]
                self.samples.append((self.elapsed(), self.answered, server, children))
            try:
                await asyncio.wait_for(self.stop.wait(), self.args.sample_every)
            except asyncio.TimeoutError:
                pass

    async def clock(self):
        if self.args.duration is None:
            return
        try:
            await asyncio.wait_for(self.stop.wait(), self.args.duration)
        except asyncio.TimeoutError:
            self.stop.set()

    async def main(self):
        try:
            _, writer = await self.connect()
            writer.close()
        except (OSError, asyncio.TimeoutError) as e:
            print(f"abuse: nothing answers on {self.args.host}:{self.args.port} ({e})", file=sys.stderr)
            return 2
        side = [self.probe(), self.sample(), self.clock()]
        side += [self.idle() for _ in range(self.args.idle)]
        side += [self.slow() for _ in range(self.args.slow)]
        side_tasks = [asyncio.ensure_future(s) for s in side]
        await asyncio.gather(*(self.loop() for _ in range(self.args.connections)))
        self.stop.set()
        await asyncio.wait(side_tasks, timeout=self.args.timeout + 2)
        for task in side_tasks:
            task.cancel()
        # After the run: is the server still there?
        self.stop.clear()
        try:
            reader, writer = await self.connect()
            writer.write(self.traffic.health()[0])
            status, _ = await asyncio.wait_for(read_answer(reader), self.args.timeout)
            writer.close()
            if status != 200:
                self.fail(f"after the run /health/alive answered {status}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            self.fail(f"after the run /health/alive did not answer ({type(e).__name__})")
        self.report()
        return 1 if self.failures else 0

    def report(self):
        took = self.elapsed()
        print(f"abuse: {self.sent} requests sent, {self.answered} answered in {took:.1f} s "
              f"({self.answered / took:.0f}/s), {self.args.connections} connections, "
              f"{self.args.idle} idle, {self.args.slow} slow")
        statuses = Counter()
        for (_, status), n in self.answers.items():
            statuses[status] += n
        print("answers by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items(), key=str)))
        print(f"{'kind':<32} answers")
        for kind, _, _ in self.traffic.kinds:
            row = {s: n for (k, s), n in self.answers.items() if k == kind}
            if row:
                print(f"{kind:<32} " + ", ".join(f"{s}: {n}" for s, n in sorted(row.items(), key=str)))
        for name, n in sorted(self.side.items()):
            print(f"  {name}: {n}")
        if self.samples:
            print("memory (VmRSS, MiB) of the server and its mapper workers; answers/s since the row before")
            step = max(1, len(self.samples) // 12)
            shown = self.samples[::step]
            if shown[-1] is not self.samples[-1]:
                shown.append(self.samples[-1])
            previous = (0.0, 0)
            for t, answered, server, children in shown:
                rate = (answered - previous[1]) / max(t - previous[0], 1e-9)
                previous = (t, answered)
                workers = " ".join(f"{c / 1024:.1f}" for c in children)
                print(f"  {t:7.1f}s  {rate:7.0f}/s  server {server / 1024:7.1f}  workers [{workers}]  "
                      f"total {(server + sum(children)) / 1024:7.1f}")
            totals = [s + sum(c) for _, _, s, c in self.samples]
            print(f"  total: first {totals[0] / 1024:.1f}, peak {max(totals) / 1024:.1f}, "
                  f"last {totals[-1] / 1024:.1f} MiB")
        if self.failures:
            print("FAILED:")
            for f in self.failures:
                print(f"  {f}")
        else:
            print("ok: no 5xx other than 503, /health/alive answered throughout")


# ----------------------------------------------------------------------------- /proc

def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0  # a zombie has no VmRSS
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def children_of(pid):
    """Direct children of `pid` (the mapper workers of a server)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return sorted(set(found))


def main():
    args = parse_args()
    sys.exit(asyncio.run(Run(args).main()))


if __name__ == "__main__":
    main()
