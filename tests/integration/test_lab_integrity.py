#!/usr/bin/env python3
"""Integrity over a bad WAN: the pair in two network namespaces joined by the
netem lab (netem/lab.sh, linkem), scenario satellite-lossy (600 ms RTT,
10 Mbit/s, 3% bursty loss) with 1% reordering and 1% duplication added.

- a few MiB of text and random data each way at once: every byte arrives
  intact (SHA-256 at both ends);
- the same, with the link blacked out for 5 s (both directions) in the middle
  of the transfers: intact, finished in bounded time, and the pair still
  carries a new connection afterwards.

Needs root, /dev/net/tun and `ip netns`; where the machine cannot build
namespaces it prints why and exits 0 without running anything. Each run uses
its own namespace prefix and lab state dir (pid-based), so the release and
ASan suites may run at the same time.
"""

import ctypes
import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import MB, check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.normpath(os.path.join(HERE, "..", "..", "netem", "lab.sh"))


def _short_prefix(n):
    # linkem takes namespace names shorter than IFNAMSIZ (16): with
    # "datacenter" that leaves 5 characters, so the pid goes in base 36.
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    for _ in range(3):
        s = digits[n % 36] + s
        n //= 36
    return f"t{s}-"


PREFIX = _short_prefix(os.getpid())
RUN_DIR = f"/run/wmx-lab-test-{os.getpid()}"
NS_BRANCH = PREFIX + "branch"
NS_DC = PREFIX + "datacenter"
DC_ADDR = "198.18.0.2"
WM_PORT = 7700
SINK_PORT, SOURCE_PORT = 5001, 5002
SCENARIO = ["satellite-lossy", "reorder=1%", "duplicate=1%"]

EACH = 2 * MB  # per kind (text, random) per direction
TEXT = h.make_text(2 * EACH, seed=5)
RANDOM = h.make_random(2 * EACH, seed=6)
# Upload the first halves, download the second halves.
UPLOADS = [memoryview(TEXT)[:EACH], memoryview(RANDOM)[:EACH]]
DOWNLOADS = [memoryview(TEXT)[EACH:], memoryview(RANDOM)[EACH:]]

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def tn(seconds):
    """A timeout for network-bound waits: the emulated link, not the CPU,
    sets the pace, so sanitizer builds get only a little more."""
    return seconds * min(h.SCALE, 1.5)


