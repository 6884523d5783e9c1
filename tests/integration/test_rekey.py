#!/usr/bin/env python3
"""In-band rekey through the real daemons: 64 MB over one tunnel with
--rekey-bytes 4M and --rekey-after 1s arrives intact (SHA-256) while both
sides count the same number of rekeys, and the tunnel is never replaced; idle
tunnels rekey on the time budget alone; bad budget values are usage errors.
A hostile authorized client (wm_attack rekey) that rekeys back to back is cut
off after the allowance (8 at once, then 20 a second); one that keeps to the
allowance costs the server a bounded, measured amount of CPU."""

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


def attack_tool(env):
    p = os.path.join(env.args.bindir, "tests/integration/wm_attack")
    check(os.access(p, os.X_OK), f"wm_attack not built in {env.args.bindir}")
    return p


def attack(env, srv, *args, expect_rc):
    argv = [attack_tool(env), "rekey", "--server", f"127.0.0.1:{srv.port}",
            "--server-key", env.server_key + ".pub", "--key", env.client_key,
            "--wait", str(t(5))] + [str(a) for a in args]
    rc, out, err = h.run_cmd(argv, timeout=t(60))
    m = re.search(r"^result: (.*)$", out, re.M)
    check(rc == expect_rc and m is not None,
          f"wm_attack rekey: exit {rc} (expected {expect_rc}), {out.strip()!r} {err.strip()!r}")
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", m.group(1))}


def test_rekey_flood_cut_off(env):
    srv = env.start_server(allow=["127.0.0.1:9"])
    cpu0 = srv.cpu()
    r = attack(env, srv, "--count", 1000, expect_rc=0)
    cpu = srv.cpu() - cpu0
    # 8 at once, then one per 50 ms while the flood lasts.
    allowed = 8 + r["closed_after"] / 0.05 + 1
    print(f"     flood: {r['answered']:.0f} answered, closed after {r['closed_after']:.3f} s, "
          f"server CPU {cpu * 1000:.0f} ms")
    check(8 <= r["answered"] <= allowed,
          f"server answered {r['answered']:.0f} back-to-back rekeys, allowance {allowed:.0f}")
    srv.wait_log(r"REKEY step 2 faster than allowed; closing", t(5))
    check(srv.alive(), "server died")


def test_rekey_at_allowed_rate(env):
    srv = env.start_server(allow=["127.0.0.1:9"])
    cpu0 = srv.cpu()
    r = attack(env, srv, "--count", 60, "--every", 55, expect_rc=1)
    cpu = srv.cpu() - cpu0
    print(f"     at the allowance: {r['answered']:.0f} rekeys in {r['elapsed']:.2f} s, "
          f"server CPU {cpu * 1000:.0f} ms ({cpu / r['elapsed'] * 100:.2f} % of a core)")
    check(r["answered"] == 60, f"only {r['answered']:.0f} of 60 answered")
    check(r["records_after"] >= 1, "no record from the server opened under the last key")
    check(srv.count(r"REKEY step") == 0, "server refused a paced rekey")


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
            test_rekey_flood_cut_off, test_rekey_at_allowed_rate, test_bad_rekey_options],
           __doc__)
