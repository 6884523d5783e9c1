#!/usr/bin/env python3
"""Replayed handshakes: a recording proxy sits between a real client and the
server and keeps each tunnel's first handshake message. Sent again on a new
connection, that message must be refused (its timestamp is not newer than
the last one seen for the key and tunnel slot), the refusal logged, and the
connection closed without any reply, while the real tunnels keep working."""

import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402


class RecordingProxy:
    """Forwards TCP connections to a port and records, per connection, the
    first length-prefixed message the client sends (msg1)."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.first_messages = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:  # the server is gone (the test is ending)
                c.close()
                continue
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, record):
        buf = b""
        recorded = not record
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if not recorded:
                buf += data
                if len(buf) >= 2:
                    n = struct.unpack(">H", buf[:2])[0]
                    if len(buf) >= 2 + n:
                        with self.lock:
                            self.first_messages.append(buf[:2 + n])
                        recorded = True
            try:
                dst.sendall(data)
            except OSError:
                return

    def stop(self):
        self.sock.close()


def replay(port, msg, timeout):
    """Sends msg on a new connection; returns what the server answered
    before closing (b"" when it said nothing)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(msg)
    got = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return got


def test_replayed_first_message_is_refused(env):
    echo = env.target(h.EchoServer())
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"])
    proxy = RecordingProxy(srv.port)
    try:
        lport = h.free_port()
        cli = env.start_client(proxy.port, [(lport, "127.0.0.1", echo.port)], tunnels=2)
        with proxy.lock:
            captured = list(proxy.first_messages)
        check(len(captured) >= 2, f"proxy recorded {len(captured)} handshakes, wanted 2")
        for i, msg in enumerate(captured):
            time.sleep(h.LOG_THROTTLE_S)  # one refusal line a second
            mark = srv.mark()
            got = replay(srv.port, msg, t(10))
            check(got == b"", f"replay {i}: server answered {len(got)} bytes")
            srv.wait_log(r"refused: replayed or stale handshake from client " +
                         env.client_pub.replace("+", r"\+"), t(10), since=mark)
            check(srv.count(r"tunnel from \S+ up", mark) == 0,
                  f"replay {i}: server brought a tunnel up")
        # The genuine tunnels were not disturbed by the replays.
        data = h.make_random(1 << 20)
        s = h.connect(lport, timeout=t(10))
        h.send_all(s, data)
        s.shutdown(socket.SHUT_WR)
        back = h.recv_all(s)
        s.close()
        check(back == data, "echo through the tunnels after the replays differs")
        check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a real tunnel went down")
    finally:
        proxy.stop()


def test_tampered_first_message_is_refused_cheaply(env):
    echo = env.target(h.EchoServer())
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"])
    proxy = RecordingProxy(srv.port)
    try:
        lport = h.free_port()
        env.start_client(proxy.port, [(lport, "127.0.0.1", echo.port)], tunnels=1)
        with proxy.lock:
            msg = bytearray(proxy.first_messages[0])
        for pos in (2, 10, 50, len(msg) - 20, len(msg) - 1):
            bad = bytearray(msg)
            bad[pos] ^= 0x01
            time.sleep(h.LOG_THROTTLE_S)  # one refusal line a second
            mark = srv.mark()
            check(replay(srv.port, bytes(bad), t(10)) == b"",
                  f"tampered byte {pos}: server answered")
            srv.wait_log(r"refused: first message fails its MAC", t(10), since=mark)
        # Truncated: the server waits for the rest, then drops it at the
        # handshake deadline; it must never answer.
        mark = srv.mark()
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=t(20))
        s.sendall(bytes(msg[:len(msg) // 2]))
        took, how = h.wait_closed(s, t(20))
        s.close()
        srv.wait_log(r"refused: no handshake within", t(5), since=mark)
    finally:
        proxy.stop()


if __name__ == "__main__":
    h.main([test_replayed_first_message_is_refused,
            test_tampered_first_message_is_refused_cheaply],
           "replayed and tampered handshakes are refused")
