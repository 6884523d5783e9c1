#!/usr/bin/env python3
"""Tunnel connections killed under a session (`ss -K`), on loopback.

An upload and a download of 16 MiB each run at once through a client with
4 tunnels, paced so that they last a few seconds; three times during them
every tunnel TCP connection is destroyed with `ss -K` (filtered on the
server's port, so only this test's tunnels):

- killing the client's ends (the client sees ECONNABORTED, the server a
  reset),
- killing the server's ends (the other way round).

Both transfers must finish intact (SHA-256 at both ends) with no reset or
error seen by the application, and the client must have brought its
tunnels back each time.

Needs root (CAP_NET_ADMIN) and a kernel with INET_DIAG_DESTROY; otherwise it
says why and exits 77.
"""

import hashlib
import os
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402

SIZE = 16 * MB
BURST = 256 * 1024
PACE = 0.05  # one BURST per 50 ms: 16 MiB in ~3.3 s each way
TUNNELS = 4
KILLS = (0.2, 0.45, 0.7)  # of SIZE, by the slower of the two transfers


class Progress:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k


def paced_send(sock, data, progress):
    mv = memoryview(data)
    t0 = time.monotonic()
    for i, off in enumerate(range(0, len(mv), BURST)):
        wait = t0 + i * PACE - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sock.sendall(mv[off:off + BURST])
        progress.add(min(BURST, len(mv) - off))


def metric(port, name):
    """The value of an unlabelled sample in the daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=t(10)) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f"wanmux_{name} "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in the metrics on port {port}")


def run(env, side):
    up_data = h.make_random(SIZE, seed=61)
    down_data = h.make_random(SIZE, seed=62)
    up_seen = Progress()  # bytes the sink got
    down_seen = Progress()  # bytes the application got

    def sink(c, idx, server):
        c.settimeout(t(120))
        hs = hashlib.sha256()
        n = 0
        while True:
            b = c.recv(256 * 1024)
            if not b:
                break
            n += len(b)
            up_seen.add(len(b))
            hs.update(b)
        c.sendall((hs.hexdigest() + "\n").encode())
        c.shutdown(socket.SHUT_WR)
        server.add_result((n, hs.hexdigest()))

    def source(c, idx, server):
        c.settimeout(t(120))
        paced_send(c, down_data, Progress())
        c.shutdown(socket.SHUT_WR)
        h.recv_all(c, limit=0)

    snk = env.target(h.FuncServer(sink))
    src = env.target(h.FuncServer(source))
    srv_admin, cli_admin = h.free_port(), h.free_port()
    srv = env.start_server(allow=[f"127.0.0.1:{snk.port}", f"127.0.0.1:{src.port}"],
                           extra=["--admin", str(srv_admin)])
    l_up, l_down = h.free_port(), h.free_port()
    cli = env.start_client(srv.port, [(l_up, "127.0.0.1", snk.port),
                                      (l_down, "127.0.0.1", src.port)], tunnels=TUNNELS,
                           extra=["--admin", f"127.0.0.1:{cli_admin}"])
    mark = cli.mark()

    def upload():
        with h.connect(l_up, timeout=t(60)) as s:
            paced_send(s, up_data, Progress())
            s.shutdown(socket.SHUT_WR)
            return h.recv_all(s, limit=1024).decode(errors="replace").strip()

    def download():
        with h.connect(l_down, timeout=t(60)) as s:
            s.shutdown(socket.SHUT_WR)
            hs = hashlib.sha256()
            n = 0
            while True:
                b = s.recv(256 * 1024)
                if not b:
                    break
                n += len(b)
                down_seen.add(len(b))
                hs.update(b)
            return n, hs.hexdigest()

    done = {}

    def both():
        try:
            done["res"] = h.parallel([upload, download], timeout=t(90))
        except Exception as e:  # noqa: BLE001 - reported below
            done["err"] = e

    th = threading.Thread(target=both, daemon=True)
    th.start()
    if side == "client":
        filt = ["dst", "127.0.0.1", "dport", "=", str(srv.port)]
    else:
        filt = ["src", "127.0.0.1", "sport", "=", str(srv.port)]
    killed = []
    for k, at in enumerate(KILLS):
        deadline = time.monotonic() + t(30)
        while min(up_seen.n, down_seen.n) < at * SIZE and th.is_alive() and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        if not th.is_alive():
            break
        if k > 0:
            # Kill the tunnels that came back, not the reconnect in progress.
            cli.wait_log(r"tunnel \d+ to \S+ up", t(20), since=mark, count=TUNNELS * k)
        gone = h.ss_kill(filt)
        killed.append((len(gone), up_seen.n, down_seen.n))
    th.join(t(100))
    check(not th.is_alive(), "transfers still running long after the kills")
    print(f"     kills (sockets, bytes up, bytes down): {killed}")
    if "err" in done:
        raise done["err"]
    up, down = done["res"]
    check(len(killed) == len(KILLS), f"the transfers ended before all kills: {killed}")
    check(all(n >= 1 for n, _, _ in killed), f"ss -K found no tunnel to kill: {killed}")
    check(all(u < SIZE and d < SIZE for _, u, d in killed),
          f"a kill came after a transfer had finished: {killed}")
    check(up == h.sha(up_data), f"upload: sink hash {up}, sent {h.sha(up_data)}")
    check(down == (SIZE, h.sha(down_data)),
          f"download: got {down}, source sent {(SIZE, h.sha(down_data))}")
    res = snk.wait_results(1, t(5))
    check(res[0] == (SIZE, h.sha(up_data)), f"sink got {res[0]}")
    downs = cli.count(r"tunnel \d+ to \S+ down", since=mark)
    check(downs >= sum(n for n, _, _ in killed) // 2,
          f"client logged {downs} tunnels down for {killed} killed sockets")
    # The sessions are still live: their resends count in the metrics now,
    # not only once a session has ended.
    resent = (metric(cli_admin, "session_resent_bytes_total"),
              metric(srv_admin, "session_resent_bytes_total"))
    print(f"     resent bytes (client, server): {resent}")
    check(sum(resent) > 0, f"no resent bytes in the metrics after {killed}")
    # And the pair still opens new streams.
    check(h.upload(l_up, up_data[:MB], timeout=t(20)) == h.sha(up_data[:MB]),
          "upload after the kills differs")


def test_kill_client_ends_mid_transfer_intact(env):
    run(env, "client")


def test_kill_server_ends_mid_transfer_intact(env):
    run(env, "server")


def main():
    args = h.parse_args(__doc__)
    why = h.ss_kill_works()
    if why:
        print(f"SKIPPED: {why}")
        sys.exit(h.SKIP_RC)
    try:
        rc = h.run_tests([test_kill_client_ends_mid_transfer_intact,
                          test_kill_server_ends_mid_transfer_intact], args)
    finally:
        h._kill_all()
    sys.exit(rc)


if __name__ == "__main__":
    main()
