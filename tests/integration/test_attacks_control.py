#!/usr/bin/env python3
"""Attacks on a real wanmux-server through control frames and tunnel counts,
by an authorized but hostile client (wm_attack, tests/integration/wm_attack.c):

- a PING flood that never reads, and one that reads 4 KiB every 5 s, for
  longer than the dead-peer check: the server's RSS must stay bounded (one
  PONG is pending at most; a peer that takes none of our output for 30 s
  while it backs up is closed, see test_tunnel.c);
- one key asking for 17 tunnels (tunnel 17 refused, --max-tunnels-per-key 16)
  and a second key running into the process-wide --max-tunnels;
- WINDOW frames on streams whose ids are 2048 apart, against consecutive
  ids: with a keyed stream-table hash both cost about the same CPU.

Why RSS_GROWTH_MB = 64: what a flooding peer may make the server hold is
its tunnel's output (about 96 KiB plus one record), the control queue (one
PONG; at most SESSION_CTRL_MAX = 1 MiB in any case) and one read of input
(256 KiB). 64 MB over the idle server leaves room for allocator slack and
still catches what the old code did: +300 MB in the first second.
"""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_attacks import Attacker, rss_mb, set_small_asan_quarantine  # noqa: E402

RSS_GROWTH_MB = 64
RSS_GROWTH_MB_SANITIZED = 200
DEAD_AFTER = 30.0         # tunnel.c default: a peer taking no output is closed
FLOOD_HOLD = DEAD_AFTER + 5
PER_KEY = 16              # --max-tunnels-per-key default
MAX_TUNNELS = 20          # set for the test
COLLIDE_STREAMS = 400     # below the fd limit of 1024 with one target each
COLLIDE_WINDOWS = 2000000
LIMITS = (r"limits hit so far: \d+ over --max-streams, \d+ over --max-buffer or "
          r"--max-session-buffer, (\d+) over --max-tunnels, (\d+) over "
          r"--max-tunnels-per-key")


class RssWatch:
    """Samples the server's RSS every 0.1 s; over the limit it kills the
    attackers at once (the old code would eat the machine's memory)."""

    def __init__(self, srv, limit_mb, victims):
        self.srv = srv
        self.base = rss_mb(srv.pid)
        self.limit = self.base + limit_mb
        self.peak = self.base
        self.at_1s = None
        self.over = None
        self.victims = victims
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True)
        self._th.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                now = rss_mb(self.srv.pid)
            except (OSError, h.TestFailure):
                return
            self.peak = max(self.peak, now)
            if self.at_1s is None and time.monotonic() - self.t0 >= 1.0:
                self.at_1s = now
            if now > self.limit and self.over is None:
                self.over = now
                for p in self.victims:
                    if p.poll() is None:
                        p.kill()
            self._stop.wait(0.1)

    def stop(self):
        self._stop.set()
        self._th.join(2)


def test_ping_flood_memory_bounded(env):
    set_small_asan_quarantine()
    flood_key, flood_pub = env.keygen("flood.key")
    trickle_key, trickle_pub = env.keygen("trickle.key")
    srv = env.start_server(allow=[], authorized=[flood_pub, trickle_pub],
                           extra=["--handshake-rate", "100000"], log_level="info")
    cpu0 = srv.cpu()
    flood = Attacker(env, srv, flood_key).start("ping-flood", "--hold", FLOOD_HOLD)
    trickle = Attacker(env, srv, trickle_key).start("ping-trickle", "--hold", FLOOD_HOLD)
    growth = RSS_GROWTH_MB_SANITIZED if env.bins.sanitized else RSS_GROWTH_MB
    w = RssWatch(srv, growth, [flood, trickle])
    try:
        fout, ferr = flood.communicate(timeout=FLOOD_HOLD + t(30))
        tout, terr = trickle.communicate(timeout=FLOOD_HOLD + t(30))
    finally:
        w.stop()
    cpu = srv.cpu() - cpu0
    print(f"     server RSS: idle {w.base:.1f} MB, after 1 s {w.at_1s or 0:.1f} MB, "
          f"peak {w.peak:.1f} MB; server CPU {cpu:.1f} s in {FLOOD_HOLD:.0f} s")
    print(f"     {fout.decode().strip()}")
    print(f"     {tout.decode().strip()}")
    if w.over is not None:
        raise h.TestFailure(f"server RSS reached {w.over:.1f} MB (idle {w.base:.1f} MB, "
                            f"limit +{growth} MB): attackers killed")
    check(srv.alive(), "the server exited under the PING flood")
    for name, out, err in (("ping-flood", fout, ferr), ("ping-trickle", tout, terr)):
        check(re.search(r"result: %s sent=[1-9]" % name, out.decode()) is not None,
              f"{name}: {out.decode().strip()} {err.decode()[-300:]}")
    srv.stop()


