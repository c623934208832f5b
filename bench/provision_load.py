#!/usr/bin/env python3
"""Helpers of bench/provision-load.sh (standard library only).

Subcommands:
  free-ports N                 print N free loopback TCP ports
  wait-http URL --pid PID ...  wait until URL answers 200 (and the processes are alive)
  gen                          request bodies, URL lists and patch bodies for oha
  seed                         provision every subject once; records subject -> identity id
  kratos-files                 the stand-in URL lists and PATCH bodies (after seed)
  sample                       send a few requests, tally the responses' `action`
  run                          run one or more oha processes as one measured run, with
                               CPU / load / memory accounting and the sidecar's logged actions
  pcap                         per-request attribution of a captured run (sidecar vs Kratos)
  report                       print the tables
"""

import argparse
import json
import os
import random
import re
import resource
import shlex
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict

PROVIDER = "okta-acme"
DOMAIN = "acme.example"


# --------------------------------------------------------------------------- small helpers


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(-(-p * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def load_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def save_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def post_json(url, body_bytes, secret, timeout=10):
    request = urllib.request.Request(
        url,
        data=body_bytes,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw.decode(errors="replace")


# --------------------------------------------------------------------------- free-ports, wait-http


def cmd_free_ports(args):
    sockets = []
    for _ in range(args.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in sockets))
    for s in sockets:
        s.close()


def cmd_wait_http(args):
    deadline = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < deadline:
        for pid in args.pid:
            if not os.path.exists(f"/proc/{pid}") or _is_zombie(pid):
                sys.exit(f"process {pid} exited while waiting for {args.url}")
        try:
            with urllib.request.urlopen(args.url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last = str(error)
        time.sleep(0.2)
    sys.exit(f"{args.url} did not answer 200 within {args.timeout}s (last: {last})")


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------- gen


def subject(i):
    return f"user{i:04d}@{DOMAIN}"


def claims_for(base, i, last_name):
    """The fixture's claims with sub / e-mail / last name varied (every place the IdP sends them)."""
    c = json.loads(json.dumps(base))
    sub = subject(i)
    c["sub"] = sub
    c["email"] = sub
    raw_claims = c["raw_claims"]
    raw_claims["sub"] = sub
    raw_claims["id"] = sub
    raw_claims["email"] = sub
    raw_claims["lastName"] = last_name
    raw_claims["raw"]["email"] = sub
    raw_claims["raw"]["lastName"] = last_name
    return c


def body(claims):
    return json.dumps({"provider": PROVIDER, "claims": claims}, separators=(",", ":"))


def cmd_gen(args):
    with open(args.claims) as f:
        base = json.load(f)
    seed_last = base["raw_claims"]["lastName"]
    out = args.out
    # unchanged: exactly the seeded claims, one line per subject.
    with open(os.path.join(out, "unchanged.lines"), "w") as f:
        for i in range(args.subjects):
            f.write(body(claims_for(base, i, seed_last)) + "\n")
    # updated: per subject, VARIANTS last names, none equal to the seeded one. oha picks a line
    # uniformly at random for each request, so a request is a no-op only when it draws the very
    # variant its subject already holds: probability 1/VARIANTS (counted exactly from the log).
    with open(os.path.join(out, "updated.lines"), "w") as f:
        for i in range(args.subjects):
            for v in range(args.variants):
                f.write(body(claims_for(base, i, f"{seed_last}-{v:04d}")) + "\n")
    save_json(
        os.path.join(out, "subjects.json"),
        {"subjects": [subject(i) for i in range(args.subjects)], "variants": args.variants},
    )


# --------------------------------------------------------------------------- seed, kratos-files, sample


def cmd_seed(args):
    ids = {}
    actions = Counter()
    with open(args.lines) as f:
        lines = [line.strip() for line in f if line.strip()]
    for line in lines:
        status, answer = post_json(args.url, line.encode(), args.secret)
        if status != 200 or not isinstance(answer, dict):
            sys.exit(f"seed: HTTP {status}: {answer}")
        actions[answer["action"]] += 1
        ids[json.loads(line)["claims"]["sub"]] = answer["identity_id"]
    save_json(args.ids, ids)
    print(f"seeded {len(ids)} subjects: {dict(actions)}")
    if args.expect and set(actions) != {args.expect}:
        sys.exit(f"seed: expected every action to be {args.expect!r}, got {dict(actions)}")


def cmd_kratos_files(args):
    ids = load_json(args.ids)
    with open(args.mapper, "rb") as f:
        import hashlib

        mapper_sha = hashlib.sha256(f.read()).hexdigest()
    base = args.standin.rstrip("/")
    out = args.out
    # GET exactly as the sidecar's adapter builds it (form-urlencoded query, page_size=2).
    with open(os.path.join(out, "kratos-get.urls"), "w") as f:
        for sub in ids:
            query = urllib.parse.urlencode(
                [("credentials_identifier", f"{PROVIDER}:{sub}"), ("page_size", "2")]
            )
            f.write(f"{base}/admin/identities?{query}\n")
    with open(os.path.join(out, "kratos-patch.urls"), "w") as f:
        for identity_id in ids.values():
            f.write(f"{base}/admin/identities/{identity_id}\n")
    # The two operations the sidecar sends for a changed last name: the trait, then provenance.
    # oha draws URL and body independently, so an identity may get another subject's
    # provenance; the stand-in's work per PATCH is the same.
    with open(os.path.join(out, "kratos-patch.lines"), "w") as f:
        for i, sub in enumerate(ids):
            for v in range(4):
                ops = [
                    {"op": "add", "path": "/traits/last_name", "value": f"Lovelace-k{v}{i}"},
                    {
                        "op": "add",
                        "path": "/metadata_admin/kratos_jit",
                        "value": {
                            "provider": PROVIDER,
                            "subject": sub,
                            "synced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "mapper_sha256": mapper_sha,
                        },
                    },
                ]
                f.write(json.dumps(ops, separators=(",", ":")) + "\n")


def cmd_sample(args):
    with open(args.lines) as f:
        lines = [line.strip() for line in f if line.strip()]
    rng = random.Random(args.seed)
    actions = Counter()
    statuses = Counter()
    for _ in range(args.n):
        status, answer = post_json(args.url, rng.choice(lines).encode(), args.secret)
        statuses[status] += 1
        actions[answer.get("action") if isinstance(answer, dict) else None] += 1
    results = load_json(args.results, {"runs": []})
    results.setdefault("samples", {})[args.name] = {
        "n": args.n,
        "actions": dict(actions),
        "statuses": {str(k): v for k, v in statuses.items()},
    }
    save_json(args.results, results)
    print(f"sample {args.name}: {args.n} requests, actions {dict(actions)}, HTTP {dict(statuses)}")


# --------------------------------------------------------------------------- run (oha + accounting)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_cpu_busy():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal, user + nice + system + idle + iowait + irq + softirq + steal


def proc_cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])  # utime + stime
    except (OSError, IndexError):
        return 0


def proc_children(pid):
    children = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return children


def proc_tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += proc_children(p)
    return out


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_ticks(pid):
    return {p: proc_cpu_ticks(p) for p in proc_tree(pid)} if pid else {}


def pressure():
    """Pressure-stall totals (µs) of the whole machine, when the kernel has PSI."""
    out = {}
    for resource_name in ("cpu", "memory", "io"):
        try:
            with open(f"/proc/pressure/{resource_name}") as f:
                for line in f:
                    kind, *fields = line.split()
                    out[f"{resource_name}_{kind}"] = int(dict(x.split("=") for x in fields)["total"])
        except (OSError, KeyError, ValueError):
            pass
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def scan_log(path, start, end):
    """Actions of `Login processed.` and every WARN/ERROR line between two offsets."""
    actions = Counter()
    problems = Counter()
    examples = []
    if not path:
        return actions, problems, examples
    with open(path, "rb") as f:
        f.seek(start)
        chunk = f.read(end - start).decode(errors="replace")
    for line in chunk.splitlines():
        line = ANSI.sub("", line)
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            level = event.get("level", "")
            fields = event.get("fields", {})
            message = fields.get("message", "")
            if message == "Login processed.":
                actions[str(fields.get("action", "?")).lower()] += 1
            if level in ("WARN", "ERROR"):
                problems[f"{level} {message}"] += 1
                if len(examples) < 5:
                    examples.append(line[:400])
        else:
            m = re.search(r"action=(\w+)", line)
            if "Login processed." in line and m:
                actions[m.group(1).lower()] += 1
            if " WARN " in line or " ERROR " in line:
                problems[line[:120]] += 1
                if len(examples) < 5:
                    examples.append(line[:400])
    return actions, problems, examples


def summarize_oha(path):
    with open(path) as f:
        data = json.load(f)
    statuses = {str(k): v for k, v in data.get("statusCodeDistribution", {}).items()}
    errors = data.get("errorDistribution", {})
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    requests = sum(statuses.values()) + sum(errors.values())
    pct = data.get("latencyPercentiles", {})
    return {
        "requests": requests,
        "ok": ok,
        "non_2xx": requests - ok,
        "statuses": statuses,
        "errors": errors,
        "rps": data["summary"]["requestsPerSec"],
        "wall_s": data["summary"]["total"],
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p90_ms": (pct.get("p90") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "p99.9_ms": (pct.get("p99.9") or 0) * 1000,
        "max_ms": data["summary"]["slowest"] * 1000,
        "mean_ms": data["summary"]["average"] * 1000,
    }


def cmd_run(args):
    commands = []
    current = []
    for word in args.commands:
        if word == "---":
            commands.append(current)
            current = []
        else:
            current.append(word)
    if current:
        commands.append(current)
    if commands and commands[0] and commands[0][0] == "--":
        commands[0] = commands[0][1:]

    outputs = []
    full = []
    for i, command in enumerate(commands):
        out = os.path.join(args.out, f"{args.name}.{args.attempt}.{i}.oha.json")
        outputs.append(out)
        full.append(command + ["--no-tui", "--output-format", "json", "-o", out])

    waited = 0.0
    if args.wait_idle > 0:
        # Other users of this machine: start only once it is quiet (or give up and record it).
        started_wait = time.monotonic()
        while True:
            quiet = busy_cores(2)
            if quiet <= 0.25 or time.monotonic() - started_wait >= args.wait_idle:
                break
        waited = time.monotonic() - started_wait
    load_before = loadavg()
    psi0 = pressure()
    busy0, total0 = read_cpu_busy()
    side0 = tree_ticks(args.sidecar_pid)
    stand0 = tree_ticks(args.standin_pid)
    extra0 = {p: proc_cpu_ticks(p) for p in args.extra_pid}
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    log0 = log_size(args.sidecar_log)
    started = time.monotonic()
    with open(os.path.join(args.out, f"{args.name}.{args.attempt}.cmd"), "w") as f:
        for command in full:
            f.write(shlex.join(command) + "\n")
    processes = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=open(o + ".stderr", "w"))
        for c, o in zip(full, outputs)
    ]
    failed = []
    for p, c in zip(processes, full):
        try:
            rc = p.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
        if rc != 0:
            failed.append((shlex.join(c), rc))
    elapsed = time.monotonic() - started
    time.sleep(0.3)  # the last log lines
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, total1 = read_cpu_busy()
    side1 = tree_ticks(args.sidecar_pid)
    stand1 = tree_ticks(args.standin_pid)
    extra1 = {p: proc_cpu_ticks(p) for p in args.extra_pid}
    load_after = loadavg()
    psi1 = pressure()
    log1 = log_size(args.sidecar_log)
    if failed:
        for command, rc in failed:
            print(f"load generator failed ({rc}): {command}", file=sys.stderr)
        for o in outputs:
            try:
                sys.stderr.write(open(o + ".stderr").read())
            except OSError:
                pass
        sys.exit(1)

    def delta(before, after, only=None):
        return sum(
            after.get(p, 0) - before.get(p, 0) for p in after if only is None or only(p)
        ) / CLK_TCK

    ncpu = os.cpu_count() or 1
    wall_cpu = (total1 - total0) / CLK_TCK  # CPU-seconds available on all cores
    busy = (busy1 - busy0) / CLK_TCK
    sidecar_cpu = delta(side0, side1)
    sidecar_main_cpu = delta(side0, side1, lambda p: p == args.sidecar_pid)
    standin_cpu = delta(stand0, stand1)
    extra_cpu = delta(extra0, extra1)
    oha_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    other_cpu = max(0.0, busy - sidecar_cpu - standin_cpu - oha_cpu - extra_cpu)
    actions, problems, examples = scan_log(args.sidecar_log, log0, log1)
    oha = [summarize_oha(o) for o in outputs]
    run = {
        "name": args.name,
        "traffic": args.traffic,
        "target": args.target,
        "mode": args.mode,
        "rate": args.rate,
        "connections": args.connections,
        "captured": args.captured,
        "elapsed_s": elapsed,
        "oha": oha,
        "actions": dict(actions),
        "log_problems": dict(problems),
        "log_examples": examples,
        "cpu": {
            "cores": ncpu,
            "window_core_s": wall_cpu,
            "busy_core_s": busy,
            "sidecar_core_s": sidecar_cpu,
            "sidecar_main_core_s": sidecar_main_cpu,
            "mapper_workers_core_s": sidecar_cpu - sidecar_main_cpu,
            "standin_core_s": standin_cpu,
            "oha_core_s": oha_cpu,
            "capture_core_s": extra_cpu,
            "other_core_s": other_cpu,
        },
        "waited_for_idle_s": round(waited, 1),
        # Time (ms) in which some / all runnable tasks of the machine stalled on CPU, memory, I/O.
        "pressure_stall_ms": {k: round((psi1[k] - psi0.get(k, 0)) / 1000, 1) for k in psi1},
        "attempt": args.attempt,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "rss_kib": {
            "sidecar": proc_rss_kib(args.sidecar_pid) if args.sidecar_pid else 0,
            "mapper_workers": [proc_rss_kib(p) for p in proc_tree(args.sidecar_pid)[1:]]
            if args.sidecar_pid
            else [],
            "standin": proc_rss_kib(args.standin_pid) if args.standin_pid else 0,
        },
    }
    results = load_json(args.results, {"runs": []})
    # An earlier attempt of the same run (repeated because the machine was busy) stays in the
    # record, marked superseded: its errors are reported too.
    for r in results["runs"]:
        if r["name"] == args.name:
            r["superseded"] = True
    results["runs"].append(run)
    save_json(args.results, results)
    first = oha[0]
    line = (
        f"{args.name}: {first['requests']} requests, {first['rps']:.0f}/s, "
        f"p50 {first['p50_ms']:.2f} ms, p99 {first['p99_ms']:.2f} ms, non-2xx {first['non_2xx']}"
    )
    if len(oha) > 1:
        line += "; " + "; ".join(
            f"[{i}] p50 {o['p50_ms']:.2f} p99 {o['p99_ms']:.2f} non-2xx {o['non_2xx']}"
            for i, o in enumerate(oha[1:], 1)
        )
    if actions:
        line += f"; actions {dict(actions)}"
    if problems:
        line += f"; log warnings {sum(problems.values())}"
    line += f"; other processes {other_cpu / max(elapsed, 1e-9):.2f} cores, load {load_before[0]:.2f}"
    print(line)


