#!/usr/bin/env python3
"""Reverse forwards (wanmux-client --reverse, wanmux-server --allow-listen):
the server listens where the rule permits and carries each connection back
to a target on the client's side (a large download and upload compared by
SHA-256, several at once); a port or address outside --allow-listen is
refused (the client logs it, nothing listens there, other forwards still
work); after the server restarts, the tunnels reconnect and the listener
comes back."""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402


def nothing_listens(port, host="127.0.0.1"):
    """True if a connection to host:port is refused."""
    try:
        socket.create_connection((host, port), timeout=t(3)).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_listening(port, timeout, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=t(3)).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise h.TestFailure(f"nothing listens on {host}:{port} after {timeout:.0f} s "
                                    f"({e})")
            time.sleep(0.1)


def fetch(env, port, path, out=None):
    rc, body, err = h.curl(env, [f"http://127.0.0.1:{port}/{path}"], timeout=t(60), out=out)
    check(rc == 0, f"curl http://127.0.0.1:{port}/{path} failed ({rc}): {err.strip()}")
    return body


def reverse_env(env, big):
    """Client-side HTTP origin and sink; server permitting two ports; client
    with a reverse forward to each. Returns (origin, sink, srv, cli, sport_http,
    sport_sink)."""
    origin = env.target(h.HttpOrigin(files={"index.html": b"client side\n", "big.bin": big}))
    sink = env.target(h.SinkServer())
    sp_http, sp_sink = h.free_port(), h.free_port()
    srv = env.start_server(allow=[], extra=["--allow-listen", f"127.0.0.1:{sp_http}",
                                            "--allow-listen", f"127.0.0.1:{sp_sink}"])
    cli = h.start_frontend_client(
        env, srv.port, reverse=[f"{sp_http}:127.0.0.1:{origin.port}",
                                f"127.0.0.1:{sp_sink}:127.0.0.1:{sink.port}"])
    for sp, tp in ((sp_http, origin.port), (sp_sink, sink.port)):
        cli.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d, connections go to "
                     r"127\.0\.0\.1:%d" % (sp, tp), t(10))
        srv.wait_log(r"reverse forward for client .*: listening on 127\.0\.0\.1:%d" % sp, t(5))
    return origin, sink, srv, cli, sp_http, sp_sink


def test_reverse_transfer(env):
    big = h.make_random(16 << 20, seed=9)
    origin, sink, srv, cli, sp_http, sp_sink = reverse_env(env, big)
    check(fetch(env, sp_http, "index.html") == b"client side\n", "small page differs")
    t0 = time.monotonic()
    digest = fetch(env, sp_http, "big.bin", out=env.path("big.out"))
    check(digest == h.sha(big), f"16 MiB through the reverse forward: SHA-256 {digest}, "
          f"expected {h.sha(big)}")
    print(f"     16 MiB download via reverse forward intact ({time.monotonic() - t0:.1f} s)")
    up = h.make_text(8 << 20, seed=4)
    check(h.upload(sp_sink, up, timeout=t(30)) == h.sha(up),
          "8 MiB upload through the reverse forward: sink hash differs")
    print("     8 MiB upload via reverse forward intact")
    # Several at once, both directions.
    jobs = [lambda i=i: fetch(env, sp_http, "big.bin", out=env.path(f"par{i}.out"))
            for i in range(4)]
    jobs += [lambda: h.upload(sp_sink, up, timeout=t(60)) for _ in range(2)]
    res = h.parallel(jobs, timeout=t(90))
    check(all(r == h.sha(big) for r in res[:4]), "a parallel reverse download differs")
    check(all(r == h.sha(up) for r in res[4:]), "a parallel reverse upload differs")
    print("     4 downloads + 2 uploads at once intact")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a tunnel went down")


