#!/usr/bin/env python3
"""wanmux end-to-end demo (what `./run.sh demo` runs).

Makes fresh keys in a temp dir, starts wanmux-server and wanmux-client on
loopback with Python target servers behind them, pushes English-like text
and random data through several connections each way, checks SHA-256 at
both ends, stops the client for its traffic summary and prints a report.
Exits nonzero if anything failed.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402


def short(argv, tmp):
    out = []
    for a in argv:
        a = a.replace(tmp + "/", "$TMP/")
        if os.path.isabs(a) and os.path.exists(a):
            rel = os.path.relpath(a)
            a = rel if not rel.startswith("..") else a
        out.append(a)
    return " ".join(out)


def run_kind(env, kind, blob, conns, srv, sink, source, tunnels, say):
    """Upload then download `blob` through a fresh client over `conns`
    connections each way. Returns a dict for the report."""
    per = len(blob) // conns
    pieces = [memoryview(blob)[i * per:(i + 1) * per] for i in range(conns)]
    l_sink, l_src = h.free_port(), h.free_port()
    cli = env.start_client(srv.port, [(l_sink, "127.0.0.1", sink.port),
                                      (l_src, "127.0.0.1", source.port)],
                           tunnels=tunnels, name=f"client-{kind}", log_level="info")
    say(f"  $ {short(cli.argv, env.dir)}")
    t0 = time.monotonic()
    replies = h.parallel([lambda p=p: h.upload(l_sink, p, timeout=t(60)) for p in pieces],
                         timeout=t(120))
    t_up = time.monotonic() - t0
    ok_up = sum(r == h.sha(p) for r, p in zip(replies, pieces))
    n0 = len(source.results)
    t0 = time.monotonic()
    got = h.parallel([lambda: h.download(l_src, timeout=t(60)) for _ in range(conns)],
                     timeout=t(120))
    t_down = time.monotonic() - t0
    sent = sorted((n, d) for _, n, d in source.results[n0:])
    ok_down = sum(1 for g in got if g in sent) if sorted(got) == sent else 0
    cli.stop()
    st = h.parse_stats(cli.stats_line)
    return dict(kind=kind, conns=conns, bytes=len(blob), t_up=t_up, t_down=t_down,
                ok_up=ok_up, ok_down=ok_down, stats=st, line=cli.stats_line)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bindir", required=True, help="CMake build directory")
    p.add_argument("--size", type=int, default=32, help="MB of each kind of data (default 32)")
    p.add_argument("--connections", type=int, default=4,
                   help="connections per kind and direction (default 4)")
    p.add_argument("--tunnels", type=int, default=4)
    p.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    args = p.parse_args()
    args.bindir = os.path.abspath(args.bindir)
    args.bins = h.Binaries(args.bindir)
    h.SCALE = 4.0 if args.bins.sanitized else 1.0
    say = print
    size = args.size * MB

    started = time.monotonic()
    say("wanmux demo: client and server on loopback, fresh keys, "
        f"{args.size} MB of text and {args.size} MB of random data each way\n")
    env = h.Env(args, "demo")
    failed = None
    results = []
    try:
        say(f"keys in {env.dir} (wanmux-keygen):")
        say(f"  server {env.server_pub}")
        say(f"  client {env.client_pub}  (in the server's authorized keys)\n")
        text = h.make_text(size, seed=2024)
        rnd = h.make_random(size)
        sink = env.target(h.SinkServer())
        per = size // args.connections
        src_text = env.target(h.SourceServer(
            lambda i: memoryview(text)[(i % args.connections) * per:
                                       (i % args.connections + 1) * per]))
        src_rnd = env.target(h.SourceServer(
            lambda i: memoryview(rnd)[(i % args.connections) * per:
                                      (i % args.connections + 1) * per]))
        say(f"targets (Python): sink 127.0.0.1:{sink.port} (answers SHA-256), "
            f"text source :{src_text.port}, random source :{src_rnd.port}")
        srv = env.start_server(allow=[f"127.0.0.1:{p}" for p in
                                      (sink.port, src_text.port, src_rnd.port)],
                               log_level="info")
        say("started:")
        say(f"  $ {short(srv.argv, env.dir)}")
        for kind, blob, src in (("text", text, src_text), ("random", rnd, src_rnd)):
            results.append(run_kind(env, kind, blob, args.connections, srv, sink, src,
                                    args.tunnels, say))
        srv.stop()
        m = [ln for ln in srv.log_text().splitlines() if "stopping" in ln]
        say(f"  server: {m[-1].split(': ', 1)[1] if m else 'stopped'}")
    except Exception as e:  # noqa: BLE001 - reported below
        failed = f"{type(e).__name__}: {e}"

    if results:
        say("\nresults (raw = application bytes, wire = compressed payload"
            " before encryption):")
        hdr = (f"  {'data':<7} {'dir':<5} {'conns':>5} {'raw MB':>8} {'wire MB':>8} "
               f"{'ratio':>6} {'time s':>7} {'MB/s':>8}  SHA-256")
        say(hdr)
        total_ok = total = 0
        for r in results:
            st = r["stats"]
            for d, raw, wire, ratio, secs, ok in (
                    ("up", st["bytes_up"], st["bytes_up"] / st["ratio_up"], st["ratio_up"],
                     r["t_up"], r["ok_up"]),
                    ("down", st["bytes_down"], st["bytes_down"] / st["ratio_down"],
                     st["ratio_down"], r["t_down"], r["ok_down"])):
                total += r["conns"]
                total_ok += ok
                say(f"  {r['kind']:<7} {d:<5} {r['conns']:>5} {raw / MB:>8.1f} "
                    f"{wire / MB:>8.1f} {ratio:>6.2f} {secs:>7.2f} "
                    f"{r['bytes'] / MB / max(secs, 1e-6):>8.1f}  "
                    f"{ok}/{r['conns']} {'OK' if ok == r['conns'] else 'MISMATCH'}")
        for r in results:
            st = r["stats"]
            say(f"  {r['kind']:<7} tunnels {st['tunnels']} (connected {st['tunnels_connected']}x), "
                f"records on the wire {st['wire_up'] / MB:.1f} MB up, "
                f"{st['wire_down'] / MB:.1f} MB down")
        say("\nclient stats lines:")
        for r in results:
            say(f"  {r['line'].split('wanmux-client ', 1)[-1]}")
        if total_ok != total and failed is None:
            failed = f"{total - total_ok} of {total} transfers had wrong hashes"
    elapsed = time.monotonic() - started
    if failed:
        env.failed = True
        say(f"\nDEMO FAILED: {failed}")
        env.dump_logs()
        env.close()
        h._kill_all()
        return 1
    say(f"\nall {sum(r['conns'] * 2 for r in results)} transfers verified (SHA-256 equal at "
        f"both ends), {elapsed:.1f} s in all")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
