#!/usr/bin/env python3
"""Attacks on the client's queues and listeners (security issue points 2, 4
and 13), against the real daemons on loopback:

- a SOCKS client that sends greeting and CONNECT together and resets
  (SO_LINGER 0) while no tunnel is up: its relay closes while it waits in
  the pending queue. The queue must forget it; the old code kept a pointer
  to the freed relay and used it when the 15 s wait ran out or when a
  tunnel came up (use-after-free: the ASan build reports it, a release
  build may crash or hang);
- file-descriptor exhaustion (EMFILE) on a listener: the daemon must back
  off instead of spinning on accept() and logging a line per try;
- reverse listeners: a second key cannot take over a listener while its
  owner reconnects, and a reverse listener caps its connections.
"""

import os
import resource
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

SOCKS_GREETING = b"\x05\x01\x00"


def socks_connect_request(host, port):
    return b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack(">H", port)


def reset_after_request(port, target_port):
    """Greeting and CONNECT in one write, then close with RST before the
    client's method reply can be written."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(t(5))
    s.connect(("127.0.0.1", port))
    s.sendall(SOCKS_GREETING + socks_connect_request("127.0.0.1", target_port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def socks_echo(port, target_port, payload=b"ping through socks\n"):
    """A full SOCKS5 CONNECT through the client; returns what the echo sent back."""
    with h.connect(port, timeout=t(20)) as s:
        s.sendall(SOCKS_GREETING)
        check(s.recv(2) == b"\x05\x00", "SOCKS method reply")
        s.sendall(socks_connect_request("127.0.0.1", target_port))
        rep = b""
        while len(rep) < 10:
            b = s.recv(10 - len(rep))
            check(b, "client closed before the CONNECT reply")
            rep += b
        check(rep[1] == 0, f"CONNECT refused: reply code {rep[1]}")
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = s.recv(4096)
            if not b:
                break
            got += b
        return got


def client_alive(cli, what):
    check(cli.alive(), f"client died {what} (rc {cli.proc.returncode}): {cli.tail(15)}")
    cli.check_sanitizer()


def test_pending_reset_then_timeout(env):
    """Point 2, timer path: no server at all; resets wait in the queue;
    after CLIENT_PENDING_TIMEOUT_S (15 s) the queue times out what is left."""
    echo = env.target(h.EchoServer())
    dead = h.free_port()  # nothing listens there: every tunnel attempt fails
    socks = h.free_port()
    cli = h.start_frontend_client(env, dead, socks=socks, wait=False, tunnels=1)
    cli.wait_log(r"SOCKS5 proxy on 127\.0\.0\.1:%d" % socks, t(10))
    for _ in range(20):
        reset_after_request(socks, echo.port)
    # One well-behaved client waits in the queue too: it must get its
    # SOCKS failure reply when the wait runs out, not a crash.
    s = h.connect(socks, timeout=t(30))
    s.sendall(SOCKS_GREETING + socks_connect_request("127.0.0.1", echo.port))
    check(s.recv(2) == b"\x05\x00", "SOCKS method reply")
    mark = cli.mark()
    cli.wait_log(r"no tunnel to the server for 15 s; closing", t(25), since=mark)
    rep = s.recv(10)
    s.close()
    check(len(rep) >= 2 and rep[1] != 0,
          f"waiting SOCKS client got {rep!r}, expected a failure reply")
    time.sleep(0.5)
    client_alive(cli, "after the pending queue timed out")
    n = cli.count(r"no tunnel to the server for 15 s; closing", since=mark)
    check(n == 1, f"{n} queued connections timed out, expected 1 (the reset ones must "
          f"have left the queue when they closed)")
    print("     20 reset SOCKS requests left the queue; the one left timed out cleanly")


def test_pending_reset_then_tunnel_up(env):
    """Point 2, drain path: resets wait while the server is down, then the
    server comes up and the queue drains into the new tunnel."""
    echo = env.target(h.EchoServer())
    sport = h.free_port()
    socks = h.free_port()
    cli = h.start_frontend_client(env, sport, socks=socks, wait=False, tunnels=1)
    cli.wait_log(r"SOCKS5 proxy on 127\.0\.0\.1:%d" % socks, t(10))
    for _ in range(20):
        reset_after_request(socks, echo.port)
    time.sleep(0.3)
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"], port=sport)
    cli.wait_log(r"tunnel \d+ to \S+ up", t(40))
    time.sleep(0.5)
    client_alive(cli, "when the tunnel came up and the queue drained")
    got = socks_echo(socks, echo.port)
    check(got == b"ping through socks\n", f"echo through SOCKS after the drain: {got!r}")
    client_alive(cli, "after the drain")
    srv.check_sanitizer()
    print("     20 reset SOCKS requests were dropped from the queue; SOCKS works after")


TESTS = [
    test_pending_reset_then_timeout,
    test_pending_reset_then_tunnel_up,
]

if __name__ == "__main__":
    h.main(TESTS, __doc__)
