#!/usr/bin/env python3
"""Attacks on the server's handshake path that need restarts or many source
addresses: a recorded first message replayed after a server restart (refused
with --state-dir; without one, refused once it is older than the clock window
at start), and floods of unauthenticated connections from many 127.0.0.x
sources (one source holds at most its share of --max-unauth; under load first
messages without a valid cookie MAC get a cookie reply, no X25519 work; a
real client still gets through)."""

import base64
import hashlib
import os
import re
import selectors
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_replay import RecordingProxy, replay  # noqa: E402
from test_attacks import Attacker  # noqa: E402

REPLAYED = r"refused: replayed or stale handshake from client "
SHARE = r"limit unauthenticated connections per source \(share of --max-unauth\) hit"
WORK = r"handshake work so far: (\d+) first messages with X25519, (\d+) answered with a cookie"
MAX_UNAUTH = 64  # share per source: 64 / 8 = 8
WINDOW = r"refused: first handshake from client .* since the server started is older"


def record_first_message(env, srv, echo):
    """Runs a real client through a recording proxy; returns its msg1."""
    proxy = RecordingProxy(srv.port)
    try:
        lport = h.free_port()
        cli = env.start_client(proxy.port, [(lport, "127.0.0.1", echo.port)], tunnels=1)
        with proxy.lock:
            captured = list(proxy.first_messages)
        check(len(captured) >= 1, "the proxy recorded no handshake")
        cli.stop()
        return captured[0]
    finally:
        proxy.stop()


def test_replay_after_restart_refused_with_state_dir(env):
    echo = env.target(h.EchoServer())
    state = env.path("state")
    os.mkdir(state, 0o700)
    allow = [f"127.0.0.1:{echo.port}"]
    srv = env.start_server(allow=allow, extra=["--state-dir", state])
    msg = record_first_message(env, srv, echo)
    check(os.stat(os.path.join(state, "replay.state")).st_mode & 0o777 == 0o600,
          "replay.state is not mode 0600")
    srv.stop()
    # The same server, restarted: its memory is gone, the state file is not.
    srv2 = env.start_server(allow=allow, extra=["--state-dir", state], name="server2")
    srv2.wait_log(r"replay state in \S+: 1 entries", t(5))
    mark = srv2.mark()
    got = replay(srv2.port, msg, t(10))
    check(got == b"", f"after the restart the server answered the replay ({len(got)} bytes)")
    srv2.wait_log(REPLAYED + re.escape(env.client_pub), t(10), since=mark)
    check(srv2.count(r"tunnel from \S+ up", mark) == 0, "the replay brought a tunnel up")
    # A genuine client still connects after the restart.
    lport = h.free_port()
    env.start_client(srv2.port, [(lport, "127.0.0.1", echo.port)], tunnels=2, name="client2")
    s = h.connect(lport, timeout=t(10))
    s.sendall(b"ping")
    check(s.recv(4) == b"ping", "no echo through the tunnel after the restart")
    s.close()


def test_old_first_message_refused_without_state_dir(env):
    """Without a state dir the server refuses first messages stamped more
    than 120 s before its start: wm_attack stamps one 10 minutes old."""
    echo = env.target(h.EchoServer())
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"], extra=["--state-dir", "none"])
    srv.wait_log(r"no --state-dir: after a restart", t(5))
    atk = Attacker(env, srv, env.client_key)
    res = atk.run("handshake", "--age", "600", expect_rc=3)
    check(res.startswith("refused"), f"a 10-minute-old first message: {res}")
    srv.wait_log(WINDOW, t(5))
    # Within the window (a client whose clock is 30 s behind): accepted.
    res = atk.run("handshake", "--age", "30")
    check(res.startswith("up"), f"a 30-second-old first message: {res}")


