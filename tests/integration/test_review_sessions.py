#!/usr/bin/env python3
"""A hostile authorized client against sessions across tunnels (a client's
tunnels share one session, which waits --resume-timeout for a tunnel when
it has none), with wm_attack (tests/integration/wm_attack.c):

- sessions with no tunnel: every wm_attack run is a new client session (a
  random session id) that opens streams to a target and closes its tunnel.
  The server keeps each such session, with its target connections and its
  compression state, for --resume-timeout (120 s). Only the per-key limit
  (--max-tunnels-per-key, 16) bounded them: --max-tunnels, the server-wide
  bound on what clients hold, counted only tunnels, so one key (or many)
  held far more target connections than --max-tunnels tunnels can carry.
"""

import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_attacks import Attacker  # noqa: E402

MAX_TUNNELS = 2
RUNS = 8
STREAMS = 20


class HoldServer(h.TargetServer):
    """Holds every connection until the peer closes it; counts those open."""

    def __init__(self, **kw):
        self.live = 0
        self.live_lock = threading.Lock()
        super().__init__(**kw)

    def handle(self, c, idx):
        c.settimeout(None)
        with self.live_lock:
            self.live += 1
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
        finally:
            with self.live_lock:
                self.live -= 1

    def open_now(self):
        with self.live_lock:
            return self.live


def test_detached_sessions_bounded_by_max_tunnels(env):
    key, pub = env.keygen("detach.key")
    hold = env.target(HoldServer())
    srv = env.start_server(allow=[f"127.0.0.1:{hold.port}"], authorized=[pub],
                           extra=["--handshake-rate", "100000", "--open-rate", "100000",
                                  "--max-tunnels", str(MAX_TUNNELS)],
                           log_level="info")
    atk = Attacker(env, srv, key)
    for i in range(RUNS):
        out = atk.run("noread", "--target", f"127.0.0.1:{hold.port}", "--streams", STREAMS,
                      "--hold", "1")
        check(f"streams={STREAMS}" in out, f"run {i}: {out}")
    # The tunnels are gone; what the server still holds for them is in the
    # sessions waiting for a tunnel. Give stream resets time to reach the target.
    deadline = time.monotonic() + t(5)
    bound = MAX_TUNNELS * STREAMS
    while time.monotonic() < deadline and hold.open_now() > bound:
        time.sleep(0.1)
    held = hold.open_now()
    print(f"     {RUNS} sessions of {STREAMS} streams, each left with no tunnel: "
          f"{held} target connections still open (--max-tunnels {MAX_TUNNELS}: "
          f"{bound} at most)")
    check(held <= bound,
          f"sessions with no tunnel hold {held} target connections, more than "
          f"--max-tunnels {MAX_TUNNELS} tunnels of {STREAMS} streams ({bound})")
    check(srv.alive(), "the server exited")
    srv.stop()


def test_detached_sessions_do_not_lock_out_other_keys(env):
    """The other side of that bound: sessions that wait for a tunnel must not
    keep a client that is here now out; at --max-tunnels sessions the oldest
    one without a tunnel ends, whichever key it has."""
    a_key, a_pub = env.keygen("a.key")
    b_key, b_pub = env.keygen("b.key")
    hold = env.target(HoldServer())
    srv = env.start_server(allow=[f"127.0.0.1:{hold.port}"], authorized=[a_pub, b_pub],
                           extra=["--handshake-rate", "100000", "--open-rate", "100000",
                                  "--max-tunnels", str(MAX_TUNNELS)],
                           log_level="info")
    a = Attacker(env, srv, a_key)
    for i in range(MAX_TUNNELS):
        a.run("noread", "--target", f"127.0.0.1:{hold.port}", "--streams", 1, "--hold", "0.5")
    rc, out, err = h.run_cmd(Attacker(env, srv, b_key).argv("handshake"), timeout=t(60))
    print(f"     key A left {MAX_TUNNELS} sessions with no tunnel; key B: exit {rc}, "
          f"{out.strip()}")
    check(rc == 0, f"key B was locked out by key A's sessions waiting for a tunnel: "
          f"exit {rc}, {out.strip()!r} {err.strip()[-300:]!r}")
    srv.wait_log(r"the server holds --max-tunnels sessions", t(5))
    check(srv.alive(), "the server exited")
    srv.stop()


if __name__ == "__main__":
    h.main([test_detached_sessions_bounded_by_max_tunnels,
            test_detached_sessions_do_not_lock_out_other_keys],
           "review: a hostile client against sessions across tunnels")
