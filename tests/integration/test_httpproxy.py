#!/usr/bin/env python3
"""The client's HTTP proxy front end (--http-proxy, --http-auth): curl -x
for http:// URLs (absolute-form, forwarded in origin-form with a Host
header and Connection: close; a large download compared by SHA-256), https
through CONNECT to a local TLS server (openssl s_server), the error answers
(403 not allowed, 502 refused, 400 malformed, 431 head too large, 407
credentials), a slowloris client and a header flood closed within the
request deadline, and the daemon still serving afterwards."""

import base64
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

DEADLINE = 10.0  # the client's request-phase deadline, seconds (not scaled)
PROMPT = 3.0     # "answered/closed promptly", seconds


def proxy_env(env, extra_allow=(), auth_file=None, files=None):
    origin = env.target(h.HttpOrigin(files=files or {"index.html": b"hello via http proxy\n"}))
    srv = env.start_server(allow=[f"127.0.0.1:{origin.port}", f"localhost:{origin.port}"]
                           + list(extra_allow))
    hport = h.free_port()
    extra = ["--http-auth", auth_file] if auth_file else []
    cli = h.start_frontend_client(env, srv.port, http=hport, extra=extra)
    return origin, srv, cli, hport


def good_request_works(env, hport, origin, auth=None):
    user = ["--proxy-user", f"{auth[0]}:{auth[1]}"] if auth else []
    rc, body, err = h.curl(env, ["-x", f"http://127.0.0.1:{hport}"] + user
                           + [f"http://localhost:{origin.port}/index.html"], timeout=t(15))
    check(rc == 0, f"curl -x through the HTTP proxy failed ({rc}): {err.strip()}")
    check(body == origin.files["index.html"], f"curl got {body[:80]!r}")


def expect_status(hport, what, request, want, closes=True):
    """Send a raw request; check the status and that the proxy closes."""
    t0 = time.monotonic()
    try:
        status, ans = h.http_exchange(hport, request, timeout=t(DEADLINE + PROMPT))
    except socket.timeout:
        raise h.TestFailure(f"{what}: no answer and no close within "
                            f"{t(DEADLINE + PROMPT):.0f} s")
    took = time.monotonic() - t0
    check(status == want, f"{what}: status {status} ({ans[:80]!r}), expected {want}")
    print(f"     {what}: {status} after {took * 1000:.0f} ms, closed")
    return ans


class OpensslServer:
    """openssl s_server -www on 127.0.0.1 with a throwaway certificate;
    stop() kills it (env.target() registers it for cleanup)."""

    def __init__(self, env):
        exe = h.need_program("openssl")
        cert, key = h.make_tls_cert(env)
        self.log = open(env.path("s_server.log"), "wb")
        # free_port() only finds a port that was free a moment ago: another
        # test may bind it first, and then s_server exits at once. Try again
        # with another port rather than fail on that race.
        for attempt in range(5):
            self.port = h.free_port()
            self.proc = subprocess.Popen(
                [exe, "s_server", "-www", "-accept", f"127.0.0.1:{self.port}", "-naccept",
                 "100", "-cert", cert, "-key", key], stdin=subprocess.DEVNULL,
                stdout=self.log, stderr=self.log, preexec_fn=h._die_with_parent)
            if self._wait_listening(attempt == 4):
                return

    def _wait_listening(self, last):
        deadline = time.monotonic() + t(10)
        while True:
            if self.proc.poll() is not None:
                check(not last, f"openssl s_server exited ({self.proc.returncode})")
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                check(time.monotonic() < deadline, "openssl s_server did not start listening")
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


