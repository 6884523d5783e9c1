#!/usr/bin/env python3
"""Bulk transfer through the pair: 64 MB of random data and 64 MB of
English-like text over 32 concurrent connections, uploads (to a sink that
answers with the SHA-256) and downloads (from a source), hashes compared at
both ends; then the compression ratio of text as reported by the client."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402

PER_CONN = 4 * MB
N_EACH = 8  # connections per (random|text) x (up|down): 32 in all

RANDOM = h.make_random(2 * N_EACH * PER_CONN)
TEXT = h.make_text(2 * N_EACH * PER_CONN)


def piece(blob, i):
    return memoryview(blob)[i * PER_CONN:(i + 1) * PER_CONN]


def check_downloads(got, source, kind):
    sent = sorted((n, digest) for _, n, digest in source.results)
    check(sorted(got) == sent,
          f"{kind} downloads: client received {sorted(got)}, source sent {sent}")


def test_transfer_32_connections(env):
    sink = env.target(h.SinkServer())
    # Upload slices 0..7, download slices 8..15 of each blob.
    src_random = env.target(h.SourceServer(lambda i: piece(RANDOM, N_EACH + i)))
    src_text = env.target(h.SourceServer(lambda i: piece(TEXT, N_EACH + i)))
    srv = env.start_server(allow=[f"127.0.0.1:{p}" for p in
                                  (sink.port, src_random.port, src_text.port)])
    l_sink, l_rnd, l_txt = h.free_port(), h.free_port(), h.free_port()
    cli = env.start_client(srv.port, [(l_sink, "127.0.0.1", sink.port),
                                      (l_rnd, "127.0.0.1", src_random.port),
                                      (l_txt, "127.0.0.1", src_text.port)])
    jobs = []
    expect = []
    for i in range(N_EACH):
        for blob in (RANDOM, TEXT):
            data = piece(blob, i)
            expect.append(h.sha(data))
            jobs.append(lambda d=data: ("up", h.upload(l_sink, d, timeout=t(60))))
        jobs.append(lambda: ("down-random", h.download(l_rnd, timeout=t(60))))
        jobs.append(lambda: ("down-text", h.download(l_txt, timeout=t(60))))
    check(len(jobs) == 32, "32 connections")
    results = h.parallel(jobs, timeout=t(90))

    replies = [r for kind, r in results if kind == "up"]
    check(replies == expect, f"upload hashes differ: sink said {replies}, expected {expect}")
    sink_got = sink.wait_results(2 * N_EACH, t(10))
    check(all(n == PER_CONN for n, _ in sink_got), f"sink byte counts {sink_got}")
    check_downloads([r for kind, r in results if kind == "down-random"], src_random, "random")
    check_downloads([r for kind, r in results if kind == "down-text"], src_text, "text")
    check(len(src_random.results) == N_EACH and len(src_text.results) == N_EACH,
          "each source served 8 connections")

    cli.stop()
    st = h.parse_stats(cli.stats_line)
    print(f"     mixed: {cli.stats_line.split('stats: ')[1]}")
    check(st["connections"] == 32, f"stats connections={st['connections']}, expected 32")
    up = 2 * N_EACH * PER_CONN
    down = 2 * N_EACH * PER_CONN + 2 * N_EACH * 65
    check(st["bytes_up"] == up, f"stats bytes_up={st['bytes_up']}, expected {up}")
    check(st["bytes_down"] == down, f"stats bytes_down={st['bytes_down']}, expected {down}")
    # Half the data is text: the whole should shrink a little, and random data
    # must not grow by more than the framing.
    check(st["ratio_up"] > 1.15, f"mixed ratio_up={st['ratio_up']}, expected > 1.15")
    check(st["wire_up"] < up, f"mixed wire_up={st['wire_up']} not below raw {up}")


def text_run(env, srv, sink, src_text, name, compress):
    l_sink, l_txt = h.free_port(), h.free_port()
    cli = env.start_client(srv.port, [(l_sink, "127.0.0.1", sink.port),
                                      (l_txt, "127.0.0.1", src_text.port)],
                           compress=compress, name=name, tunnels=2)
    jobs = []
    expect = []
    for i in range(4):
        data = piece(TEXT, i)
        expect.append(h.sha(data))
        jobs.append(lambda d=data: h.upload(l_sink, d, timeout=t(60)))
        jobs.append(lambda: h.download(l_txt, timeout=t(60)))
    results = h.parallel(jobs, timeout=t(60))
    check(results[0::2] == expect, f"{name}: upload hashes differ")
    check(all(r[0] == PER_CONN for r in results[1::2]), f"{name}: download sizes {results[1::2]}")
    cli.stop()
    st = h.parse_stats(cli.stats_line)
    print(f"     {name}: {cli.stats_line.split('stats: ')[1]}")
    check(st["bytes_up"] == 4 * PER_CONN, f"{name}: bytes_up={st['bytes_up']}")
    return st


def test_text_compression_ratio(env):
    sink = env.target(h.SinkServer())
    src_text = env.target(h.SourceServer(lambda i: piece(TEXT, i % (2 * N_EACH))))
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}", f"127.0.0.1:{src_text.port}"])
    st = text_run(env, srv, sink, src_text, "client-auto", None)
    check(st["ratio_up"] > 1.5, f"text upload ratio_up={st['ratio_up']}: expected > 1.5 "
          "(compression not working?)")
    check(st["ratio_down"] > 1.5, f"text download ratio_down={st['ratio_down']}: expected > 1.5 "
          "(server compression not working?)")
    check(st["wire_up"] < 4 * PER_CONN / 1.5, f"wire_up={st['wire_up']} not below raw/1.5")
    # The same upload with compression off must not look compressed: this is
    # what makes the assertion above meaningful.
    st = text_run(env, srv, sink, src_text, "client-none", "none")
    check(st["ratio_up"] < 1.05, f"--compress none: ratio_up={st['ratio_up']}, expected ~1.0")
    check(st["wire_up"] >= 4 * PER_CONN, f"--compress none: wire_up={st['wire_up']} < raw")


if __name__ == "__main__":
    h.main([test_transfer_32_connections, test_text_compression_ratio], __doc__)
