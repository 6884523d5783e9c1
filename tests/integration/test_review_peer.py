#!/usr/bin/env python3
"""A hostile authorized peer against a real wanmux-server (wm_attack,
tests/integration/wm_attack.c), found in the security review of the #6
fixes:

- credit pinning: several tunnels of one key, each with streams to a target
  that never reads, each sent all the credit of the server's hello. What the
  server then holds in relay buffers is bounded by --max-buffer (plus a
  small window per tunnel), not by the number of tunnels times the 64 MiB
  session window; also when --max-buffer is not given (the default budget
  applies before the first stream, when all tunnels may already be up).
- reverse listeners per key: a key whose allow-listen= (or --allow-listen)
  covers many ports asks for one listener per port, under the LISTEN rate.
  Each costs the server a descriptor, so without a cap one key could take
  every descriptor and the server could accept nothing more; the server
  keeps at most SERVER_REVERSE_MAX_PER_KEY (32) per key.
- a hostile server (wm_attack serve) sends a client thousands of LISTEN_RESULTs
  for its reverse request, flipping between "listening" and "refused": each
  flip was one line in the client's log. A tunnel now takes one answer per
  LISTEN it sent; the next closes the tunnel as a protocol error.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_attacks import (Attacker, attack_tool, rss_mb,  # noqa: E402
                          set_small_asan_quarantine)

PIN_TUNNELS = 6
PIN_TUNNELS_DEFAULT = 8   # 8 x 64 MiB windows: twice the default budget
DEFAULT_BUDGET_MB = 256   # RELAY_DEFAULT_BUDGET
PIN_STREAMS = 4
PIN_BUDGET_MB = 32   # --max-buffer for the test
# Allowed over --max-buffer: SESSION_MIN_WINDOW (64 KiB) per tunnel, what
# the kernel and the allocator hold, and slack: well under one 64 MiB window.
PIN_SLACK_MB = 40


def never_read(c, idx, server):
    """Accepts and holds the connection without reading a byte."""
    server._stop.wait(t(60))


def pin(env, budget_mb, tunnels):
    """Runs the pinning attack; budget_mb None: no --max-buffer (the default
    256M, which the server must apply from the first tunnel on)."""
    set_small_asan_quarantine()
    key, pub = env.keygen("pin.key")
    sink = env.target(h.FuncServer(never_read))
    extra = ["--handshake-rate", "100000", "--open-rate", "100000"]
    if budget_mb is not None:
        extra += ["--max-buffer", f"{budget_mb}M"]
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"], authorized=[pub], extra=extra,
                           log_level="info")
    budget = budget_mb if budget_mb is not None else DEFAULT_BUDGET_MB
    base = rss_mb(srv.pid)
    atk = Attacker(env, srv, key).start("pin", "--target", f"127.0.0.1:{sink.port}",
                                        "--count", tunnels, "--streams", PIN_STREAMS,
                                        "--hold", 3, "--wait", 5)
    line = atk.stdout.readline().decode().strip()
    time.sleep(1)
    held = rss_mb(srv.pid)
    out, err = atk.communicate(timeout=t(60))
    print(f"     {line}")
    print(f"     server RSS: idle {base:.1f} MB, pinned {held:.1f} MB "
          f"(+{held - base:.1f} MB; --max-buffer {budget}M, {tunnels} tunnels)")
    check(atk.returncode == 0 and line.startswith(f"pushed: up={tunnels} "),
          f"wm_attack pin: {line!r} {out.decode()} {err.decode()[-300:]}")
    m = re.search(r"credit=(\d+)", line)
    credit_mb = int(m.group(1)) / 2**20
    print(f"     credit the server's hellos granted: {credit_mb:.1f} MB in all")
    check(held - base <= budget + PIN_SLACK_MB,
          f"{tunnels} tunnels of one key made the server hold {held - base:.1f} MB "
          f"with --max-buffer {budget}M (hellos granted {credit_mb:.0f} MB)")
    check(srv.alive(), "the server exited")
    srv.stop()


def test_credit_pinning_bounded(env):
    pin(env, PIN_BUDGET_MB, PIN_TUNNELS)


def test_credit_pinning_default_budget(env):
    pin(env, None, PIN_TUNNELS_DEFAULT)


LISTEN_ASKED = 60
LISTEN_CAP = 32      # SERVER_REVERSE_MAX_PER_KEY


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_reverse_listeners_per_key_capped(env):
    key, pub = env.keygen("listen.key")
    base = h.free_port()
    srv = env.start_server(allow=[], authorized=[pub],
                           extra=["--allow-listen", "127.0.0.1", "--handshake-rate", "100000"],
                           log_level="info")
    fds0 = fd_count(srv.pid)
    atk = Attacker(env, srv, key).start("listen", "--target", f"127.0.0.1:{base}",
                                        "--count", LISTEN_ASKED, "--hold", 1, "--wait", 5)
    line = atk.stdout.readline().decode().strip()
    fds = fd_count(srv.pid)
    out, err = atk.communicate(timeout=t(60))
    res = out.decode().strip()
    print(f"     {res}; server descriptors {fds0} -> {fds}")
    m = re.search(r"ok=(\d+) refused=(\d+) not_allowed=(\d+) failed=(\d+)", res)
    check(atk.returncode == 0 and m is not None and line.startswith("listening:"),
          f"wm_attack listen: {line!r} {res!r} {err.decode()[-300:]}")
    ok, refused, failed = int(m.group(1)), int(m.group(2)), int(m.group(4))
    check(ok + failed >= LISTEN_CAP,
          f"only {ok} listeners and {failed} bind failures: the test proves nothing")
    check(ok <= LISTEN_CAP,
          f"one key holds {ok} reverse listeners (asked {LISTEN_ASKED}; cap {LISTEN_CAP}); "
          f"the server's descriptors went {fds0} -> {fds}")
    check(refused >= LISTEN_ASKED - LISTEN_CAP - failed,
          f"{refused} LISTENs refused, expected those over the cap")
    check(srv.alive(), "the server exited")
    srv.stop()


LISTEN_RESULTS = 20000
LOG_LINES_MAX = 2     # the one answer, and perhaps one after a reconnect


def test_hostile_server_unsolicited_listen_results(env):
    port = h.free_port()
    exe = attack_tool(env)
    srv = subprocess.Popen([exe, "serve", "--listen", str(port), "--key", env.server_key,
                            "--count", str(LISTEN_RESULTS), "--hold", "3", "--wait", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=h._die_with_parent)
    check(srv.stdout.readline().decode().strip() == "listening", "wm_attack serve did not listen")
    sink = h.free_port()
    cli = env.start_client(port, [], tunnels=1, wait=False, log_level="info",
                           extra=["--reverse", f"127.0.0.1:{sink}:127.0.0.1:{sink}"])
    out, err = srv.communicate(timeout=t(30))
    check(srv.returncode == 0 and b"result: serve" in out,
          f"wm_attack serve: {out.decode()} {err.decode()[-300:]}")
    time.sleep(1)
    check(cli.alive(), "the client exited")
    text = cli.log_text()
    lines = len(re.findall(r"reverse forward(: server listens| \S+ refused by the server)", text))
    print(f"     {LISTEN_RESULTS} flipping LISTEN_RESULTs from the server: {lines} client "
          f"log lines about them")
    check(cli.count(r"LISTEN_RESULT for request 1, which this session asked already") >= 1,
          "the client did not close the tunnel on the unsolicited LISTEN_RESULTs")
    check(lines <= LOG_LINES_MAX,
          f"a hostile server wrote {lines} lines into the client's log with "
          f"{LISTEN_RESULTS} LISTEN_RESULTs (at most {LOG_LINES_MAX} expected)")
    cli.stop()


if __name__ == "__main__":
    h.main([test_credit_pinning_bounded, test_credit_pinning_default_budget,
            test_reverse_listeners_per_key_capped,
            test_hostile_server_unsolicited_listen_results], "review: a hostile authorized peer")