def test_reverse_not_allowed(env):
    origin = env.target(h.HttpOrigin(files={"index.html": b"client side\n"}))
    sp_ok, sp_bad = h.free_port(), h.free_port()
    while sp_bad in (sp_ok,):
        sp_bad = h.free_port()
    srv = env.start_server(allow=[], extra=["--allow-listen", f"127.0.0.1:{sp_ok}"])
    cli = h.start_frontend_client(
        env, srv.port, reverse=[f"{sp_bad}:127.0.0.1:{origin.port}",
                                f"127.0.0.2:{sp_ok}:127.0.0.1:{origin.port}",
                                f"{sp_ok}:127.0.0.1:{origin.port}"])
    m = cli.wait_log(r"reverse forward 127\.0\.0\.1:%d refused by the server: (.*)$" % sp_bad,
                     t(10))
    print(f"     port outside --allow-listen: client logs '{m.group(0).split(': ', 1)[1]}'")
    cli.wait_log(r"reverse forward 127\.0\.0\.2:%d refused by the server" % sp_ok, t(10))
    print("     address outside --allow-listen (127.0.0.2): refused")
    srv.wait_log(r"asked to listen on 127\.0\.0\.1:%d: no --allow-listen rule" % sp_bad, t(5))
    cli.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp_ok, t(10))
    check(nothing_listens(sp_bad), f"something listens on the refused port {sp_bad}")
    check(nothing_listens(sp_ok, "127.0.0.2"),
          f"something listens on the refused 127.0.0.2:{sp_ok}")
    check(fetch(env, sp_ok, "index.html") == b"client side\n",
          "the permitted reverse forward next to refused ones does not work")
    check(cli.alive() and srv.alive(), "a daemon died")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a refused reverse took a tunnel down")


def test_reverse_after_server_restart(env):
    big = h.make_random(4 << 20, seed=2)
    origin, sink, srv, cli, sp_http, sp_sink = reverse_env(env, big)
    check(fetch(env, sp_http, "big.bin", out=env.path("a.out")) == h.sha(big),
          "before the restart: download differs")
    # A clean stop, then a crash (SIGKILL): each time the tunnels come back
    # and the server listens for the reverse forwards again.
    for n, sig in ((2, signal.SIGTERM), (3, signal.SIGKILL)):
        mark = cli.mark()
        if sig == signal.SIGKILL:
            srv.stop(sig=sig, expect_rc=None)
        else:
            srv.stop(sig=sig)
        cli.wait_log(r"tunnel \d+ to \S+ down", t(10), since=mark)
        check(nothing_listens(sp_http), "the reverse port still listens with the server gone")
        time.sleep(0.5)
        srv = env.start_server(allow=[], port=srv.port, name=f"server{n}",
                               extra=["--allow-listen", f"127.0.0.1:{sp_http}",
                                      "--allow-listen", f"127.0.0.1:{sp_sink}"])
        t0 = time.monotonic()
        cli.wait_log(r"tunnel \d+ to \S+ up", t(40), since=mark, count=cli.tunnels)
        for sp in (sp_http, sp_sink):
            srv.wait_log(r"reverse forward for client .*: listening on 127\.0\.0\.1:%d" % sp,
                         t(10))
        wait_listening(sp_http, t(10))
        print(f"     after {signal.Signals(sig).name}: tunnels and reverse listeners back "
              f"{time.monotonic() - t0:.1f} s after the restart")
        check(fetch(env, sp_http, "big.bin", out=env.path(f"b{n}.out")) == h.sha(big),
              f"after restart {n - 1}: download differs")
        up = h.make_random(2 << 20)
        check(h.upload(sp_sink, up, timeout=t(30)) == h.sha(up),
              f"after restart {n - 1}: upload differs")
    print("     download and upload through the reverse forwards work again")


def test_reverse_target_down(env):
    """The client-side target refuses: the connection on the server's port
    is closed promptly, the tunnels stay up, and it works once the target
    is back."""
    gone = env.target(h.RefusingPort())
    port = gone.port
    sp = h.free_port()
    srv = env.start_server(allow=[], extra=["--allow-listen", f"127.0.0.1:{sp}"])
    cli = h.start_frontend_client(env, srv.port, reverse=[f"{sp}:127.0.0.1:{port}"])
    cli.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp, t(10))
    for i in range(3):
        t0 = time.monotonic()
        try:
            s = h.connect(sp, timeout=t(5))
        except ConnectionResetError:
            # The server's reset can arrive before connect() with a timeout
            # has checked the socket's state: closed promptly all the same.
            print(f"     target down #{i}: reset before connect() returned "
                  f"({(time.monotonic() - t0) * 1000:.0f} ms)")
            continue
        with s:
            try:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            except OSError:
                pass
            took, how = h.wait_closed(s, t(3))
        print(f"     target down #{i}: server-side connection closed after "
              f"{took * 1000:.0f} ms ({how})")
    gone.stop()
    origin = env.target(h.HttpOrigin(files={"index.html": b"back\n"}, port=port))
    check(fetch(env, sp, "index.html") == b"back\n", "reverse forward after the target came back")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a refused target took a tunnel down")
    check(srv.alive() and cli.alive(), "a daemon died")


if __name__ == "__main__":
    h.main([test_reverse_transfer, test_reverse_not_allowed, test_reverse_target_down,
            test_reverse_after_server_restart],
           __doc__)