def test_tunnel_limits(env):
    a_key, a_pub = env.keygen("a.key")
    b_key, b_pub = env.keygen("b.key")
    srv = env.start_server(allow=[], authorized=[a_pub, b_pub],
                           extra=["--handshake-rate", "100000", "--max-unauth", "64",
                                  "--max-tunnels", str(MAX_TUNNELS)], log_level="info")
    base = rss_mb(srv.pid)
    a = Attacker(env, srv, a_key).start("tunnels", "--count", PER_KEY + 1, "--hold", 8,
                                        "--wait", 5)
    line = a.stdout.readline().decode()
    print(f"     key A: {line.strip()}")
    check(line.strip() == f"opened: up={PER_KEY} refused=1",
          f"key A asked for {PER_KEY + 1} tunnels: {line.strip()!r} (expected "
          f"{PER_KEY} up, 1 refused)")
    with_16 = rss_mb(srv.pid)
    res = Attacker(env, srv, b_key).run("tunnels", "--count", 8, "--hold", 0, "--wait", 5)
    print(f"     key B: {res}")
    left = MAX_TUNNELS - PER_KEY
    check(f"up={left} refused={8 - left}" in res,
          f"key B with {PER_KEY} tunnels of A open: {res} (expected {left} up, "
          f"{8 - left} refused by --max-tunnels {MAX_TUNNELS})")
    out, err = a.communicate(timeout=t(30))
    check(a.returncode == 0, f"wm_attack tunnels (A): {out.decode()} {err.decode()[-300:]}")
    check(f"still_open={PER_KEY}" in out.decode(),
          f"A's tunnels were not kept open: {out.decode().strip()}")
    # Once A's tunnels are gone there is room again.
    srv.wait_log(r"tunnel from \S+ \(client \S+ \(test key\)\) down", t(10),
                 count=PER_KEY + left)
    time.sleep(0.5)
    res = Attacker(env, srv, b_key).run("tunnels", "--count", 8, "--hold", 0, "--wait", 5)
    check("up=8 refused=0" in res, f"key B after A left: {res}")
    print(f"     server RSS: {base:.1f} MB idle, {with_16:.1f} MB with {PER_KEY} tunnels "
          f"({(with_16 - base) * 1024 / PER_KEY:.0f} KiB per idle tunnel)")
    srv.stop()
    m = re.search(LIMITS, srv.log_text())
    check(m is not None, "no 'limits hit so far' summary with the tunnel limits")
    total, per_key = int(m.group(1)), int(m.group(2))
    print(f"     summary: {total} over --max-tunnels, {per_key} over --max-tunnels-per-key")
    check(per_key == 1 and total == 8 - left,
          f"summary counts {per_key} per-key and {total} total refusals; expected 1 and "
          f"{8 - left}")


def test_stream_id_collisions_cpu(env):
    def hold_open(c, idx, server):
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    atk_key, atk_pub = env.keygen("attacker.key")
    idle = env.target(h.FuncServer(hold_open))
    srv = env.start_server(allow=[f"127.0.0.1:{idle.port}"], authorized=[atk_pub],
                           extra=["--handshake-rate", "100000", "--open-rate", "100000"],
                           log_level="info")
    atk = Attacker(env, srv, atk_key)
    cost = {}
    for slot, spacing in ((0, 2), (1, 2048)):
        c0 = srv.cpu()
        res = atk.run("window-collide", "--target", f"127.0.0.1:{idle.port}",
                      "--streams", COLLIDE_STREAMS, "--spacing", spacing,
                      "--count", COLLIDE_WINDOWS, "--tunnel-no", slot, "--wait", t(20),
                      timeout=t(120))
        cost[spacing] = srv.cpu() - c0
        print(f"     ids {spacing} apart: server CPU {cost[spacing]:.2f} s for "
              f"{COLLIDE_STREAMS} OPENs + {COLLIDE_WINDOWS} WINDOWs ({res})")
        check(srv.alive(), "the server exited")
        time.sleep(1)  # let the tunnel's streams close
    ratio = cost[2048] / max(cost[2], 0.01)
    print(f"     CPU ratio spaced/consecutive: {ratio:.1f}")
    check(ratio < 3, f"WINDOW frames on ids 2048 apart cost {ratio:.1f} times the CPU of "
                     f"consecutive ids ({cost[2048]:.2f} s vs {cost[2]:.2f} s)")


if __name__ == "__main__":
    h.main([test_ping_flood_memory_bounded, test_tunnel_limits, test_stream_id_collisions_cpu],
           "control-frame floods, tunnel limits and stream-table collisions")
