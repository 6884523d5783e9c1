#!/usr/bin/env python3
"""The client's SOCKS5 front end (--socks, --socks-auth): curl through it by
name (resolved on the server), by IPv4 and IPv6 address and with client-side
resolution, a large download compared by SHA-256; every reply code the
client promises from a raw SOCKS5 client (2 not allowed, 4 unknown host, 5
refused, 7 BIND and UDP ASSOCIATE, 8 address type; 6 timeout is checked in
test_transparent, whose namespace can drop SYNs); pipelined requests and
many at once; RFC 1929 credentials; and hostile input (wrong version,
truncated greeting then silence, garbage, random junk) closed within the
request deadline while the daemon keeps serving."""

import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

DEADLINE = 10.0  # the client's request-phase deadline, seconds (not scaled)
PROMPT = 3.0     # "closed promptly", seconds


def socks_env(env, extra_allow=(), auth_file=None, files=None):
    """An HTTP origin on 127.0.0.1, a server allowing it (by address and as
    localhost) and a client with --socks. Returns (origin, server, client,
    socks port)."""
    origin = env.target(h.HttpOrigin(files=files or {"index.html": b"hello via socks\n"}))
    srv = env.start_server(allow=[f"127.0.0.1:{origin.port}", f"localhost:{origin.port}"]
                           + list(extra_allow))
    sport = h.free_port()
    extra = ["--socks-auth", auth_file] if auth_file else []
    cli = h.start_frontend_client(env, srv.port, socks=sport, extra=extra)
    return origin, srv, cli, sport


def good_request_works(env, sport, origin, auth=None):
    """A plain curl request through the proxy gets the origin's page."""
    user = ["--proxy-user", f"{auth[0]}:{auth[1]}"] if auth else []
    rc, body, err = h.curl(env, ["--socks5-hostname", f"127.0.0.1:{sport}"] + user
                           + [f"http://localhost:{origin.port}/index.html"], timeout=t(15))
    check(rc == 0, f"curl through SOCKS5 failed ({rc}): {err.strip()}")
    check(body == origin.files["index.html"], f"curl got {body[:80]!r}")


def test_curl_by_name_ipv4_ipv6(env):
    big = h.make_random(16 << 20, seed=11)
    files = {"index.html": b"hello via socks\n", "big.bin": big}
    ok6, why6 = h.have_ipv6_loopback()
    origin6 = env.target(h.HttpOrigin(files=files, host="::1", family=socket.AF_INET6)) \
        if ok6 else None
    extra_allow = [f"[::1]:{origin6.port}"] if ok6 else []
    origin, srv, cli, sport = socks_env(env, extra_allow=extra_allow, files=files)
    proxy = f"127.0.0.1:{sport}"

    # By name: curl sends the name (ATYP 3), the server resolves it.
    out = env.path("big.out")
    t0 = time.monotonic()
    rc, digest, err = h.curl(env, ["--socks5-hostname", proxy,
                                   f"http://localhost:{origin.port}/big.bin"],
                             timeout=t(60), out=out)
    check(rc == 0, f"curl --socks5-hostname by name failed ({rc}): {err.strip()}")
    check(digest == h.sha(big), f"16 MiB by name: SHA-256 {digest}, expected {h.sha(big)}")
    print(f"     16 MiB by name via SOCKS5 intact ({time.monotonic() - t0:.1f} s)")
    m = srv.wait_log(r"stream \d+ from client .* connected to localhost:%d \(127\.0\.0\.1:%d\)"
                     % (origin.port, origin.port),
                     t(5))
    print(f"     server: {m.group(0).split(' debug: ')[-1]}")
    head = origin.heads[-1].decode(errors="replace")
    check(head.startswith("GET /big.bin HTTP/1.1\r\n"), f"origin saw {head[:60]!r}")
    check(f"\r\nHost: localhost:{origin.port}\r\n" in head, f"origin saw no Host: {head!r}")

    # By IPv4 address (ATYP 1).
    rc, body, err = h.curl(env, ["--socks5-hostname", proxy,
                                 f"http://127.0.0.1:{origin.port}/index.html"], timeout=t(15))
    check(rc == 0 and body == files["index.html"],
          f"by IPv4 address: rc {rc}, body {body[:60]!r}, {err.strip()}")

    # Client-side resolution (--socks5): curl resolves and sends an address.
    rc, body, err = h.curl(env, ["-4", "--socks5", proxy,
                                 f"http://localhost:{origin.port}/index.html"], timeout=t(15))
    check(rc == 0 and body == files["index.html"],
          f"--socks5 (client-side resolution): rc {rc}, body {body[:60]!r}, {err.strip()}")

    # The same IPv4 target from a raw client, to be sure of the ATYP.
    rep, s = h.socks5_connect(sport, h.SOCKS5_CONNECT, h.SOCKS5_IPV4, "127.0.0.1", origin.port)
    with s:
        check(rep == 0, f"raw CONNECT 127.0.0.1:{origin.port}: reply {rep}, expected 0")
        s.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        ans = h.recv_all(s, limit=4096)
    check(ans.endswith(files["index.html"]), f"raw IPv4 CONNECT: got {ans[-60:]!r}")

    if not ok6:
        print(f"     IPv6 part skipped: {why6}")
        return
    # IPv6 literal (ATYP 4), via curl and a raw client.
    out6 = env.path("big6.out")
    rc, digest, err = h.curl(env, ["--socks5-hostname", proxy,
                                   f"http://[::1]:{origin6.port}/big.bin"],
                             timeout=t(60), out=out6)
    check(rc == 0, f"curl to [::1] via SOCKS5 failed ({rc}): {err.strip()}")
    check(digest == h.sha(big), f"16 MiB from [::1]: SHA-256 {digest}, expected {h.sha(big)}")
    rep, s = h.socks5_connect(sport, h.SOCKS5_CONNECT, h.SOCKS5_IPV6, "::1", origin6.port)
    with s:
        check(rep == 0, f"raw CONNECT [::1]:{origin6.port}: reply {rep}, expected 0")
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        ans = h.recv_all(s, limit=4096)
    check(ans.endswith(files["index.html"]), f"raw IPv6 CONNECT: got {ans[-60:]!r}")
    srv.wait_log(r"connected to \[::1\]:%d" % origin6.port, t(5))
    print("     IPv6 [::1] via SOCKS5 intact (curl and raw ATYP 4)")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a tunnel went down")