class netns:
    """Context manager: the calling thread enters a named network namespace
    (sockets created inside stay in it) and goes back on exit."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns {self.name}: {os.strerror(e)}")
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        if _libc.setns(self.orig, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns back: {os.strerror(e)}")
        os.close(self.orig)


def lab_env(bindir):
    env = dict(os.environ, WMX_LAB_PREFIX=PREFIX, WMX_LAB_RUN=RUN_DIR)
    linkem = os.path.join(bindir, "netem", "linkem")
    if os.access(linkem, os.X_OK):
        env["WMX_LINKEM"] = linkem
    return env


def lab(args, *cmd, timeout=60, ok=True):
    p = subprocess.run(["bash", LAB, *cmd], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, env=lab_env(args.bindir))
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    if ok:
        check(p.returncode == 0, f"lab.sh {' '.join(cmd)} failed ({p.returncode}): {out.strip()}")
    return out


def cannot_run(args):
    """Why namespaces cannot be built here, or None."""
    if os.geteuid() != 0:
        return "not root (the lab needs network namespaces and TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    if not os.path.exists(LAB):
        return f"{LAB} not found"
    probe = PREFIX + "probe"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if p.returncode != 0:
        return f"`ip netns add` fails: {p.stderr.decode(errors='replace').strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def link_counters(args):
    """linkem's per-direction counters: {'a2b': {...}, 'b2a': {...}}."""
    out = lab(args, "status")
    res = {}
    for m in re.finditer(r"linkem: (a2b|b2a) (.*)", out):
        res[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return res


class Progress:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def add(self, k):
        with self.lock:
            self.n += k


def start_pair(env, args):
    """Server and targets in the datacenter, client in the branch."""
    sink_progress, down_progress = Progress(), Progress()

    def sink(c, idx, server):
        hs = hashlib.sha256()
        n = 0
        while True:
            b = c.recv(256 * 1024)
            if not b:
                break
            n += len(b)
            hs.update(b)
            sink_progress.add(len(b))
        c.sendall((hs.hexdigest() + "\n").encode())
        c.shutdown(socket.SHUT_WR)
        server.add_result((n, hs.hexdigest()))

    def source(c, idx, server):
        which = int(c.recv(1))
        h.send_all(c, DOWNLOADS[which], chunk=64 * 1024)
        c.shutdown(socket.SHUT_WR)
        h.recv_all(c, limit=0)

    with netns(NS_DC):
        snk = env.target(h.FuncServer(sink, host=DC_ADDR, port=SINK_PORT))
        src = env.target(h.FuncServer(source, host=DC_ADDR, port=SOURCE_PORT))
    srv = h.Daemon("server", ["ip", "netns", "exec", NS_DC, args.bins.server,
                              "--listen", f"{DC_ADDR}:{WM_PORT}", "--key", env.server_key,
                              "--authorized-keys",
                              env.write("authorized", f"{env.client_pub} lab\n", 0o644),
                              "--allow", f"{DC_ADDR}:{SINK_PORT}-{SOURCE_PORT}",
                              "--log-level", "debug"], env.path("server.log"))
    env.daemons.append(srv)
    srv.wait_log(r"listening on ", h.t(10))
    cli = h.Daemon("client", ["ip", "netns", "exec", NS_BRANCH, args.bins.client,
                              "--server", f"{DC_ADDR}:{WM_PORT}", "--key", env.client_key,
                              "--server-key", env.server_key + ".pub",
                              "--forward", f"{SINK_PORT}:{DC_ADDR}:{SINK_PORT}",
                              "--forward", f"{SOURCE_PORT}:{DC_ADDR}:{SOURCE_PORT}",
                              "--log-level", "debug"], env.path("client.log"))
    env.daemons.append(cli)
    # Handshakes cross a 600 ms link that loses 3% of packets.
    cli.wait_log(r"tunnel \d+ to \S+ up", tn(45), count=4)
    cli.wait_log(r"forwarding 127\.0\.0\.1:%d " % SOURCE_PORT, h.t(5))
    return snk, sink_progress, down_progress


def upload(data, timeout):
    with netns(NS_BRANCH):
        s = h.connect(SINK_PORT, timeout=timeout)
    with s:
        h.send_all(s, data, chunk=64 * 1024)
        s.shutdown(socket.SHUT_WR)
        return h.recv_all(s, limit=1024).decode(errors="replace").strip()


def download(which, progress, timeout):
    with netns(NS_BRANCH):
        s = h.connect(SOURCE_PORT, timeout=timeout)
    with s:
        s.sendall(str(which).encode())
        hs = hashlib.sha256()
        n = 0
        while True:
            b = s.recv(256 * 1024)
            if not b:
                break
            n += len(b)
            hs.update(b)
            progress.add(len(b))
        return n, hs.hexdigest()


def transfers(progress, timeout):
    """Both kinds both ways at once; checks the hashes."""
    jobs = [lambda d=d: upload(d, timeout) for d in UPLOADS]
    jobs += [lambda i=i: download(i, progress, timeout) for i in range(len(DOWNLOADS))]
    return jobs


def check_results(results, sink):
    ups, downs = results[:len(UPLOADS)], results[len(UPLOADS):]
    want_up = [h.sha(d) for d in UPLOADS]
    check(ups == want_up, f"upload hashes: sink said {ups}, sent {want_up}")
    want_down = [(len(d), h.sha(d)) for d in DOWNLOADS]
    check(downs == want_down, f"downloads: got {downs}, source sent {want_down}")
    got = sink.wait_results(len(UPLOADS), h.t(10))
    check(sorted(n for n, _ in got) == [EACH] * len(UPLOADS), f"sink byte counts {got}")


def with_lab(fn):
    """Runs fn(env) with a fresh lab; always tears it down."""
    def run(env):
        try:
            lab(env.args, "down", ok=False)
            out = lab(env.args, "up", *SCENARIO)
            print("     " + out.strip().splitlines()[0])
            fn(env)
            env.finish()  # SIGTERM, exit 0, no sanitizer report
        finally:
            for d in env.daemons:
                d.kill()
            for tg in env.targets:
                tg.stop()
            env.targets.clear()
            lab(env.args, "down", ok=False)
    run.__name__ = fn.__name__
    return run


@with_lab
def test_lossy_reorder_duplicate_intact(env):
    sink, _, down = start_pair(env, env.args)
    t0 = time.monotonic()
    results = h.parallel(transfers(down, tn(120)), timeout=tn(150))
    took = time.monotonic() - t0
    check_results(results, sink)
    c = link_counters(env.args)
    print(f"     {4 * EACH // MB} MiB in {took:.1f} s; linkem a2b {c.get('a2b')}")
    print(f"     linkem b2a {c.get('b2a')}")
    # The impairments must really have happened, or the test proves nothing.
    for d in ("a2b", "b2a"):
        check(d in c, f"no linkem counters for {d}")
        check(c[d].get("duplicated", 0) > 0, f"{d}: no packet was duplicated: {c[d]}")
        check(c[d].get("reordered", 0) > 0, f"{d}: no packet was reordered: {c[d]}")
        check(c[d].get("drop_loss", 0) > 0, f"{d}: no packet was lost: {c[d]}")


@with_lab
def test_blackout_mid_transfer_intact(env):
    sink, up, down = start_pair(env, env.args)
    done = {}

    def run():
        try:
            done["results"] = h.parallel(transfers(down, tn(150)), timeout=tn(180))
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            done["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    # Black out once both directions are well under way (1 MiB each).
    deadline = time.monotonic() + tn(60)
    while (up.n < MB or down.n < MB) and time.monotonic() < deadline and th.is_alive():
        time.sleep(0.05)
    check(up.n >= MB and down.n >= MB,
          f"transfers did not get going: {up.n} bytes up, {down.n} down")
    before = (up.n, down.n)
    lab(env.args, "link", "blackout", "5")
    t_black = time.monotonic()
    th.join(tn(190))
    check(not th.is_alive(), "transfers still running long after the blackout")
    if "error" in done:
        raise done["error"]
    took = time.monotonic() - t_black
    check(before[0] < 2 * EACH and before[1] < 2 * EACH,
          f"the blackout came after the transfers ({before})")
    check(took > 5, f"finished {took:.1f} s after a 5 s blackout began?")
    check_results(done["results"], sink)
    c = link_counters(env.args)
    black = sum(c[d].get("drop_blackout", 0) for d in c)
    print(f"     blackout at {before[0] // 1024} KiB up / {before[1] // 1024} KiB down; "
          f"finished {took:.1f} s later; {black} packets dropped by the blackout")
    check(black > 0, f"the blackout dropped nothing: {c}")
    # Still usable: one more upload on a new connection.
    r = upload(UPLOADS[0][:256 * 1024], tn(30))
    check(r == h.sha(UPLOADS[0][:256 * 1024]), f"upload after the blackout: {r}")


def main():
    args = h.parse_args(__doc__)
    why = cannot_run(args)
    if why:
        print(f"SKIPPED: {why}")
        print("(the lab tests need a machine that can build network namespaces; CI can)")
        sys.exit(h.SKIP_RC)
    try:
        rc = h.run_tests([test_lossy_reorder_duplicate_intact,
                          test_blackout_mid_transfer_intact], args)
    finally:
        h._kill_all()
        lab(args, "down", ok=False)
    sys.exit(rc)


if __name__ == "__main__":
    main()