# --------------------------------------------------------------------------- meta, idle-check, other-load


def cmd_other_load(args):
    """Cores used by processes other than the benchmark's during a recorded run."""
    run = [r for r in load_json(args.results)["runs"] if r["name"] == args.name][-1]
    print(f"{run['cpu']['other_core_s'] / max(run['elapsed_s'], 1e-9):.2f}")



def cmd_meta(args):
    results = load_json(args.results, {"runs": []})
    meta = results.setdefault("meta", {})
    for item in args.set:
        key, _, value = item.partition("=")
        meta[key] = value
    meta["nproc"] = os.cpu_count()
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    meta["cpu_model"] = models[0] if models else "?"
    with open("/proc/meminfo") as f:
        total_kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    meta["mem"] = f"{total_kib / 1024 / 1024:.1f} GiB"
    try:
        with open("/etc/os-release") as f:
            release = dict(
                line.rstrip().split("=", 1) for line in f if "=" in line
            )
        meta["os"] = release.get("PRETTY_NAME", "").strip('"') + ", Linux " + os.uname().release
    except OSError:
        meta["os"] = "Linux " + os.uname().release
    save_json(args.results, results)


def busy_cores(seconds):
    busy0, _ = read_cpu_busy()
    time.sleep(seconds)
    busy1, _ = read_cpu_busy()
    return (busy1 - busy0) / CLK_TCK / seconds


