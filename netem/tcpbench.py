#!/usr/bin/env python3
"""Minimal iperf-like TCP goodput meter for the lab (no iperf3 needed).

  tcpbench.py recv [--bind 198.18.0.2] [--port 5201]       # prints one JSON line
  tcpbench.py send HOST [--port 5201] [--seconds 10] [--cc cubic]

The receiver accepts one connection, counts bytes until EOF and prints
{"bytes": N, "seconds": T, "mbit_s": R}; the sender streams zeros for the
given time. Congestion control defaults to the route's (cubic in the lab).
"""
import argparse
import json
import socket
import sys
import time


def recv(args):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.bind, args.port))
    srv.listen(1)
    srv.settimeout(args.accept_timeout)
    conn, _ = srv.accept()
    total = 0
    start = None
    last = None
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break
        now = time.monotonic()
        if start is None:
            start = now
        last = now
        total += len(data)
    conn.close()
    srv.close()
    secs = (last - start) if start is not None and last > start else 0.0
    rate = total * 8 / secs / 1e6 if secs > 0 else 0.0
    print(json.dumps({"bytes": total, "seconds": round(secs, 3), "mbit_s": round(rate, 3)}))


def send(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.cc:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, args.cc.encode())
    s.connect((args.host, args.port))
    cc = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
    buf = b"\0" * (1 << 16)
    end = time.monotonic() + args.seconds
    sent = 0
    while time.monotonic() < end:
        sent += s.send(buf)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # wait for the receiver to finish reading
    s.close()
    print(json.dumps({"sent": sent, "cc": cc}), file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("recv")
    r.add_argument("--bind", default="0.0.0.0")
    r.add_argument("--port", type=int, default=5201)
    r.add_argument("--accept-timeout", type=float, default=30.0)
    s = sub.add_parser("send")
    s.add_argument("host")
    s.add_argument("--port", type=int, default=5201)
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument("--cc", default=None)
    args = p.parse_args()
    recv(args) if args.mode == "recv" else send(args)


if __name__ == "__main__":
    main()