def fake_msg1(server_pub_b64):
    """A first message with a valid mac1 (anyone who knows the server's
    public key can make one) and random Noise bytes: without cookies the
    server pays X25519 to find out it is junk."""
    pub = base64.b64decode(server_pub_b64)
    key = hashlib.blake2b(b"mac1" + pub + bytes(32), digest_size=32).digest()
    body = b"WMX1" + os.urandom(32 + 48 + 44 + 16)
    msg = body + hashlib.blake2b(body, digest_size=16, key=key).digest()
    return struct.pack(">H", len(msg)) + msg


class Flood:
    """Keeps up to per_source unauthenticated connections open from each of
    the given source addresses, reconnecting whenever the server closes one;
    every other connection sends a first message with a valid mac1 and then
    ignores whatever comes back (cookie replies included). Bounded: stops
    after duration seconds or on stop()."""

    def __init__(self, port, server_pub, sources, per_source, duration, msg1_every=2):
        self.port, self.pub = port, server_pub
        self.sources, self.per_source = sources, per_source
        self.msg1_every = msg1_every
        self.deadline = time.monotonic() + duration
        self.sent_msg1 = self.cookies = self.closed_fast = self.connects = 0
        self.held = {src: 0 for src in sources}
        self.peak_held = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _open(self, sel, src, n):
        try:
            s = socket.socket()
            s.settimeout(1)
            s.bind((src, 0))
            s.connect(("127.0.0.1", self.port))
            if n % self.msg1_every == 0:
                s.sendall(fake_msg1(self.pub))
                self.sent_msg1 += 1
            s.setblocking(False)
        except OSError:
            s.close()
            return
        self.connects += 1
        self.held[src] += 1
        sel.register(s, selectors.EVENT_READ, (src, time.monotonic()))

    def _run(self):
        sel = selectors.DefaultSelector()
        n = 0
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            for src in self.sources:
                while self.held[src] < self.per_source and not self._stop.is_set():
                    self._open(sel, src, n)
                    n += 1
                    if self.held[src] < self.per_source and n % 64 == 0:
                        break  # let the event loop run between bursts
            self.peak_held = max(self.peak_held, sum(self.held.values()))
            for key, _ in sel.select(timeout=0.02):
                s, (src, opened) = key.fileobj, key.data
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data and data[2:6] == b"WMC1":
                    self.cookies += 1
                    continue
                if data:
                    continue
                if time.monotonic() - opened < 0.5:
                    self.closed_fast += 1
                sel.unregister(s)
                s.close()
                self.held[src] -= 1
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()

    def stop(self):
        self._stop.set()
        self._th.join(t(10))


def test_one_source_holds_only_its_share(env):
    srv = env.start_server(allow=[], extra=["--max-unauth", str(MAX_UNAUTH),
                                            "--handshake-rate", "100000"])
    share = MAX_UNAUTH // 8
    socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=t(5),
                                      source_address=("127.0.4.1", 0)) for _ in range(40)]
    share_closed = 40 - share
    closed_set = set()
    deadline = time.monotonic() + t(5)
    settle = None
    while time.monotonic() < deadline:
        for i, s in enumerate(socks):
            if i in closed_set:
                continue
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed_set.add(i)
            except BlockingIOError:
                pass
            except OSError:
                closed_set.add(i)
        if len(closed_set) >= share_closed and settle is None:
            settle = time.monotonic() + 0.5  # then make sure no more close
        if settle is not None and time.monotonic() > settle:
            break
        time.sleep(0.05)
    closed = len(closed_set)
    print(f"     one source, 40 connections: {40 - closed} held, {closed} closed at accept "
          f"(share {share} of --max-unauth {MAX_UNAUTH})")
    check(40 - closed == share, f"one source holds {40 - closed} unauthenticated "
                                f"connections, its share is {share}")
    srv.wait_log(SHARE, t(5))
    # Another source still gets its own share.
    more = [socket.create_connection(("127.0.0.1", srv.port), timeout=t(5),
                                     source_address=("127.0.4.2", 0)) for _ in range(share)]
    time.sleep(0.3)
    for s in more:
        s.setblocking(False)
        try:
            check(s.recv(1) != b"", "the second source's connection was closed")
        except BlockingIOError:
            pass
        s.close()
    for s in socks:
        s.close()