def expect_reply(sport, what, want, cmd, atyp, addr, port, auth=None):
    t0 = time.monotonic()
    rep, s = h.socks5_connect(sport, cmd, atyp, addr, port, auth=auth, timeout=t(20))
    took = time.monotonic() - t0
    with s:
        check(rep == want, f"{what}: SOCKS5 reply {rep}, expected {want}")
        # A failure reply is followed by a close.
        if want != 0:
            h.wait_closed(s, t(PROMPT))
    print(f"     {what}: reply {rep} after {took * 1000:.0f} ms, then closed")


def test_reply_codes(env):
    refusing = env.target(h.RefusingPort())
    recorder = env.target(h.RecorderServer())
    origin, srv, cli, sport = socks_env(
        env, extra_allow=[f"127.0.0.1:{refusing.port}", "nonexistent.invalid:80"])
    C, V4, DN = h.SOCKS5_CONNECT, h.SOCKS5_IPV4, h.SOCKS5_DOMAIN
    expect_reply(sport, "target outside the allow list", 2, C, V4, "127.0.0.1", recorder.port)
    expect_reply(sport, "name outside the allow list", 2, C, DN, "localhost", recorder.port)
    expect_reply(sport, "unknown host nonexistent.invalid", 4, C, DN, "nonexistent.invalid", 80)
    expect_reply(sport, "target refuses", 5, C, V4, "127.0.0.1", refusing.port)
    expect_reply(sport, "BIND", 7, h.SOCKS5_BIND, V4, "127.0.0.1", origin.port)
    expect_reply(sport, "UDP ASSOCIATE", 7, h.SOCKS5_UDP, V4, "127.0.0.1", origin.port)
    expect_reply(sport, "unknown command 9", 7, 9, V4, "127.0.0.1", origin.port)
    # ATYP 9 does not exist; the request is otherwise well formed.
    expect_reply(sport, "address type 9", 8, C, 9, b"\x7f\x00\x00\x01", origin.port)
    time.sleep(0.3)
    check(recorder.accepts == 0, f"the not-allowed target saw {recorder.accepts} connections")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a failed request took a tunnel down")
    good_request_works(env, sport, origin)


