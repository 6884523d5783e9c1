#!/usr/bin/env python3
"""Log injection (security issue, point 8): what a LAN user types into a SOCKS
client reaches no log raw. A SOCKS5 target name holding a newline, a forged
log line and an ESC sequence is refused by the client when it decodes the
request (one host name grammar, netaddr_hostname_valid), so it never reaches
the server; an RFC 1929 user name with control bytes is refused the same way;
a UTF-8 user name, which is allowed, is logged escaped (\\xNN). Afterwards
neither daemon's log holds an ESC byte, a byte >= 0x80 or a line that starts
with the forged text, and the proxy still serves."""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

FORGED = ("2026-01-01T00:00:00.000Z wanmux-server info: tunnel from 198.18.6.6:1 up: "
          "client forged")
BAD_NAMES = [
    "evil\n" + FORGED + "\x1b[2J.example",
    "caf\u00e9.example",          # UTF-8 on the wire: bytes >= 0x80
    "tab\tname.example",
    "back\\slash.example",
]


def raw_log(d):
    with open(d.logpath, "rb") as f:
        return f.read()


def refused(sport, name, port, auth=None):
    """A SOCKS5 CONNECT to name: true when the client refuses it (a non-zero
    reply or a closed connection), false when it succeeds."""
    try:
        rep, s = h.socks5_connect(sport, h.SOCKS5_CONNECT, h.SOCKS5_DOMAIN, name, port,
                                  auth=auth, timeout=t(10))
    except (h.TestFailure, OSError):
        return True
    s.close()
    return rep != 0


def check_clean(d, what):
    log = raw_log(d)
    check(b"\x1b" not in log, f"{what} log holds a raw ESC byte")
    high = [b for b in log if b >= 0x80]
    check(not high, f"{what} log holds {len(high)} raw bytes >= 0x80")
    check(re.search(rb"^" + re.escape(FORGED[:24].encode()), log, re.M) is None,
          f"{what} log holds a forged line")
    check(b"\t" not in log, f"{what} log holds a raw tab")


def test_socks_target_names(env):
    origin = env.target(h.HttpOrigin(files={"index.html": b"hello\n"}))
    # Without the client's check the server would refuse these names for
    # want of a rule, and log them.
    srv = env.start_server(allow=[f"127.0.0.1:{origin.port}", f"localhost:{origin.port}"])
    sport = h.free_port()
    cli = h.start_frontend_client(env, srv.port, socks=sport)
    for i, name in enumerate(BAD_NAMES):
        check(refused(sport, name, origin.port), f"bad name #{i} {name!r} was accepted")
    print(f"     {len(BAD_NAMES)} target names with control bytes, bytes >= 0x80 or a "
          "backslash: refused by the client")
    rep, s = h.socks5_connect(sport, h.SOCKS5_CONNECT, h.SOCKS5_DOMAIN, "localhost",
                              origin.port)
    s.close()
    check(rep == 0, f"a good name after the bad ones: reply {rep}")
    time.sleep(0.5)
    check(srv.count(r"evil|caf|tab|back") == 0, "a bad name reached the server:\n"
          + srv.tail(5))
    check_clean(srv, "server")
    check_clean(cli, "client")
    print("     no raw control bytes, high bytes or forged lines in either log")


def test_socks_user_names(env):
    auth = env.write("socks.users", "alice:s3cret-Pa55\n", 0o600)
    origin = env.target(h.HttpOrigin(files={"index.html": b"hello\n"}))
    srv = env.start_server(allow=[f"127.0.0.1:{origin.port}"])
    sport = h.free_port()
    cli = h.start_frontend_client(env, srv.port, socks=sport, extra=["--socks-auth", auth])
    for user in ("mal\n" + FORGED, "esc\x1b[2J", "del\x7f"):
        with h.connect(sport, timeout=t(10)) as s:
            check(h.socks5_greet(s, (2,)) == 2, "greeting: method 2 not chosen")
            try:
                st = h.socks5_userpass(s, user, "x")
            except (h.TestFailure, OSError):
                st = None  # closed without a status: refused as malformed
            check(st != 0, f"user name {user!r} was accepted")
    # A UTF-8 user name is a fair user name: it fails on its password and
    # shows up escaped.
    with h.connect(sport, timeout=t(10)) as s:
        check(h.socks5_greet(s, (2,)) == 2, "greeting: method 2 not chosen")
        check(h.socks5_userpass(s, "jos\u00e9", "wrong") == 1, "jos\u00e9:wrong accepted")
    cli.wait_log(r"authentication failed for user 'jos\\xc3\\xa9'", t(5))
    print("     user names with control bytes refused; 'jos\u00e9' logged as "
          "'jos\\xc3\\xa9'")
    check_clean(srv, "server")
    check_clean(cli, "client")


if __name__ == "__main__":
    h.main([test_socks_target_names, test_socks_user_names], __doc__)