def test_flood_from_many_sources_real_client_gets_through(env):
    echo = env.target(h.EchoServer())
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"],
                           extra=["--max-unauth", str(MAX_UNAUTH), "--handshake-rate",
                                  "100000"], log_level="info")
    sources = [f"127.0.5.{i}" for i in range(1, 41)]  # 40 x share 8 = 5 tables
    flood = Flood(srv.port, env.server_pub, sources, MAX_UNAUTH // 8, t(40))
    try:
        time.sleep(2)
        check(flood.peak_held >= MAX_UNAUTH, f"the flood held only {flood.peak_held} "
                                             f"connections at its peak")
        t0 = time.monotonic()
        lport = h.free_port()
        cli = env.start_client(srv.port, [(lport, "127.0.0.1", echo.port)], tunnels=2,
                               wait=False, log_level="info")
        cli.wait_log(r"tunnel \d+ to \S+ up", t(20), count=2)
        took = time.monotonic() - t0
        s = h.connect(lport, timeout=t(10))
        s.sendall(b"through the flood")
        check(s.recv(64) == b"through the flood", "no echo through the tunnel")
        s.close()
    finally:
        flood.stop()
    retried = cli.count(r"server under load: retrying the handshake with its cookie")
    srv.stop()
    m = re.findall(WORK, srv.log_text())
    check(m, "the server's summary has no handshake work line")
    x25519, cookies = int(m[-1][0]), int(m[-1][1])
    print(f"     flood: {flood.connects} connections from {len(sources)} sources, "
          f"{flood.sent_msg1} first messages with a valid mac1, {flood.cookies} cookie "
          f"replies seen by the flood; server: {x25519} X25519 handshakes, {cookies} "
          f"cookie replies; real client up in {took:.1f} s ({retried} cookie retries)")
    check(cookies > 0, "the server never answered with a cookie under load")
    check(x25519 < flood.sent_msg1 // 2,
          f"the server did X25519 work for {x25519} of {flood.sent_msg1} flood messages")


def test_first_message_flood_costs_bounded_x25519(env):
    """Every flood connection sends a first message with a valid mac1 and
    random Noise bytes, then waits. Past the X25519 budget (--max-unauth a
    second) they get cookie replies, not public-key work."""
    srv = env.start_server(allow=[], extra=["--max-unauth", str(MAX_UNAUTH),
                                            "--handshake-rate", "100000"], log_level="info")
    seconds = 4
    flood = Flood(srv.port, env.server_pub, [f"127.0.7.{i}" for i in range(1, 41)], 2,
                  seconds, msg1_every=1)
    time.sleep(seconds + 0.5)
    flood.stop()
    srv.stop()
    txt = srv.log_text()
    m = re.findall(WORK, txt)
    check(m, "the server's summary has no handshake work line")
    x25519, cookies = int(m[-1][0]), int(m[-1][1])
    failed = int(re.findall(r"(\d+) failed handshakes", txt)[-1])
    print(f"     first-message flood, {seconds} s: {flood.sent_msg1} sent; server: {x25519} "
          f"with X25519 ({failed} failed handshakes), {cookies} cookie replies")
    budget = MAX_UNAUTH * (seconds + 2)
    check(x25519 <= budget, f"{x25519} X25519 handshakes in {seconds} s, budget {budget}")
    check(cookies > 0, "no cookie replies under a first-message flood")


if __name__ == "__main__":
    h.main([test_replay_after_restart_refused_with_state_dir,
            test_old_first_message_refused_without_state_dir,
            test_one_source_holds_only_its_share,
            test_first_message_flood_costs_bounded_x25519,
            test_flood_from_many_sources_real_client_gets_through], __doc__)
