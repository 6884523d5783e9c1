#!/usr/bin/env python3
"""In-band rekey through the real daemons: 64 MB over one tunnel with
--rekey-bytes 4M and --rekey-after 1s arrives intact (SHA-256) while both
sides count the same number of rekeys, and the tunnel is never replaced; idle
tunnels rekey on the time budget alone; bad budget values are usage errors."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402

TOTAL = 64 * MB
CHUNK = 1 * MB
BUDGET = ["--rekey-bytes", "4M", "--rekey-after", "1s"]


def server_rekeys(srv):
    """Rekeys per tunnel the server logged when each tunnel ended."""
    return [int(n) for n in re.findall(r"tunnel \S+: rekeyed (\d+) times", srv.log_text())]


def paced_upload(port, data, pause):
    """Upload in CHUNK pieces with a pause between them, so the transfer
    spans several time budgets as well as byte budgets; returns the sink's
    SHA-256 reply."""
    s = h.connect(port, timeout=t(60))
    try:
        for off in range(0, len(data), CHUNK):
            s.sendall(data[off:off + CHUNK])
            time.sleep(pause)
        s.shutdown(1)
        return h.recv_all(s).decode().strip()
    finally:
        s.close()


def test_rekey_during_64mb_transfer(env):
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"], extra=BUDGET)
    lport = h.free_port()
    cli = env.start_client(srv.port, [(lport, "127.0.0.1", sink.port)], tunnels=1,
                           compress="none", extra=BUDGET)
    data = h.make_random(TOTAL)
    t0 = time.monotonic()
    reply = paced_upload(lport, memoryview(data), 0.05)
    took = time.monotonic() - t0
    check(reply == h.sha(data), f"sink got SHA-256 {reply}, sent {h.sha(data)}")
    got = sink.wait_results(1, t(10))
    check(got[0][0] == TOTAL, f"sink received {got[0][0]} bytes, expected {TOTAL}")

    cli.stop()
    st = h.parse_stats(cli.stats_line)
    srv.wait_log(r"tunnel \S+: rekeyed \d+ times", t(5))
    per_tunnel = server_rekeys(srv)
    print(f"     64 MB in {took:.1f} s: client rekeys={st['rekeys']}, server {per_tunnel}, "
          f"tunnels_connected={st['tunnels_connected']}")
    # The same tunnel carried everything: no reconnect hid a failed rekey.
    check(st["tunnels_connected"] == 1, f"tunnels_connected={st['tunnels_connected']}")
    check(len(per_tunnel) == 1, f"server logged rekeys of {len(per_tunnel)} tunnels")
    # 64 MB of payload plus the other direction's bytes at 4M a key: 16
    # budgets; the 100 ms floor and 250 ms tick may merge a few, never most.
    check(st["rekeys"] >= 8, f"client rekeyed {st['rekeys']} times, expected >= 8")
    check(abs(st["rekeys"] - per_tunnel[0]) <= 1,
          f"client counted {st['rekeys']} rekeys, server {per_tunnel[0]}")
    check(cli.count(r"rekeyed \(\d+ so far\)") == st["rekeys"],
          "client's debug lines disagree with its counter")
    check(srv.count(r"rekey unanswered|REKEY step") == 0, "server refused a rekey")


def test_idle_tunnels_rekey_on_time(env):
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"], extra=["--rekey-after", "1s"])
    lport = h.free_port()
    cli = env.start_client(srv.port, [(lport, "127.0.0.1", sink.port)], tunnels=2,
                           extra=["--rekey-after", "1s"])
    # Two idle tunnels, about 3.5 budgets each.
    cli.wait_log(r"rekeyed \(3 so far\)", t(10), count=2)
    cli.stop()
    st = h.parse_stats(cli.stats_line)
    srv.wait_log(r"tunnel \S+: rekeyed \d+ times", t(5), count=2)
    per_tunnel = server_rekeys(srv)
    print(f"     idle: client rekeys={st['rekeys']}, server {per_tunnel}")
    check(st["tunnels_connected"] == 2, f"tunnels_connected={st['tunnels_connected']}")
    check(all(n >= 3 for n in per_tunnel), f"server per-tunnel rekeys {per_tunnel}")
    check(abs(st["rekeys"] - sum(per_tunnel)) <= 2,
          f"client counted {st['rekeys']}, server {sum(per_tunnel)}")


def test_bad_rekey_options(env):
    base = [env.bins.client, "--server", "127.0.0.1:1", "--key", env.client_key,
            "--server-key", env.server_key + ".pub"]
    for opt, value in (("--rekey-after", "500ms"), ("--rekey-after", "soon"),
                       ("--rekey-bytes", "1000"), ("--rekey-bytes", "-1")):
        rc, _, err = h.run_cmd(base + [opt, value])
        # "expected": the value is refused, not the option unknown.
        check(rc == 2 and opt in err and "expected" in err,
              f"{opt} {value}: exit {rc}, stderr {err.strip()!r}")
    rc, _, err = h.run_cmd([env.bins.server, "--rekey-after", "0.5"])
    check(rc == 2 and "--rekey-after" in err and "expected" in err,
          f"server --rekey-after 0.5: exit {rc}, {err!r}")


if __name__ == "__main__":
    h.main([test_rekey_during_64mb_transfer, test_idle_tunnels_rekey_on_time,
            test_bad_rekey_options], __doc__)
