#!/usr/bin/env python3
"""A hostile authorized peer against the session engine (streams sequenced
and acknowledged over any number of paths), with wm_attack
(tests/integration/wm_attack.c):

- never acknowledging: the server keeps every byte it sent until the peer
  ACKs it (its resend store). A client that grants credit but never ACKs
  made the server keep one session window (64 MiB) per tunnel, outside
  --max-buffer. The resend store and the out-of-order bytes held now count
  in the tunnel's pool and in --max-buffer, so the relays stop reading their
  sources and the store stops growing.
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_attacks import Attacker, rss_mb, set_small_asan_quarantine  # noqa: E402

NOACK_TUNNELS = 6
NOACK_STREAMS = 4    # 4 x 16 MiB stream windows fill a 64 MiB session window
NOACK_BUDGET_MB = 32
# Allowed over --max-buffer: a read (256 KiB) per relay in flight, what the
# kernel and the allocator hold, slack: far below the 6 x 64 MiB unbounded.
NOACK_SLACK_MB = 32
WINDOW_MAX = str(1 << 30)


def firehose(c, idx, server):
    block = b"\x5a" * (256 << 10)
    try:
        while True:
            c.sendall(block)
    except OSError:
        pass


def test_never_acked_bounded(env):
    set_small_asan_quarantine()
    key, pub = env.keygen("noack.key")
    fast = env.target(h.FuncServer(firehose))
    srv = env.start_server(allow=[f"127.0.0.1:{fast.port}"], authorized=[pub],
                           extra=["--handshake-rate", "100000", "--open-rate", "100000",
                                  "--max-buffer", f"{NOACK_BUDGET_MB}M"],
                           log_level="info")
    base = rss_mb(srv.pid)
    hold = 6 if not env.bins.sanitized else 10
    atk = Attacker(env, srv, key).start("noack", "--target", f"127.0.0.1:{fast.port}",
                                        "--count", NOACK_TUNNELS, "--streams", NOACK_STREAMS,
                                        "--stream-window", WINDOW_MAX,
                                        "--session-window", WINDOW_MAX, "--hold", hold)
    peak = 0.0
    deadline = time.monotonic() + hold + t(30)
    while atk.poll() is None and time.monotonic() < deadline:
        peak = max(peak, rss_mb(srv.pid))
        time.sleep(0.2)
    out, err = atk.communicate(timeout=t(60))
    out = out.decode()
    m = re.search(r"^result: noack up=(\d+) received=(\d+)", out, re.M)
    check(atk.returncode == 0 and m is not None,
          f"wm_attack noack: {out!r} {err.decode()[-300:]}")
    up, received = int(m.group(1)), int(m.group(2))
    print(f"     {NOACK_TUNNELS} tunnels x {NOACK_STREAMS} streams, never ACKed: "
          f"{up} up, {received / 2**20:.1f} MB received")
    print(f"     server RSS: idle {base:.1f} MB, peak {peak:.1f} MB "
          f"(+{peak - base:.1f} MB; --max-buffer {NOACK_BUDGET_MB}M)")
    check(up == NOACK_TUNNELS, f"only {up} of {NOACK_TUNNELS} tunnels came up")
    check(received > (NOACK_BUDGET_MB << 20) // 2,
          f"only {received} bytes came: the attack did not run")
    check(peak - base <= NOACK_BUDGET_MB + NOACK_SLACK_MB,
          f"a peer that never ACKs made the server hold {peak - base:.1f} MB with "
          f"--max-buffer {NOACK_BUDGET_MB}M")
    check(srv.alive(), "the server exited")
    srv.stop()


if __name__ == "__main__":
    h.main([test_never_acked_bounded], "review: a hostile peer against the session engine")
