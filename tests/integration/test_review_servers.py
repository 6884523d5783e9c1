#!/usr/bin/env python3
"""Review of the client's several servers: a hostile server in the list.

- forged PONGs: a server (wm_attack serve --kind pong-forge) answers each
  PING 300 ms late with a PONG whose opaque it moved 300 ms on. The old code
  took any opaque not in the future as the PING's send time (the opaque was
  the client's monotonic clock in microseconds, which the server sees in
  every PING), so the client measured a round trip of about nothing. That
  RTT is what --server-policy spread ranks servers by (server_cost_us) and
  what stretches the silence limit: a hostile server could draw every new
  stream, or, with an old opaque, an RTT of an hour and never count as
  silent. Only the PONG to the PING last sent may count now, and its opaque
  is random.
- a server that fails every stream at once (a hostile one that resets each
  OPEN, or a broken one whose --allow or egress refuses every target) never
  holds a stream, so --server-policy spread, whose tie-break was "fewest
  open streams", sent it every new stream while the good server carried
  one. The tie-break now also counts the streams each server was given
  lately, so such a server gets its share of new streams, not all of them.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_attacks import attack_tool  # noqa: E402

FORGE_DELAY_MS = 300  # FORGE_HOLD_US in wm_attack.c


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=t(5)) as r:
        return r.read().decode()


def test_forged_pong_does_not_fake_rtt(env):
    port, admin = h.free_port(), h.free_port()
    exe = attack_tool(env)
    hold = 13  # the client PINGs every 5 s: two PINGs answered
    srv = subprocess.Popen([exe, "serve", "--listen", str(port), "--key", env.server_key,
                            "--kind", "pong-forge", "--count", "1", "--hold", str(hold),
                            "--wait", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=h._die_with_parent)
    check(srv.stdout.readline().decode().strip() == "listening", "wm_attack serve did not listen")
    cli = env.start_client(port, [(h.free_port(), "127.0.0.1", h.free_port())], tunnels=1,
                           wait=False, log_level="info", extra=["--admin", str(admin)])
    cli.wait_log(r"tunnel 0 to \S+ up", t(10))
    time.sleep(hold - 1.5)
    status = json.loads(http_get(admin, "/status"))
    rtts = [tn.get("ping_rtt_ms", 0) for tn in status.get("tunnels", [])]
    out, err = srv.communicate(timeout=t(30))
    check(srv.returncode == 0 and b"forged_pongs=" in out,
          f"wm_attack serve: {out.decode()} {err.decode()[-300:]}")
    print(f"     {out.decode().strip()}; client's PING RTT of the tunnel: {rtts} ms "
          f"(the server held every PONG {FORGE_DELAY_MS} ms)")
    check(rtts, "no tunnel in the client's /status")
    check(cli.alive(), "the client exited")
    # 0: no PONG counted. Anything else must be at least the real delay.
    for rtt in rtts:
        check(rtt == 0 or rtt >= FORGE_DELAY_MS * 0.9,
              f"a forged PONG made the client measure a {rtt} ms round trip to a server "
              f"that answered {FORGE_DELAY_MS} ms late")
    cli.stop()


def test_honest_pong_still_measures_rtt(env):
    """The real server's PONGs still count: every tunnel has a PING RTT
    after the first PING (5 s)."""
    admin = h.free_port()
    srv = env.start_server(allow=["127.0.0.1"])
    cli = env.start_client(srv.port, [(h.free_port(), "127.0.0.1", h.free_port())], tunnels=2,
                           log_level="info", extra=["--admin", str(admin)])
    deadline = time.time() + t(12)
    rtts = []
    while time.time() < deadline:
        status = json.loads(http_get(admin, "/status"))
        rtts = [tn.get("ping_rtt_ms", 0) for tn in status.get("tunnels", [])]
        if len(rtts) == 2 and all(r > 0 for r in rtts):
            break
        time.sleep(0.5)
    print(f"     PING RTT of the client's tunnels to a real server: {rtts} ms")
    check(len(rtts) == 2 and all(r > 0 for r in rtts),
          f"the client measured no PING RTT on its tunnels: {rtts}")
    cli.stop()


SPREAD_TRIES = 20


def test_spread_failing_server_does_not_draw_every_stream(env):
    from test_servers import echo_once, servers_status, setup, start_client, start_server
    setup(env)
    good = start_server(env, "good")
    admin = h.free_port()
    # Refuses every target the client asks for: its streams end at once.
    bad = env.start_server(allow=["127.0.0.1:1"], name="bad", log_level="info",
                           extra=["--admin", str(admin)])
    ng, nb = f"127.0.0.1:{good.port}", f"127.0.0.1:{bad.port}"
    cli = start_client(env, [ng, nb], policy="spread", tunnels=1)
    cli.wait_log(r"tunnel \d+ to 127\.0\.0\.1:%d up" % good.port, t(10))
    cli.wait_log(r"tunnel \d+ to 127\.0\.0\.1:%d up" % bad.port, t(10))
    # One stream held open on the good server.
    held = None
    for _ in range(10):
        s = h.connect(cli.lport, timeout=t(5))
        s.sendall(b"held")
        try:
            if s.recv(4) == b"held":
                held = s
                break
        except OSError:
            pass
        s.close()
    check(held is not None, "no stream reached the good server")
    ok = 0
    for _ in range(SPREAD_TRIES):
        try:
            ok += echo_once(cli.lport, timeout=t(5))
        except OSError:
            pass  # refused: reset
    st = servers_status(cli)
    print(f"     spread, one stream held on the good server: {ok} of {SPREAD_TRIES} new "
          f"connections worked; streams given: good {st[ng]['streams_total']}, "
          f"failing {st[nb]['streams_total']}")
    check(ok >= SPREAD_TRIES // 4,
          f"a server that fails every stream drew {SPREAD_TRIES - ok} of {SPREAD_TRIES} new "
          "connections")
    held.close()
    cli.stop()


if __name__ == "__main__":
    h.main([test_forged_pong_does_not_fake_rtt, test_honest_pong_still_measures_rtt,
            test_spread_failing_server_does_not_draw_every_stream], "review: a hostile server in the client's list")