def test_absolute_form(env):
    big = h.make_text(12 << 20, seed=21)
    origin, srv, cli, hport = proxy_env(env, files={"index.html": b"hi\n", "big.txt": big})
    proxy = f"http://127.0.0.1:{hport}"
    out = env.path("big.out")
    t0 = time.monotonic()
    rc, digest, err = h.curl(env, ["-x", proxy, f"http://localhost:{origin.port}/big.txt"],
                             timeout=t(60), out=out)
    check(rc == 0, f"curl -x http:// failed ({rc}): {err.strip()}")
    check(digest == h.sha(big), f"12 MiB via absolute-form: SHA-256 {digest}, expected "
          f"{h.sha(big)}")
    print(f"     12 MiB via absolute-form GET intact ({time.monotonic() - t0:.1f} s)")
    head = origin.heads[-1].decode(errors="replace")
    first = head.split("\r\n", 1)[0]
    check(first == "GET /big.txt HTTP/1.1",
          f"origin saw request line {first!r}, expected origin-form 'GET /big.txt HTTP/1.1'")
    check(re.search(r"\r\nHost: localhost:%d\r\n" % origin.port, head, re.I),
          f"origin saw no 'Host: localhost:{origin.port}' header: {head!r}")
    check(re.search(r"\r\nConnection: close\r\n", head, re.I),
          f"origin saw no 'Connection: close': {head!r}")
    check(not re.search(r"\r\nProxy-Connection:", head, re.I),
          f"origin saw the hop-by-hop Proxy-Connection header: {head!r}")
    print(f"     origin saw {first!r} with Host and Connection: close")
    srv.wait_log(r"connected to localhost:%d" % origin.port, t(5))

    # A raw absolute-form request with a body: the body follows the head.
    body = b"x=1&y=" + b"z" * 5000
    status, ans = h.http_exchange(
        hport, (f"POST http://127.0.0.1:{origin.port}/index.html HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{origin.port}\r\nContent-Length: {len(body)}\r\n\r\n")
        .encode() + body, timeout=t(15))
    check(status == 200 and ans.endswith(b"hi\n"), f"POST absolute-form: {ans[:80]!r}")
    head = origin.heads[-1].decode(errors="replace")
    check(head.startswith("POST /index.html HTTP/1.1\r\n"), f"origin saw {head[:60]!r}")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a tunnel went down")