def test_auth(env):
    auth = env.write("socks.users", "alice:s3cret-Pa55\n# comment\nbob:hunter2\n", 0o600)
    origin, srv, cli, sport = socks_env(env, auth_file=auth)

    # Offering only "no authentication": 0xFF, then closed.
    with h.connect(sport, timeout=t(10)) as s:
        m = h.socks5_greet(s, (0,))
        check(m == 0xFF, f"no-auth-only greeting to an auth proxy: method {m:#x}, expected 0xff")
        h.wait_closed(s, t(PROMPT))
    print("     no-auth-only greeting: 0xff, closed")

    # Wrong password: status 1 (failure), then closed.
    for user, pw in (("alice", "wrong"), ("mallory", "s3cret-Pa55"), ("alice", "")):
        with h.connect(sport, timeout=t(10)) as s:
            m = h.socks5_greet(s, (0, 2))
            check(m == 2, f"greeting with methods 0 and 2: chose {m:#x}, expected 2")
            st = h.socks5_userpass(s, user, pw)
            check(st == 1, f"{user}:{pw!r}: RFC 1929 status {st}, expected 1")
            h.wait_closed(s, t(PROMPT))
    print("     wrong credentials: status 1, closed (3 variants)")
    check(origin.accepts == 0, "a request with bad credentials reached the origin")

    # curl without credentials fails; with them it works.
    rc, body, err = h.curl(env, ["--socks5-hostname", f"127.0.0.1:{sport}",
                                 f"http://localhost:{origin.port}/index.html"], timeout=t(15))
    check(rc != 0, f"curl without credentials succeeded: {body[:60]!r}")
    rc, body, err = h.curl(env, ["--socks5-hostname", f"alice:s3cret-Pa55@127.0.0.1:{sport}",
                                 f"http://localhost:{origin.port}/index.html"], timeout=t(15))
    check(rc == 0 and body == origin.files["index.html"],
          f"curl with user:pass@proxy: rc {rc}, {body[:60]!r}, {err.strip()}")
    good_request_works(env, sport, origin, auth=("bob", "hunter2"))
    rep, s = h.socks5_connect(sport, h.SOCKS5_CONNECT, h.SOCKS5_IPV4, "127.0.0.1",
                              origin.port, auth=("alice", "s3cret-Pa55"))
    s.close()
    check(rep == 0, f"raw client with right credentials: reply {rep}")
    print("     right credentials: curl (user:pass@ and -U) and raw client work")


def closes_within(sport, what, payload, limit, quiet=False):
    """Send payload and check the client closes the connection within limit
    seconds. Returns seconds taken."""
    s = h.connect(sport, timeout=t(10))
    t0 = time.monotonic()
    try:
        try:
            s.sendall(payload)
        except OSError:
            pass
        took, how = h.wait_closed(s, limit)
    except h.TestFailure as e:
        raise h.TestFailure(f"{what}: {e}")
    finally:
        s.close()
    took = time.monotonic() - t0
    if not quiet:
        print(f"     {what}: closed after {took:.2f} s ({how})")
    return took


