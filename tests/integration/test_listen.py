#!/usr/bin/env python3
"""Listening on several addresses: one wanmux-server with --listen given for
127.0.0.1 and for [::1] (same port) is reached by a client over each, and a
transfer through each is intact; one wanmux-client with --socks (and
--http-proxy) given twice serves on both addresses. Needs an IPv6 loopback
(exits 77 without one)."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402


def dual_stack_port():
    """A port free on both 127.0.0.1 and ::1 a moment ago."""
    for _ in range(50):
        p = h.free_port()
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise h.TestFailure("no port free on both 127.0.0.1 and ::1")


def test_server_dual_stack(env):
    sink = env.target(h.SinkServer())
    port = dual_stack_port()
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"], port=port,
                           extra=["--listen", f"[::1]:{port}"])
    m = srv.wait_log(r"listening on 127\.0\.0\.1:%d, \[::1\]:%d, server key" % (port, port),
                     t(5))
    print(f"     server: {m.group(0)[:60]}...")
    l4, l6 = h.free_port(), h.free_port()
    env.start_client(port, [(l4, "127.0.0.1", sink.port)], name="client_v4", tunnels=2)
    c6 = env.start_client(port, [(l6, "127.0.0.1", sink.port)], name="client_v6", tunnels=2,
                          extra=["--server", f"[::1]:{port}"])
    data = h.make_text(2 << 20, seed=8)
    check(h.upload(l4, data, timeout=t(20)) == h.sha(data), "via 127.0.0.1: hash differs")
    check(h.upload(l6, data, timeout=t(20)) == h.sha(data), "via [::1]: hash differs")
    n4 = srv.count(r"tunnel from 127\.0\.0\.1:\d+ up")
    n6 = srv.count(r"tunnel from \[::1\]:\d+ up")
    check(n4 == 2 and n6 == 2, f"tunnels up: {n4} over IPv4, {n6} over IPv6; expected 2 and 2")
    check(c6.count(r"tunnel \d+ to \S+ down") == 0, "an IPv6 tunnel went down")
    print(f"     2 tunnels over 127.0.0.1 and 2 over [::1], 2 MiB intact through each")


def test_client_repeated_frontends(env):
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"])
    sp = dual_stack_port()
    hp4, hp6 = h.free_port(), dual_stack_port()
    h.start_frontend_client(env, srv.port, extra=["--socks", f"127.0.0.1:{sp}",
                                                  "--socks", f"[::1]:{sp}",
                                                  "--http-proxy", f"127.0.0.1:{hp4}",
                                                  "--http-proxy", f"[::1]:{hp6}"])
    data = h.make_random(256 << 10, seed=4)
    for host, fam in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(t(10))
        s.connect((host, sp))
        check(h.socks5_greet(s, (0,)) == 0, f"SOCKS on {host}: no-auth not chosen")
        s.sendall(h.socks5_request_bytes(1, h.SOCKS5_IPV4, "127.0.0.1", sink.port))
        rep = h.socks5_read_reply(s)
        check(rep == 0, f"SOCKS on {host}: CONNECT answered {rep}")
        h.send_all(s, data)
        s.shutdown(socket.SHUT_WR)
        got = h.recv_all(s, limit=1024).decode().strip()
        s.close()
        check(got == h.sha(data), f"SOCKS on {host}: hash differs")
    for host, port in (("127.0.0.1", hp4), ("[::1]", hp6)):
        rc, body, err = h.curl(env, ["-o", "/dev/null", "-w", "%{http_code}",
                                     f"http://{host}:{port}/nothing-here"])
        # Not configured as a target: the proxy answers by itself (403/502), which
        # is enough to show it listens on that address.
        check(rc == 0 and body.decode().isdigit(), f"HTTP proxy on {host}: rc {rc} {err!r}")
    print("     SOCKS5 on 127.0.0.1 and [::1] (same port) both carry a stream; "
          "HTTP proxy answers on both")


if __name__ == "__main__":
    ok, why = h.have_ipv6_loopback()
    if not ok:
        print(f"SKIP: {why}")
        sys.exit(77)
    h.main([test_server_dual_stack, test_client_repeated_frontends],
           __doc__.splitlines()[0])
