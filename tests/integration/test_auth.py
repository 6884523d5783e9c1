#!/usr/bin/env python3
"""Authentication: a client key missing from the authorized keys, a client
pinning the wrong server key, and pre-shared keys (wrong, missing on one
side, right on both). A failed client must never get a tunnel up, must keep
no local connection hanging, and the server must say whom it refused."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

PENDING_TIMEOUT = 15  # client-side/main.c PENDING_TIMEOUT_S, checked once a second
TUNNEL_UP = r"tunnel \d+ to \S+ up"
MAC_REFUSED = r"refused: first message fails its MAC"
OBSERVE = 3.0  # seconds a failing client gets to (not) bring a tunnel up


def held_connection(lport):
    """Open a local connection and send a little; the client holds it while
    it has no tunnel."""
    s = h.connect(lport, timeout=t(5))
    s.sendall(b"hello, is anybody there?\n")
    return s, time.monotonic()


def expect_closed_in_time(s, opened, what):
    limit = PENDING_TIMEOUT + 1 + t(3)
    left = limit - (time.monotonic() - opened)
    took, how = h.wait_closed(s, max(left, 0.1))
    total = time.monotonic() - opened
    print(f"     {what}: local connection closed after {total:.1f} s ({how})")
    s.close()


def expect_no_tunnel(cli, srv, what, since=0):
    check(cli.alive(), f"{what}: client exited (rc {cli.proc.poll()})")
    check(cli.count(TUNNEL_UP) == 0 and cli.count(r"connected to ") == 0,
          f"{what}: client brought a tunnel up:\n{cli.tail(10)}")
    check(srv.count(r"tunnel from \S+ up", since) == 0,
          f"{what}: server accepted a tunnel:\n{srv.tail(10)}")


def test_unknown_client_key(env):
    target = env.target(h.RecorderServer())
    other_key, other_pub = env.keygen("other.key")
    srv = env.start_server(allow=[f"127.0.0.1:{target.port}"], authorized=[other_pub])
    lport = h.free_port()
    cli = env.start_client(srv.port, [(lport, "127.0.0.1", target.port)], wait=False)
    cli.wait_log(r"forwarding 127\.0\.0\.1:%d " % lport, t(10))
    s, opened = held_connection(lport)
    m = srv.wait_log(r"refused: client key (\S+) is not in the authorized keys", t(10))
    check(m.group(1) == env.client_pub,
          f"server refused key {m.group(1)}, the client's is {env.client_pub}")
    time.sleep(OBSERVE)
    expect_no_tunnel(cli, srv, "unknown client key")
    expect_closed_in_time(s, opened, "unknown client key")
    check(target.accepts == 0, f"target saw {target.accepts} connections")
    # The client keeps retrying with backoff, and each try is refused.
    expect_no_tunnel(cli, srv, "unknown client key, later")
    srv.stop()
    refused = srv.summary()["tunnels"]
    check(refused >= 2, f"server refused {refused} tunnels: client not retrying?")


def test_wrong_server_key(env):
    target = env.target(h.RecorderServer())
    _, wrong_pub = env.keygen("impostor.key")
    srv = env.start_server(allow=[f"127.0.0.1:{target.port}"])
    lport = h.free_port()
    cli = env.start_client(srv.port, [(lport, "127.0.0.1", target.port)],
                           server_key=wrong_pub, wait=False)
    cli.wait_log(r"forwarding 127\.0\.0\.1:%d " % lport, t(10))
    s, opened = held_connection(lport)
    # The client must report the failed attempt.
    cli.wait_log(r"tunnel \d+ to \S+: ", t(10))
    srv.wait_log(MAC_REFUSED, t(10))
    time.sleep(OBSERVE)
    expect_no_tunnel(cli, srv, "wrong server key")
    expect_closed_in_time(s, opened, "wrong server key")
    check(target.accepts == 0, f"target saw {target.accepts} connections")
    # The right key on the same server works: the failure was the pin.
    lport2 = h.free_port()
    env.start_client(srv.port, [(lport2, "127.0.0.1", target.port)], name="client-right")


def test_psk(env):
    sink = env.target(h.SinkServer())
    allow = [f"127.0.0.1:{sink.port}"]
    psk_a, _ = env.keygen("a.psk", psk=True)
    psk_b, _ = env.keygen("b.psk", psk=True)
    srv_psk = env.start_server(allow=allow, psk=psk_a, name="server-psk")
    srv_plain = env.start_server(allow=allow, name="server-nopsk")
    bad = [
        ("wrong psk", srv_psk, psk_b),
        ("client without psk", srv_psk, None),
        ("server without psk", srv_plain, psk_a),
    ]
    clients = []
    for i, (what, srv, psk) in enumerate(bad):
        lport = h.free_port()
        cli = env.start_client(srv.port, [(lport, "127.0.0.1", sink.port)], psk=psk,
                               wait=False, name=f"client-bad{i}")
        clients.append((what, srv, cli, lport))
    for what, srv, cli, lport in clients:
        cli.wait_log(r"tunnel \d+ to \S+: ", t(10))
    srv_psk.wait_log(MAC_REFUSED, t(10))  # throttled: the second may be held back
    srv_plain.wait_log(MAC_REFUSED, t(10))
    time.sleep(OBSERVE)
    for what, srv, cli, lport in clients:
        expect_no_tunnel(cli, srv, what)
    check(sink.accepts == 0, f"sink saw {sink.accepts} connections")
    # Right psk on both ends: tunnels up, data through.
    lport = h.free_port()
    env.start_client(srv_psk.port, [(lport, "127.0.0.1", sink.port)], psk=psk_a,
                     name="client-goodpsk")
    data = h.make_random(1 << 20)
    reply = h.upload(lport, data, timeout=t(20))
    check(reply == h.sha(data), f"with matching psk: sink hash {reply}, expected {h.sha(data)}")
    srv_psk.wait_log(r"tunnel from \S+ up: client %s" % re.escape(env.client_pub), t(5))
    srv_psk.stop()
    bad_mac = srv_psk.summary()["bad_mac"]
    check(bad_mac >= 2, f"server with psk closed {bad_mac} connections for a bad MAC, "
                        "expected one at least for each of the two wrong clients")


if __name__ == "__main__":
    h.main([test_unknown_client_key, test_wrong_server_key, test_psk], __doc__)
