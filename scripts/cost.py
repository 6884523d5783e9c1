#!/usr/bin/env python3
"""wanmux loopback CPU cost that a shared machine does not blur.

One fixed-size upload (random or text, over 1 or 8 connections) through
wanmux-client -> wanmux-server on loopback, like scripts/bench.py, with
either daemon measured one of two ways:

  --perf      perf stat attached to each daemon's PID for the transfer only:
              task-clock, system calls, page faults, context switches.
  --valgrind  each daemon runs under cachegrind (no cache simulation): user
              instructions (Ir), counted from start to exit, minus the same
              pair's cost for a 1 MB transfer (start-up and handshakes), so
              the figure is instructions per byte of application data.

Prints one JSON object per run. Instruction counts do not depend on load
(only on how reads and frames happen to be cut), so a few runs compare two
builds where wall-clock throughput on a busy 2-core machine cannot.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)
import wmharness as h  # noqa: E402
import bench  # noqa: E402
from wmharness import MB  # noqa: E402

GB = 1 << 30
SYSCALLS = ("getsockopt", "readv", "writev", "read", "write", "epoll_wait", "epoll_ctl",
            "ioctl")
PERF_EVENTS = ",".join(["task-clock", "raw_syscalls:sys_enter", "page-faults",
                        "context-switches"] + [f"syscalls:sys_enter_{c}" for c in SYSCALLS])


def cachegrind_wrap(outdir, tool):
    plain = h.Daemon.__init__
    runs = [0]

    def init(self, name, argv, logpath, nofile=None):
        if os.path.basename(argv[0]).startswith("wanmux-"):
            runs[0] += 1
            self.cg_out = os.path.join(outdir, f"{name}.{runs[0]}.{tool}")
            opts = ["--cache-sim=no"] if tool == "cachegrind" else []
            argv = ["valgrind", f"--tool={tool}"] + opts + \
                [f"--{tool}-out-file={self.cg_out}", "--log-file=/dev/null"] + list(argv)
        plain(self, name, argv, logpath, nofile)
    h.Daemon.__init__ = init


def cg_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise h.TestFailure(f"no summary in {path}")


def perf_attach(pid, out):
    return subprocess.Popen(["perf", "stat", "-x", ",", "-e", PERF_EVENTS, "-p", str(pid),
                             "-o", out], stdin=subprocess.DEVNULL)


def perf_read(proc, out):
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    vals = {}
    with open(out) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 3 and parts[0] and not line.startswith("#"):
                try:
                    vals[parts[2]] = float(parts[0])
                except ValueError:
                    pass
    return vals


def one(args, kind, size_mb, data):
    env = h.Env(args, "cost")
    try:
        sink = env.target(bench.CountSink())
        srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"], log_level="info")
        lport = h.free_port()
        cli = env.start_client(srv.port, [(lport, "127.0.0.1", sink.port)],
                               tunnels=args.tunnels, log_level="info")
        time.sleep(0.2)
        perfs = []
        if args.perf:
            for d in (cli, srv):
                out = env.path(f"{d.name}.perf")
                perfs.append((perf_attach(d.pid, out), out))
            time.sleep(0.3)  # perf attaches asynchronously
        total = size_mb * MB
        n, secs = bench.transfer(lport, data, total, args.conns, max(h.t(120), total / MB))
        res = dict(kind=kind, conns=args.conns, mb=size_mb, mbs=n / MB / secs)
        if args.perf:
            for (p, out), who in zip(perfs, ("client", "server")):
                v = perf_read(p, out)
                res[who] = dict(cpu_s_per_gb=v.get("task-clock", 0) / 1e3 / (n / GB),
                                syscalls_per_mb=v.get("raw_syscalls:sys_enter", 0) / (n / MB),
                                faults_per_mb=v.get("page-faults", 0) / (n / MB),
                                csw_per_mb=v.get("context-switches", 0) / (n / MB),
                                per_mb={c: round(v.get(f"syscalls:sys_enter_{c}", 0) / (n / MB), 1)
                                        for c in SYSCALLS})
        cli.stop(timeout=h.t(60))
        srv.stop(timeout=h.t(60))
        if args.valgrind:
            res["client_ir"] = cg_total(cli.cg_out)
            res["server_ir"] = cg_total(srv.cg_out)
        return res
    finally:
        env.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bindir", required=True)
    p.add_argument("--kind", choices=("random", "text"), default="text")
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--size", type=int, default=64, help="MB per run (default 64)")
    p.add_argument("--tunnels", type=int, default=4)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--perf", action="store_true")
    p.add_argument("--valgrind", action="store_true")
    p.add_argument("--tool", choices=("cachegrind", "callgrind"), default="cachegrind",
                   help="valgrind tool for --valgrind (callgrind keeps a profile)")
    p.add_argument("--outdir", help="where --valgrind writes its output files")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    args.bindir = os.path.abspath(args.bindir)
    args.bins = h.Binaries(args.bindir)
    h.SCALE = 10.0 if args.valgrind else 1.0
    args.scale = h.SCALE
    blob = h.make_random(bench.BLOB, seed=3) if args.kind == "random" else \
        h.make_text(bench.BLOB, seed=7)
    if args.valgrind:
        outdir = args.outdir or os.path.join("/tmp", f"wm-cost-{os.getpid()}")
        os.makedirs(outdir, exist_ok=True)
        cachegrind_wrap(outdir, args.tool)
    for _ in range(args.runs):
        if args.valgrind:
            base = one(args, args.kind, 1, blob)
            res = one(args, args.kind, args.size, blob)
            dn = (args.size - 1) * MB
            res["client_ir_per_byte"] = (res["client_ir"] - base["client_ir"]) / dn
            res["server_ir_per_byte"] = (res["server_ir"] - base["server_ir"]) / dn
        else:
            res = one(args, args.kind, args.size, blob)
        res["bindir"] = args.bindir
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
