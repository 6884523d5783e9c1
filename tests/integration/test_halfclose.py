#!/usr/bin/env python3
"""Half-close through the pair: a FIN in one direction must not end the
other. The client half-closes first while the target keeps answering, and
the target half-closes first while the client keeps sending."""

import hashlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402

UP = h.make_random(1 * MB, seed=11)
DOWN = h.make_text(3 * MB, seed=12)


def pair(env, server):
    target = env.target(server)
    srv = env.start_server(allow=[f"127.0.0.1:{target.port}"])
    lport = h.free_port()
    env.start_client(srv.port, [(lport, "127.0.0.1", target.port)])
    return target, lport


def test_client_half_closes_first(env):
    # Target: read to EOF, then (after a pause, in pieces) send DOWN, close.
    def after_eof(c, idx, server):
        hs = hashlib.sha256()
        n = h.recv_all(c, hasher=hs)
        server.add_result((n, hs.hexdigest()))
        time.sleep(0.5)
        for i in range(0, len(DOWN), 256 * 1024):
            c.sendall(DOWN[i:i + 256 * 1024])
            time.sleep(0.02)
        c.shutdown(socket.SHUT_WR)

    target, lport = pair(env, h.FuncServer(after_eof))

    def one():
        with h.connect(lport, timeout=t(20)) as s:
            h.send_all(s, UP)
            s.shutdown(socket.SHUT_WR)
            hs = hashlib.sha256()
            n = h.recv_all(s, hasher=hs)
            return n, hs.hexdigest()

    got = h.parallel([one] * 6, timeout=t(40))
    seen = target.wait_results(6, t(10))
    for n, digest in seen:
        check((n, digest) == (len(UP), h.sha(UP)),
              f"target got {n} bytes {digest} before EOF, expected {len(UP)} {h.sha(UP)}")
    for n, digest in got:
        check((n, digest) == (len(DOWN), h.sha(DOWN)),
              f"client got {n} bytes {digest} after its FIN, expected {len(DOWN)} "
              f"{h.sha(DOWN)}")
    check(not target.errors, f"target errors: {target.errors}")


def test_target_half_closes_first(env):
    # Target: send DOWN at once, half-close, then read everything to EOF.
    def first(c, idx, server):
        h.send_all(c, DOWN)
        c.shutdown(socket.SHUT_WR)
        hs = hashlib.sha256()
        n = h.recv_all(c, hasher=hs)
        server.add_result((n, hs.hexdigest()))

    target, lport = pair(env, h.FuncServer(first))
    up = h.make_random(4 * MB, seed=13)

    def one():
        with h.connect(lport, timeout=t(20)) as s:
            # Some data before the target's FIN arrives...
            h.send_all(s, up[:MB])
            hs = hashlib.sha256()
            n = h.recv_all(s, hasher=hs)
            # ...and more after it, slowly, then our own FIN.
            for i in range(MB, len(up), 256 * 1024):
                s.sendall(up[i:i + 256 * 1024])
                time.sleep(0.02)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(t(10))
            rest = s.recv(1)  # the target closes once it has read our FIN
            check(rest == b"", f"data after EOF: {rest!r}")
            return n, hs.hexdigest()

    got = h.parallel([one] * 6, timeout=t(40))
    for n, digest in got:
        check((n, digest) == (len(DOWN), h.sha(DOWN)),
              f"client got {n} bytes {digest}, expected {len(DOWN)} {h.sha(DOWN)}")
    seen = target.wait_results(6, t(10))
    for n, digest in seen:
        check((n, digest) == (len(up), h.sha(up)),
              f"target got {n} bytes {digest} after its own FIN, expected {len(up)} "
              f"{h.sha(up)}")
    check(not target.errors, f"target errors: {target.errors}")


def test_echo_large_with_half_close(env):
    # More than a stream window each way, so flow control runs while one
    # side is already half-closed.
    target, lport = pair(env, h.EchoServer())
    data = h.make_text(12 * MB, seed=14)

    def one():
        with h.connect(lport, timeout=t(30)) as s:
            sent = threading.Thread(target=lambda: (h.send_all(s, data),
                                                    s.shutdown(socket.SHUT_WR)))
            sent.start()
            hs = hashlib.sha256()
            n = h.recv_all(s, hasher=hs)
            sent.join(t(30))
            return n, hs.hexdigest()

    got = h.parallel([one] * 2, timeout=t(60))
    for n, digest in got:
        check((n, digest) == (len(data), h.sha(data)),
              f"echo returned {n} bytes {digest}, expected {len(data)} {h.sha(data)}")
    check(target.wait_results(2, t(10)) == [len(data)] * 2, "echo target byte counts")


if __name__ == "__main__":
    h.main([test_client_half_closes_first, test_target_half_closes_first,
            test_echo_large_with_half_close], __doc__)