def test_bad_input(env):
    origin, srv, cli, sport = socks_env(env)
    rng = random.Random(7)
    # Wrong version byte: SOCKS4 CONNECT and an HTTP request.
    closes_within(sport, "SOCKS4 request", b"\x04\x01\x00\x50\x7f\x00\x00\x01user\x00",
                  t(PROMPT))
    closes_within(sport, "HTTP request to the SOCKS port", b"GET / HTTP/1.0\r\n\r\n",
                  t(PROMPT))
    # No methods at all, and a greeting that is fine followed by a request
    # with a bad version.
    closes_within(sport, "greeting with zero methods", b"\x05\x00", DEADLINE + t(PROMPT))
    closes_within(sport, "request with version 4",
                  b"\x05\x01\x00" + b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", t(PROMPT))
    # Oversized: a 255-name-byte domain of garbage, then kilobytes more.
    junk_name = bytes(rng.randrange(1, 256) for _ in range(255))
    closes_within(sport, "garbage 255-byte name + 4 KiB more",
                  b"\x05\x01\x00\x05\x01\x00\x03\xff" + junk_name + b"\x00\x50"
                  + os.urandom(4096), DEADLINE + t(PROMPT))
    # 1000 bytes of random junk (first byte not 5, so not a greeting).
    for i in range(3):
        junk = bytes([rng.choice([b for b in range(256) if b != 5])]) + \
            bytes(rng.randrange(256) for _ in range(999))
        closes_within(sport, f"1000 random bytes #{i}", junk, DEADLINE + t(PROMPT))
    # Truncated greeting then silence: must be closed by the request
    # deadline, not hang.
    slow = []
    for what, payload in (("truncated greeting, then silence", b"\x05\x02\x00"),
                          ("greeting, truncated request, then silence",
                           b"\x05\x01\x00\x05\x01\x00\x03\x09localho"),
                          ("nothing at all", b"")):
        slow.append(lambda w=what, p=payload: closes_within(sport, w, p,
                                                            DEADLINE + t(PROMPT) + 2))
    took = h.parallel(slow, timeout=DEADLINE + t(PROMPT) + 10)
    for x in took:
        check(x >= DEADLINE - 1.0, f"a silent connection was closed after {x:.1f} s, before "
              f"the {DEADLINE:.0f} s deadline")
    # A slow trickle (one byte per 1.5 s) still ends at the deadline.
    s = h.connect(sport, timeout=t(10))
    t0 = time.monotonic()
    trickle = b"\x05\x01\x00\x05\x01\x00\x03\x20" + b"a" * 40
    closed = False
    try:
        for b in trickle:
            if time.monotonic() - t0 > DEADLINE + t(PROMPT):
                break
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            s.settimeout(1.5)
            try:
                r = s.recv(4096)
                if not r:
                    closed = True
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
    finally:
        s.close()
    took = time.monotonic() - t0
    check(closed, f"slow trickle: still open after {took:.1f} s (deadline {DEADLINE:.0f} s)")
    print(f"     slow trickle (a byte per 1.5 s): closed after {took:.1f} s")

    # Many junk connections at once.
    jobs = [lambda i=i: closes_within(sport, f"junk #{i}", b"\x00" * 50,
                                      t(PROMPT), quiet=True) for i in range(20)]
    h.parallel(jobs, timeout=t(30))
    print("     20 concurrent junk connections: all closed promptly")
    check(cli.alive(), "the client died after bad input")
    good_request_works(env, sport, origin)
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "bad input took a tunnel down")
    print("     client still serving after bad input")


def test_pipelined_and_concurrent(env):
    """Greeting, request and the first data in one write (clients that do
    not wait for the replies); an upload with half-close; many at once."""
    sink = env.target(h.SinkServer())
    origin, srv, cli, sport = socks_env(env, extra_allow=[f"127.0.0.1:{sink.port}"])
    with h.connect(sport, timeout=t(15)) as s:
        s.sendall(b"\x05\x01\x00" + h.socks5_request_bytes(h.SOCKS5_CONNECT, h.SOCKS5_DOMAIN,
                                                          "localhost", origin.port)
                  + b"GET /index.html HTTP/1.0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        check(h.recv_exact(s, 2) == b"\x05\x00", "pipelined: method answer")
        rep = h.socks5_read_reply(s)
        check(rep == 0, f"pipelined: reply {rep}")
        ans = h.recv_all(s, limit=4096)
    check(ans.endswith(origin.files["index.html"]),
          f"pipelined request: data sent with the request was lost or garbled: {ans[-80:]!r}")
    check(origin.heads[-1].startswith(b"GET /index.html HTTP/1.0\r\n"),
          f"pipelined: origin saw {origin.heads[-1][:60]!r}")
    print("     greeting + CONNECT + data in one write: answered correctly")

    def up(seed):
        data = h.make_random(2 << 20, seed=seed)
        rep, s = h.socks5_connect(sport, h.SOCKS5_CONNECT, h.SOCKS5_IPV4, "127.0.0.1",
                                  sink.port, timeout=t(60))
        with s:
            check(rep == 0, f"upload #{seed}: reply {rep}")
            h.send_all(s, data)
            s.shutdown(socket.SHUT_WR)
            got = h.recv_all(s, limit=1024).decode().strip()
        check(got == h.sha(data), f"upload #{seed} via SOCKS5: sink hash differs")

    def page(i):
        rc, body, err = h.curl(env, ["--socks5-hostname", f"127.0.0.1:{sport}",
                                     f"http://localhost:{origin.port}/index.html"],
                               timeout=t(30))
        check(rc == 0 and body == origin.files["index.html"], f"curl #{i}: rc {rc} {err}")

    h.parallel([lambda i=i: up(i) for i in range(8)] + [lambda i=i: page(i) for i in range(24)],
               timeout=t(90))
    print("     8 x 2 MiB uploads (half-close) + 24 curl requests at once intact")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a tunnel went down")


if __name__ == "__main__":
    h.main([test_curl_by_name_ipv4_ipv6, test_reply_codes, test_auth, test_pipelined_and_concurrent,
            test_bad_input], __doc__)
