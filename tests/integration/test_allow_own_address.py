#!/usr/bin/env python3
"""The server's own interface addresses are guarded like loopback: a target
at one of them is refused under a broad rule (the server's subnet, or
0.0.0.0/0) and permitted only by a rule for exactly that address, so a
service listening on all interfaces stays local. An address added while the
server runs is guarded after the next refresh (at most 10 s).

Runs in a private network namespace of its own (unshare CLONE_NEWNET, so it
needs root; without root it exits 77), where lo is up and carries
198.18.77.1 and later 198.18.77.2: nothing leaves the namespace.

  +--------------------------- netns (this process) ---------------------+
  |  lo: 127.0.0.1, 198.18.77.1, (198.18.77.2)                           |
  |  client --forward --> server --allow 198.18.0.0/15 --> sink 0.0.0.0  |
  +----------------------------------------------------------------------+
"""

import ctypes
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

CLONE_NEWNET = 0x40000000
OWN, LATER = "198.18.77.1", "198.18.77.2"
REFRESH = 10.0  # SERVER_OWN_REFRESH_MS / 1000


def sh(*argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    check(p.returncode == 0, f"{' '.join(argv)}: {p.stderr.strip()}")


def refusal_re(target):
    return r"refused stream \d+ from client .* to %s: no rule permits it" % re.escape(target)


def try_forward(lport):
    """Upload a little through the forward; the SHA-256 the sink saw, or None
    when the stream was refused (closed without an answer)."""
    data = h.make_random(64 << 10, seed=lport)
    try:
        got = h.upload(lport, data, timeout=t(10))
    except (ConnectionResetError, BrokenPipeError, TimeoutError, OSError):
        return None
    return got if got == h.sha(data) else None


def test_own_address_needs_exact_rule(env):
    guarded = env.target(h.SinkServer(host="0.0.0.0"))
    exact = env.target(h.SinkServer(host="0.0.0.0"))
    other = env.target(h.SinkServer(host="0.0.0.0"))
    srv = env.start_server(allow=["198.18.0.0/15", "0.0.0.0/0", f"{OWN}:{exact.port}"])
    l_guarded, l_exact, l_later = h.free_port(), h.free_port(), h.free_port()
    env.start_client(srv.port, [(l_guarded, OWN, guarded.port), (l_exact, OWN, exact.port),
                                (l_later, LATER, other.port)])
    check(try_forward(l_guarded) is None,
          f"{OWN}:{guarded.port}, the server's own address, was reached under 198.18.0.0/15 "
          "and 0.0.0.0/0")
    srv.wait_log(refusal_re(f"{OWN}:{guarded.port}"), t(5))
    check(guarded.accepts == 0, f"the guarded sink saw {guarded.accepts} connections")
    check(try_forward(l_exact) is not None,
          f"{OWN}:{exact.port} with a rule for exactly it was refused")
    print(f"     {OWN}:{guarded.port} refused under broad rules; {OWN}:{exact.port} "
          "permitted by its own rule")

    # Not an address of this machine yet: the broad rule permits it (the
    # namespace routes it nowhere, so expect a refused connect, not a policy
    # refusal). Then it becomes one, and is guarded after the refresh.
    sh("ip", "addr", "add", f"{LATER}/32", "dev", "lo")
    time.sleep(REFRESH + 1)
    check(try_forward(l_later) is None, f"{LATER} still reached after the refresh")
    srv.wait_log(refusal_re(f"{LATER}:{other.port}"), t(5))
    check(other.accepts == 0, f"the sink on {LATER} saw {other.accepts} connections")
    print(f"     {LATER}, added while the server ran, refused after the refresh")


def main():
    args = h.parse_args(__doc__)
    if os.geteuid() != 0:
        print("SKIP: not root (needs its own network namespace)")
        sys.exit(77)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        print(f"FAIL: unshare(CLONE_NEWNET): {os.strerror(e)}")
        sys.exit(1)
    try:
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "addr", "add", f"{OWN}/32", "dev", "lo")
    except h.TestFailure as e:
        print(f"FAIL: setting up the namespace: {e}")
        sys.exit(1)
    try:
        rc = h.run_tests([test_own_address_needs_exact_rule], args)
    finally:
        h._kill_all()
    sys.exit(rc)


if __name__ == "__main__":
    main()
