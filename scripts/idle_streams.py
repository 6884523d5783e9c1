#!/usr/bin/env python3
"""What an idle stream costs: open N connections through a forward (default
10000) to a target that accepts and holds them, send one byte each way so
every stream is established at both ends, then read the RSS of both daemons
(/proc/PID/status VmRSS) against their RSS before. Loopback only.

    python3 scripts/idle_streams.py --bindir build [--streams 10000]
"""
import argparse
import os
import resource
import selectors
import socket
import subprocess
import sys
import multiprocessing
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import wmharness as h  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Holder(multiprocessing.Process):
    """Accepts connections, answers each first byte with one byte, holds them.
    A process of its own, so each side of the test needs only N descriptors."""

    def __init__(self):
        super().__init__(daemon=True)
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4096)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        self.answered = 0

    def run(self):
        sel = selectors.DefaultSelector()
        self.ls.setblocking(False)
        sel.register(self.ls, selectors.EVENT_READ)
        deadline = time.monotonic() + 600  # bounded: stops by itself
        while time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                if key.fileobj is self.ls:
                    try:
                        c, _ = self.ls.accept()
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    self.conns.append(c)
                    sel.register(c, selectors.EVENT_READ)
                else:
                    c = key.fileobj
                    try:
                        b = c.recv(16)
                    except OSError:
                        b = b""
                    sel.unregister(c)
                    if b:
                        c.send(b"y")
                        self.answered += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--streams", type=int, default=10000)
    args = ap.parse_args()
    n = args.streams
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1000
    if hard < want:
        try:
            hard = want
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            print(f"SKIP: RLIMIT_NOFILE hard limit below {want} and cannot raise it")
            sys.exit(77)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    ns = argparse.Namespace(bins=h.Binaries(os.path.abspath(args.bindir)))
    env = h.Env(ns, "idle")
    holder = Holder()
    holder.start()
    try:
        srv = env.start_server(allow=[f"127.0.0.1:{holder.port}"], log_level="info",
                               extra=["--max-streams", str(n + 100),
                                      "--open-rate", "1000000"])
        lport = h.free_port()
        cli = env.start_client(srv.port, [(lport, "127.0.0.1", holder.port)], log_level="info",
                               extra=["--max-connections", str(n + 100)])
        time.sleep(1.0)
        base = (rss_kib(cli.pid), rss_kib(srv.pid))
        socks = []
        t0 = time.monotonic()
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", lport))
            s.send(b"x")
            socks.append(s)
            if i % 500 == 499:
                time.sleep(0.05)
        for s in socks:
            s.settimeout(30)
            if s.recv(1) != b"y":
                raise SystemExit("a stream did not answer")
        took = time.monotonic() - t0
        time.sleep(1.0)
        now = (rss_kib(cli.pid), rss_kib(srv.pid))
        per = [(now[i] - base[i]) * 1024 / n for i in range(2)]
        print(f"{n} idle streams established in {took:.1f} s")
        print(f"client RSS {base[0]} -> {now[0]} KiB: {per[0] / 1024:.2f} KiB per stream")
        print(f"server RSS {base[1]} -> {now[1]} KiB: {per[1] / 1024:.2f} KiB per stream")
        for s in socks:
            s.close()
    finally:
        holder.terminate()
        h._kill_all()


if __name__ == "__main__":
    main()