def test_connect_tls(env):
    tls = env.target(OpensslServer(env))
    big = h.make_random(8 << 20, seed=3)
    origin, srv, cli, hport = proxy_env(env, extra_allow=[f"127.0.0.1:{tls.port}",
                                                          f"localhost:{tls.port}"],
                                        files={"index.html": b"hi\n", "big.bin": big})
    rc, body, err = h.curl(env, ["-k", "-x", f"http://127.0.0.1:{hport}",
                                 f"https://localhost:{tls.port}/"], timeout=t(30))
    check(rc == 0, f"curl -k -x https:// via CONNECT failed ({rc}): {err.strip()}")
    check(b"s_server" in body or b"Cipher" in body,
          f"https page through CONNECT does not look like s_server's: {body[:120]!r}")
    print(f"     https://localhost:{tls.port}/ via CONNECT: {len(body)} bytes from s_server")
    srv.wait_log(r"connected to localhost:%d" % tls.port, t(5))

    # Raw CONNECT: "200 Connection established", then raw bytes both ways.
    s = h.connect(hport, timeout=t(20))
    with s:
        s.sendall(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{origin.port}\r\n\r\n".encode())
        ans = b""
        while b"\r\n\r\n" not in ans:
            b = s.recv(4096)
            check(b, f"CONNECT: closed after {ans!r}")
            ans += b
        head, rest = ans.split(b"\r\n\r\n", 1)
        check(re.match(rb"HTTP/1\.[01] 200 Connection established$", head.split(b"\r\n")[0]),
              f"CONNECT answer {head!r}, expected '200 Connection established'")
        check(rest == b"", f"bytes after the CONNECT answer before we sent any: {rest[:40]!r}")
        s.sendall(b"GET /big.bin HTTP/1.0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = rest + h.recv_all(s)
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    check(h.sha(body) == h.sha(big),
          f"8 MiB through a raw CONNECT: {len(body)} bytes, SHA-256 differs")
    check(origin.heads[-1].startswith(b"GET /big.bin HTTP/1.0\r\n"),
          f"origin saw {origin.heads[-1][:60]!r} (CONNECT must pass bytes untouched)")
    print("     raw CONNECT: 200 Connection established, 8 MiB intact")


def test_error_answers(env):
    refusing = env.target(h.RefusingPort())
    recorder = env.target(h.RecorderServer())
    origin, srv, cli, hport = proxy_env(env, extra_allow=[f"127.0.0.1:{refusing.port}"])
    expect_status(hport, "CONNECT outside the allow list",
                  f"CONNECT 127.0.0.1:{recorder.port} HTTP/1.1\r\n\r\n".encode(), 403)
    expect_status(hport, "GET outside the allow list",
                  f"GET http://127.0.0.1:{recorder.port}/ HTTP/1.1\r\nHost: x\r\n\r\n"
                  .encode(), 403)
    rc, body, err = h.curl(env, ["-x", f"http://127.0.0.1:{hport}", "-o", os.devnull,
                                 "-w", "%{http_code}",
                                 f"http://127.0.0.1:{recorder.port}/"], timeout=t(15))
    check(body.strip() == b"403", f"curl to a target outside the allow list: {body!r}")
    expect_status(hport, "CONNECT to a refusing port",
                  f"CONNECT 127.0.0.1:{refusing.port} HTTP/1.1\r\n\r\n".encode(), 502)
    expect_status(hport, "GET to a refusing port",
                  f"GET http://127.0.0.1:{refusing.port}/ HTTP/1.1\r\nHost: x\r\n\r\n"
                  .encode(), 502)
    for what, req in (
            ("garbage request line", b"GARBAGE\r\n\r\n"),
            ("origin-form GET to the proxy", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("CONNECT without a port", b"CONNECT localhost HTTP/1.1\r\n\r\n"),
            ("CONNECT to port 99999", b"CONNECT localhost:99999 HTTP/1.1\r\n\r\n"),
            ("no HTTP version", b"CONNECT localhost:80\r\n\r\n"),
            ("HTTP/9.9", b"GET http://localhost/ HTTP/9.9\r\n\r\n"),
            ("binary junk", b"\x00\x01\x02\xff" * 64 + b"\r\n\r\n"),
            ("header without a colon", b"GET http://localhost/ HTTP/1.1\r\nNoColon\r\n\r\n")):
        expect_status(hport, what, req, 400)
    expect_status(hport, "one 20 KB header",
                  f"GET http://127.0.0.1:{origin.port}/ HTTP/1.1\r\nHost: x\r\n"
                  f"X-Big: {'a' * 20000}\r\n\r\n".encode(), 431)
    # A header flood: thousands of small headers.
    flood = (f"GET http://127.0.0.1:{origin.port}/ HTTP/1.1\r\n".encode()
             + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n")
    t0 = time.monotonic()
    status, ans = h.http_exchange(hport, flood, timeout=t(DEADLINE + PROMPT))
    check(status in (400, 431), f"header flood: status {status} ({ans[:60]!r}), "
          f"expected 431 or 400")
    print(f"     header flood (5000 headers, {len(flood)} bytes): {status} after "
          f"{(time.monotonic() - t0) * 1000:.0f} ms, closed")
    time.sleep(0.3)
    check(recorder.accepts == 0, f"the not-allowed target saw {recorder.accepts} connections")
    check(origin.accepts == 0, f"a rejected request reached the origin ({origin.accepts})")
    check(cli.alive(), "the client died")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a rejected request took a tunnel down")
    good_request_works(env, hport, origin)
    print("     client still serving")


def test_auth(env):
    auth = env.write("http.users", "alice:s3cret-Pa55\nbob:hunter2\n", 0o600)
    origin, srv, cli, hport = proxy_env(env, auth_file=auth)
    target = f"http://127.0.0.1:{origin.port}/index.html"
    ans = expect_status(hport, "no credentials",
                        f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 407)
    check(re.search(rb"\r\nProxy-Authenticate: Basic", ans, re.I),
          f"407 without a Proxy-Authenticate: Basic header: {ans!r}")

    for what, cred in (("wrong password", b"alice:nope"), ("unknown user", b"eve:hunter2"),
                       ("not base64", None)):
        value = b"Basic " + base64.b64encode(cred) if cred else b"Basic !!!notbase64"
        expect_status(hport, what, f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n".encode()
                      + b"Proxy-Authorization: " + value + b"\r\n\r\n", 407)
    rc, body, err = h.curl(env, ["-x", f"http://127.0.0.1:{hport}", "-o", os.devnull,
                                 "-w", "%{http_code}", target], timeout=t(15))
    check(body.strip() == b"407", f"curl without --proxy-user: {body!r}")
    rc, body, err = h.curl(env, ["-x", f"http://127.0.0.1:{hport}", "--proxy-user",
                                 "alice:wrong", "-o", os.devnull, "-w", "%{http_code}",
                                 target], timeout=t(15))
    check(body.strip() == b"407", f"curl with a wrong password: {body!r}")
    check(origin.accepts == 0, "a request without good credentials reached the origin")
    good_request_works(env, hport, origin, auth=("alice", "s3cret-Pa55"))
    head = origin.heads[-1].decode(errors="replace")
    check(not re.search(r"\r\nProxy-Authorization:", head, re.I),
          f"the proxy credentials were forwarded to the origin: {head!r}")
    rc, body, err = h.curl(env, ["-x", f"http://bob:hunter2@127.0.0.1:{hport}",
                                 target], timeout=t(15))
    check(rc == 0 and body == origin.files["index.html"],
          f"curl -x http://bob:hunter2@proxy: rc {rc}, {body[:60]!r}, {err.strip()}")
    print("     right credentials (--proxy-user, user:pass@proxy) work; "
          "Proxy-Authorization not forwarded")


def test_slowloris(env):
    origin, srv, cli, hport = proxy_env(env)

    def slowloris():
        """One header byte per second; returns seconds until closed."""
        s = h.connect(hport, timeout=t(10))
        t0 = time.monotonic()
        req = (f"GET http://127.0.0.1:{origin.port}/ HTTP/1.1\r\nHost: x\r\n"
               + "X-Slow: " + "a" * 100).encode()
        try:
            for b in req:
                if time.monotonic() - t0 > DEADLINE + t(PROMPT):
                    break
                try:
                    s.sendall(bytes([b]))
                except OSError:
                    return time.monotonic() - t0
                s.settimeout(1.0)
                try:
                    r = s.recv(4096)
                    if not r:
                        return time.monotonic() - t0
                except socket.timeout:
                    pass
                except OSError:
                    return time.monotonic() - t0
        finally:
            s.close()
        raise h.TestFailure(f"slowloris connection still open after "
                            f"{time.monotonic() - t0:.1f} s")

    def silent():
        s = h.connect(hport, timeout=t(10))
        with s:
            s.sendall(b"CONNECT 127.0.0.1:")
            took, _ = h.wait_closed(s, DEADLINE + t(PROMPT))
        return took

    mark = cli.mark()
    res = h.parallel([slowloris, slowloris, slowloris, silent, silent],
                     timeout=DEADLINE + t(PROMPT) + 10)
    for took in res:
        check(DEADLINE - 1.0 <= took <= DEADLINE + t(PROMPT),
              f"a slow request was closed after {took:.1f} s, expected about {DEADLINE:.0f} s")
    print("     3 slowloris + 2 silent clients: closed after "
          + ", ".join(f"{x:.1f}" for x in res) + " s")
    # One line a second per kind: the five deadlines fall in the same second.
    check(cli.count(r"no complete request head", since=mark) >= 1,
          "the client did not log the request deadline")
    check(cli.alive(), "the client died")
    good_request_works(env, hport, origin)


def test_connect_pipelined(env):
    """Bytes sent right behind the CONNECT head (before the 200) reach the
    target after the tunnel is open, unchanged; a request body behind an
    absolute-form head too."""
    echo = env.target(h.EchoServer())
    origin, srv, cli, hport = proxy_env(env, extra_allow=[f"127.0.0.1:{echo.port}"])
    payload = h.make_random(256 << 10, seed=8)
    with h.connect(hport, timeout=t(20)) as s:
        s.sendall(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                  + payload)
        s.shutdown(socket.SHUT_WR)
        ans = h.recv_all(s)
    check(b"\r\n\r\n" in ans, f"CONNECT pipelined: answer {ans[:80]!r}")
    head, rest = ans.split(b"\r\n\r\n", 1)
    check(head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"),
          f"CONNECT pipelined: {head!r}")
    check(h.sha(rest) == h.sha(payload),
          f"CONNECT with 256 KiB right behind the head: echoed {len(rest)} bytes, differs")
    print("     CONNECT + 256 KiB in one go: 200, then the bytes echoed intact")


if __name__ == "__main__":
    h.main([test_absolute_form, test_connect_tls, test_connect_pipelined, test_error_answers,
            test_auth,
            test_slowloris], __doc__)