def cmd_idle_check(args):
    deadline = time.monotonic() + args.wait
    while True:
        busy = busy_cores(3)
        if busy <= args.threshold or time.monotonic() >= deadline:
            break
        print(f"idle-check: the machine is busy ({busy:.2f} cores); waiting", file=sys.stderr)
    top = subprocess.run(
        ["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True
    ).stdout.splitlines()[1:6]
    results = load_json(args.results, {"runs": []})
    results.setdefault("meta", {})["idle_check"] = {
        "busy_cores_3s": round(busy, 2),
        "loadavg": loadavg(),
        "top": [" ".join(t.split()) for t in top],
    }
    save_json(args.results, results)
    state = "idle" if busy <= args.threshold else "NOT idle"
    print(
        f"idle-check: {state}: {busy:.2f} cores busy over 3 s, loadavg {loadavg()}",
        file=sys.stderr,
    )


# --------------------------------------------------------------------------- pcap


def read_pcap(path):
    """Yields (timestamp, sport, dport, seq, payload) of IPv4 TCP segments with payload."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian, scale = "<", 1e-6
    elif magic == b"\x4d\x3c\xb2\xa1":
        endian, scale = "<", 1e-9
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian, scale = ">", 1e-6
    elif magic == b"\xa1\xb2\x3c\x4d":
        endian, scale = ">", 1e-9
    else:
        raise SystemExit(f"{path}: not a pcap file (pcapng is not supported)")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0xFFFF
    link_len = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0, 12: 0}.get(linktype)
    if link_len is None:
        raise SystemExit(f"{path}: unsupported link type {linktype}")
    record = struct.Struct(endian + "IIII")
    off = 24
    n = len(data)
    while off + 16 <= n:
        ts_sec, ts_frac, incl, _orig = record.unpack_from(data, off)
        off += 16
        pkt = data[off : off + incl]
        off += incl
        ip = link_len
        if len(pkt) < ip + 20 or pkt[ip] >> 4 != 4 or pkt[ip + 9] != 6:
            continue
        ihl = (pkt[ip] & 0x0F) * 4
        total = struct.unpack_from("!H", pkt, ip + 2)[0]
        tcp = ip + ihl
        sport, dport, seq = struct.unpack_from("!HHI", pkt, tcp)
        thl = (pkt[tcp + 12] >> 4) * 4
        start = tcp + thl
        end = ip + total
        if end > start:
            yield ts_sec + ts_frac * scale, sport, dport, seq, pkt[start:end]


class HttpStream:
    """One direction of one TCP connection, cut into HTTP/1.1 messages."""

    def __init__(self, sink):
        self.buf = bytearray()
        self.start_ts = None
        self.next_seq = None
        self.sink = sink

    def feed(self, ts, seq, payload):
        if self.next_seq is not None:
            skip = (self.next_seq - seq) & 0xFFFFFFFF
            if 0 < skip < 0x80000000:  # retransmitted bytes
                if skip >= len(payload):
                    return
                payload = payload[skip:]
                seq = self.next_seq
        self.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        if not self.buf:
            self.start_ts = ts
        self.buf += payload
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buf[:head_end]).decode("latin-1")
            lines = head.split("\r\n")
            headers = {}
            for h in lines[1:]:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            body_start = head_end + 4
            if "chunked" in headers.get("transfer-encoding", "").lower():
                end = self.buf.find(b"\r\n0\r\n\r\n", body_start - 2)
                if end < 0:
                    return
                msg_end = end + 7
                body = _dechunk(bytes(self.buf[body_start:msg_end]))
            else:
                length = int(headers.get("content-length", "0") or 0)
                msg_end = body_start + length
                if len(self.buf) < msg_end:
                    return
                body = bytes(self.buf[body_start:msg_end])
            self.sink(self.start_ts, ts, lines[0], body)
            del self.buf[:msg_end]
            self.start_ts = ts if self.buf else None


def _dechunk(data):
    out = bytearray()
    i = 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            break
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0:
            break
        out += data[j + 2 : j + 2 + size]
        i = j + 2 + size + 2
    return bytes(out)


def exchanges(path, server_ports):
    """{server_port: [(req_start, resp_end, request_line, request_body, status_line, response_body)]}"""
    requests = defaultdict(list)  # (client_port, server_port) -> [(start, end, line, body)]
    responses = defaultdict(list)
    streams = {}
    for ts, sport, dport, seq, payload in read_pcap(path):
        if dport in server_ports:
            key, sink = (sport, dport, "req"), requests[(sport, dport)]
        elif sport in server_ports:
            key, sink = (dport, sport, "resp"), responses[(dport, sport)]
        else:
            continue
        stream = streams.get(key)
        if stream is None:
            stream = streams[key] = HttpStream(lambda a, b, line, body, s=sink: s.append((a, b, line, body)))
        stream.feed(ts, seq, payload)
    out = defaultdict(list)
    for conn, reqs in requests.items():
        resps = responses.get(conn, [])
        for req, resp in zip(reqs, resps):
            out[conn[1]].append((req[0], resp[1], req[2], req[3], resp[2], resp[3]))
    return out


def cmd_pcap(args):
    ids = load_json(args.ids)
    subject_of_id = {v: k for k, v in ids.items()}
    by_port = exchanges(args.file, {args.sidecar_port, args.standin_port})
    inbound = []
    for start, end, line, body, status_line, resp_body in by_port.get(args.sidecar_port, []):
        if not line.startswith("POST /v1/provision"):
            continue
        try:
            sub = json.loads(body)["claims"]["sub"]
        except (ValueError, KeyError, TypeError):
            sub = None
        try:
            action = json.loads(resp_body).get("action")
        except (ValueError, AttributeError):
            action = None
        status = int(status_line.split()[1])
        inbound.append({"start": start, "end": end, "sub": sub, "status": status, "action": action})
    calls = defaultdict(list)  # subject -> [(start, end, method)]
    unknown_calls = 0
    for start, end, line, _body, status_line, _resp in by_port.get(args.standin_port, []):
        method, target = line.split()[:2]
        parsed = urllib.parse.urlsplit(target)
        sub = None
        if method == "GET" and parsed.path == "/admin/identities":
            identifier = urllib.parse.parse_qs(parsed.query).get("credentials_identifier", [""])[0]
            if identifier.startswith(PROVIDER + ":"):
                sub = identifier[len(PROVIDER) + 1 :]
        elif parsed.path.startswith("/admin/identities/"):
            sub = subject_of_id.get(parsed.path.rsplit("/", 1)[1])
        if sub is None:
            unknown_calls += 1
            continue
        calls[sub].append((start, end, method))
    # A request whose window overlaps another request for the same subject cannot be attributed
    # call by call: excluded (and counted).
    by_subject = defaultdict(list)
    for r in inbound:
        by_subject[r["sub"]].append(r)
    ambiguous = 0
    for rs in by_subject.values():
        rs.sort(key=lambda r: r["start"])
        for a, b in zip(rs, rs[1:]):
            if b["start"] < a["end"]:
                a["ambiguous"] = b["ambiguous"] = True
    totals, kratos, shares, pattern = [], [], [], Counter()
    for r in inbound:
        if r.get("ambiguous"):
            ambiguous += 1
            continue
        mine = [c for c in calls.get(r["sub"], []) if c[0] >= r["start"] and c[1] <= r["end"]]
        pattern["+".join(c[2] for c in sorted(mine))] += 1
        k = sum(c[1] - c[0] for c in mine)
        total = r["end"] - r["start"]
        totals.append(total * 1000)
        kratos.append(k * 1000)
        shares.append((total - k) * 1000)
    for values in (totals, kratos, shares):
        values.sort()

    def stats(values):
        return {
            "p50_ms": percentile(values, 50),
            "p90_ms": percentile(values, 90),
            "p99_ms": percentile(values, 99),
            "p99.9_ms": percentile(values, 99.9),
            "max_ms": values[-1] if values else float("nan"),
            "mean_ms": sum(values) / len(values) if values else float("nan"),
        }

    attribution = {
        "inbound": len(inbound),
        "attributed": len(totals),
        "ambiguous": ambiguous,
        "unattributed_kratos_calls": unknown_calls,
        "statuses": dict(Counter(str(r["status"]) for r in inbound)),
        "actions": dict(Counter(str(r["action"]) for r in inbound)),
        "call_patterns": dict(pattern),
        "total": stats(totals),
        "kratos": stats(kratos),
        "sidecar": stats(shares),
        "sidecar_over_1ms": sum(1 for s in shares if s > 1.0),
    }
    results = load_json(args.results, {"runs": []})
    for run in results["runs"]:
        if run["name"] == args.name and not run.get("superseded"):
            run["attribution"] = attribution
    save_json(args.results, results)
    s, k, t = attribution["sidecar"], attribution["kratos"], attribution["total"]
    print(
        f"{args.name} (wire-level, per request): {len(totals)} of {len(inbound)} attributed "
        f"({ambiguous} same-subject overlaps excluded); calls {dict(pattern)}; "
        f"total p50 {t['p50_ms']:.3f} p99 {t['p99_ms']:.3f}; Kratos p50 {k['p50_ms']:.3f} "
        f"p99 {k['p99_ms']:.3f}; sidecar p50 {s['p50_ms']:.3f} p99 {s['p99_ms']:.3f} ms"
    )


# --------------------------------------------------------------------------- report


def fmt(x, digits=2):
    if x is None or x != x:
        return "—"
    return f"{x:.{digits}f}"


def cmd_report(args):
    results = load_json(args.results)
    runs = {r["name"]: r for r in results["runs"] if not r.get("superseded")}
    meta = results.get("meta", {})
    out = []
    w = out.append
    w(f"Machine: {meta.get('cpu_model', '?')}, {meta.get('nproc', '?')} cores, {meta.get('mem', '?')} RAM; "
      f"{meta.get('os', '')}")
    w(f"Build: {meta.get('git', '?')} ({meta.get('rustc', '?')}); load generator: {meta.get('oha', '?')}; "
      f"mapper.workers={meta.get('mapper_workers', '?')}; {meta.get('subjects', '?')} subjects; "
      f"{meta.get('duration', '?')} s per run")
    idle = meta.get("idle_check")
    if idle:
        w(f"Before the runs: {idle['busy_cores_3s']} cores busy over 3 s, loadavg {idle['loadavg']}")
    w("")
    w("| traffic | load | requests | throughput (req/s) | p50 (ms) | p99 (ms) | Kratos calls p50 / p99 (ms) | sidecar share p50 / p99 (ms), by subtraction | non-2xx / errors |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    direct = {"unchanged": runs.get("kratos-get-rate"), "updated": runs.get("kratos-get-patch-rate")}
    for traffic in ("unchanged", "updated"):
        for mode in ("rate", "max"):
            run = runs.get(f"{traffic}-{mode}")
            if not run:
                continue
            o = run["oha"][0]
            load = f"{run['rate']}/s fixed" if mode == "rate" else f"open, {run['connections']} conns"
            kp50 = kp99 = None
            d = direct[traffic]
            if mode == "rate" and d:
                kp50 = sum(x["p50_ms"] for x in d["oha"])
                kp99 = sum(x["p99_ms"] for x in d["oha"])
            share50 = o["p50_ms"] - kp50 if kp50 is not None else None
            share99 = o["p99_ms"] - kp99 if kp99 is not None else None
            w(
                f"| {traffic} | {load} | {o['requests']} | {o['rps']:.0f} | {fmt(o['p50_ms'])} | {fmt(o['p99_ms'])} | "
                f"{fmt(kp50)} / {fmt(kp99)} | {fmt(share50)} / {fmt(share99)} | {o['non_2xx']} |"
            )
    w("")
    w("Kratos calls alone (oha straight to the stand-in, same rate): "
      + "; ".join(
          f"{name}: " + " + ".join(f"p50 {x['p50_ms']:.2f} / p99 {x['p99_ms']:.2f} ms ({x['non_2xx']} non-2xx)" for x in r["oha"])
          for name, r in ((n, runs.get(n)) for n in ("kratos-get-rate", "kratos-get-patch-rate")) if r
      ))
    w("")
    cap = [runs.get(f"{t}-rate-captured") for t in ("unchanged", "updated")]
    if any(c and c.get("attribution") for c in cap):
        w("Per-request attribution from a packet capture on loopback (same traffic, separate run with tcpdump):")
        w("")
        w("| traffic | load | attributed / requests | Kratos calls per request | total p50 / p99 (ms) | Kratos calls p50 / p99 (ms) | sidecar share p50 / p90 / p99 / p99.9 / max (ms) | share > 1 ms |")
        w("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
        for c in cap:
            if not c or not c.get("attribution"):
                continue
            a = c["attribution"]
            s, k, t = a["sidecar"], a["kratos"], a["total"]
            pattern = ", ".join(f"{p or 'none'} ×{n}" for p, n in sorted(a["call_patterns"].items(), key=lambda x: -x[1]))
            w(
                f"| {c['traffic']} | {c['rate']}/s fixed | {a['attributed']} / {a['inbound']} | {pattern} | "
                f"{fmt(t['p50_ms'], 3)} / {fmt(t['p99_ms'], 3)} | {fmt(k['p50_ms'], 3)} / {fmt(k['p99_ms'], 3)} | "
                f"{fmt(s['p50_ms'], 3)} / {fmt(s['p90_ms'], 3)} / {fmt(s['p99_ms'], 3)} / {fmt(s['p99.9_ms'], 3)} / {fmt(s['max_ms'], 3)} | "
                f"{a['sidecar_over_1ms']} ({100.0 * a['sidecar_over_1ms'] / max(a['attributed'], 1):.2f} %) |"
            )
        w("")
    def label(run):
        name = run["name"]
        if run.get("attempt", 1) > 1:
            name += f" (attempt {run['attempt']})"
        if run.get("superseded"):
            name += " — DISCARDED: machine busy, run again"
        return name

    discarded_errors = [
        (label(r), sum(x["non_2xx"] for x in r["oha"]), r["actions"], r["log_problems"])
        for r in results["runs"]
        if r.get("superseded") and (sum(x["non_2xx"] for x in r["oha"]) or r["log_problems"])
    ]
    if discarded_errors:
        w("Errors in discarded attempts (not in the tables above, reported here): " + "; ".join(
            f"{name}: {n} non-2xx, actions {actions}, log {problems}" for name, n, actions, problems in discarded_errors))
        w("")
    w("Every run (discarded attempts included): what the sidecar logged, CPU, load, memory:")
    w("")
    w("| run | requests | non-2xx (status / errors) | p99.9 / max (ms) | actions logged by the sidecar | sidecar CPU µs/request: server + mapper workers | stand-in CPU µs/request | oha CPU (core-s) | other processes (cores) | loadavg before | memory / I/O stall, some (ms) | log warnings / errors | RSS after (MiB): server / each mapper worker / stand-in |")
    w("| --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for run in results["runs"]:
        o = run["oha"][0]
        cpu = run["cpu"]
        requests = sum(x["requests"] for x in run["oha"])
        bad = "; ".join(
            (", ".join(f"{k}: {v}" for k, v in x["statuses"].items() if not k.startswith("2")) or "0")
            + (" / " + ", ".join(f"{k}: {v}" for k, v in x["errors"].items()) if x["errors"] else "")
            for x in run["oha"]
        )
        per_req = lambda x: 1e6 * x / requests if requests and x else None  # noqa: E731
        if run["target"] == "sidecar":
            sidecar_cpu = f"{fmt(per_req(cpu['sidecar_main_core_s']), 0)} + {fmt(per_req(cpu['mapper_workers_core_s']), 0)}"
        else:
            sidecar_cpu = "idle"
        actions = ", ".join(f"{k} {v}" for k, v in sorted(run["actions"].items())) or "—"
        warnings = ", ".join(f"{k} ×{v}" for k, v in run["log_problems"].items()) or "none"
        other = cpu["other_core_s"] / max(run["elapsed_s"], 1e-9)
        w(
            f"| {label(run)} | {requests} | {bad} | {fmt(o['p99.9_ms'])} / {fmt(o['max_ms'])} | {actions} | "
            f"{sidecar_cpu} | {fmt(per_req(cpu['standin_core_s']), 0)} | {fmt(cpu['oha_core_s'], 1)} | "
            f"{fmt(other)} | {fmt(run['loadavg_before'][0])} | "
            f"{fmt(run.get('pressure_stall_ms', {}).get('memory_some'), 1)} / {fmt(run.get('pressure_stall_ms', {}).get('io_some'), 1)} | {warnings} | "
            f"{run['rss_kib']['sidecar'] / 1024:.0f} / "
            f"{', '.join(f'{r / 1024:.0f}' for r in run['rss_kib']['mapper_workers']) or '—'} / "
            f"{run['rss_kib']['standin'] / 1024:.0f} |"
        )
    samples = results.get("samples", {})
    if samples:
        w("")
        w("Response samples (separate requests after the run, same body file): " + "; ".join(
            f"{name}: {s['n']} requests → {s['actions']}" for name, s in samples.items()))
    text = "\n".join(out)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


# --------------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("free-ports")
    p.add_argument("n", type=int)
    p.set_defaults(func=cmd_free_ports)

    p = sub.add_parser("wait-http")
    p.add_argument("url")
    p.add_argument("--pid", type=int, action="append", default=[])
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(func=cmd_wait_http)

    p = sub.add_parser("gen")
    p.add_argument("--claims", required=True)
    p.add_argument("--subjects", type=int, required=True)
    p.add_argument("--variants", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_gen)

    p = sub.add_parser("seed")
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--lines", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--expect")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("kratos-files")
    p.add_argument("--standin", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--mapper", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_kratos_files)

    p = sub.add_parser("sample")
    p.add_argument("--name", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--lines", required=True)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--results", required=True)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("run")
    p.add_argument("--name", required=True)
    p.add_argument("--traffic", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--rate", type=int)
    p.add_argument("--connections", type=int)
    p.add_argument("--captured", action="store_true")
    p.add_argument("--sidecar-pid", type=int)
    p.add_argument("--standin-pid", type=int)
    p.add_argument("--extra-pid", type=int, action="append", default=[])
    p.add_argument("--sidecar-log")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--wait-idle", type=float, default=0)
    p.add_argument("--attempt", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("commands", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("meta")
    p.add_argument("--results", required=True)
    p.add_argument("--set", action="append", default=[])
    p.set_defaults(func=cmd_meta)

    p = sub.add_parser("other-load")
    p.add_argument("--results", required=True)
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_other_load)

    p = sub.add_parser("idle-check")
    p.add_argument("--results", required=True)
    p.add_argument("--wait", type=float, default=0)
    p.add_argument("--threshold", type=float, default=0.25)
    p.set_defaults(func=cmd_idle_check)

    p = sub.add_parser("pcap")
    p.add_argument("--name", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--sidecar-port", type=int, required=True)
    p.add_argument("--standin-port", type=int, required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--results", required=True)
    p.set_defaults(func=cmd_pcap)

    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--out")
    p.set_defaults(func=cmd_report)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
