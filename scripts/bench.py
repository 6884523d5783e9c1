#!/usr/bin/env python3
"""wanmux loopback benchmark (what `./run.sh bench` runs).

Uploads random data and English-like text from Python to a Python sink,
over 1 and over 8 connections, once directly and once through
wanmux-client -> wanmux-server on loopback. Reports MB/s and, for the pair,
CPU seconds per GB of application data for each daemon (utime + stime from
/proc/PID/stat) and the compression ratio the client reports. Loopback
measures CPU cost, not WAN behaviour: see netem/ for lossy links.
"""

import argparse
import os
import platform
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402

GB = 1 << 30
BLOB = 64 * MB  # each connection cycles through a 64 MB buffer


class CountSink(h.TargetServer):
    """Reads to EOF without hashing (so Python is not the bottleneck) and
    answers with the byte count."""

    def handle(self, c, idx):
        buf = bytearray(1 << 20)
        n = 0
        while True:
            k = c.recv_into(buf)
            if not k:
                break
            n += k
        c.sendall(b"%d\n" % n)
        c.shutdown(socket.SHUT_WR)


def send_n(port, blob, n, timeout):
    """Send n bytes (cycling through blob), half-close, return the count
    the sink reports."""
    mv = memoryview(blob)
    with h.connect(port, timeout=timeout) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MB)
        left = n
        while left:
            k = min(left, len(mv))
            s.sendall(mv[:k])
            left -= k
        s.shutdown(socket.SHUT_WR)
        return int(h.recv_all(s, limit=64).decode().strip())


def transfer(port, blob, total, conns, timeout):
    per = total // conns
    t0 = time.monotonic()
    got = h.parallel([lambda: send_n(port, blob, per, timeout) for _ in range(conns)],
                     timeout=timeout)
    secs = time.monotonic() - t0
    check(got == [per] * conns, f"sink counted {got}, sent {per} per connection")
    return per * conns, secs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bindir", required=True, help="CMake build directory")
    p.add_argument("--size", type=int, default=1024,
                   help="MB per run (default 1024; 4 runs direct, 4 through the pair)")
    p.add_argument("--tunnels", type=int, default=4, help="client tunnels (default 4)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    args = p.parse_args()
    args.bindir = os.path.abspath(args.bindir)
    args.bins = h.Binaries(args.bindir)
    h.SCALE = 4.0 if args.bins.sanitized else 1.0
    total = args.size * MB
    timeout = max(t(120), total / MB / 5)  # no slower than 5 MB/s

    env = h.Env(args, "bench")
    rows = []
    try:
        data = {"random": h.make_random(BLOB), "text": h.make_text(BLOB, seed=7)}
        sink = env.target(CountSink())
        srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"], log_level="info")
        for kind in ("random", "text"):
            for conns in (1, 8):
                n, secs = transfer(sink.port, data[kind], total, conns, timeout)
                rows.append(dict(kind=kind, conns=conns, path="direct", mbs=n / MB / secs))
                lport = h.free_port()
                cli = env.start_client(srv.port, [(lport, "127.0.0.1", sink.port)],
                                       tunnels=args.tunnels, name=f"client-{kind}-{conns}",
                                       log_level="info")
                c0, s0 = cli.cpu(), srv.cpu()
                n, secs = transfer(lport, data[kind], total, conns, timeout)
                c1, s1 = cli.cpu(), srv.cpu()
                cli.stop()
                st = h.parse_stats(cli.stats_line)
                check(st["bytes_up"] == n, f"client stats bytes_up={st['bytes_up']}, sent {n}")
                rows.append(dict(kind=kind, conns=conns, path="wanmux", mbs=n / MB / secs,
                                 ccpu=(c1 - c0) / (n / GB), scpu=(s1 - s0) / (n / GB),
                                 ratio=st["ratio_up"]))
                print(f"  {kind:<6} x{conns}: direct {rows[-2]['mbs']:.0f} MB/s, wanmux "
                      f"{rows[-1]['mbs']:.0f} MB/s", file=sys.stderr)
        srv.stop()
    except Exception as e:  # noqa: BLE001 - reported below
        env.failed = True
        print(f"bench failed: {type(e).__name__}: {e}", file=sys.stderr)
        env.dump_logs()
        env.close()
        h._kill_all()
        return 1
    env.close()

    head = ["data", "conns", "path", "MB/s", "client CPU s/GB", "server CPU s/GB",
            "ratio up"]
    table = []
    for r in rows:
        table.append([r["kind"], str(r["conns"]), r["path"], f"{r['mbs']:.0f}",
                      f"{r['ccpu']:.2f}" if "ccpu" in r else "-",
                      f"{r['scpu']:.2f}" if "scpu" in r else "-",
                      f"{r['ratio']:.2f}" if "ratio" in r else "-"])
    about = (f"wanmux loopback upload, {args.size} MB per run, {args.tunnels} tunnels, "
             f"{os.cpu_count()} CPUs, Linux {platform.release()}, "
             f"{'sanitizer build' if args.bins.sanitized else 'release build'} "
             f"({args.bindir}); GB = 2^30 bytes of application data")
    if args.markdown:
        print(about + "\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---:" if i > 2 else "---" for i in range(len(head))) + "|")
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        print(about)
        widths = [max(len(x[i]) for x in [head] + table) for i in range(len(head))]
        fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
        print(fmt.format(*head))
        for row in table:
            print(fmt.format(*row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
