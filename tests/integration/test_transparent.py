#!/usr/bin/env python3
"""Transparent proxying (wanmux-client --transparent): connections an
nftables REDIRECT rule sends to the client's port go to their original
destination through the pair. Everything runs in a network namespace of its
own (one per run, deleted at the end):

    namespace wmx-tp-<pid>
    +--------------------------------------------------------------------+
    |  curl (uid 65534) --> 198.18.5.1:80 / [fd00:5::1]:80               |
    |        | nft nat output: skuid 65534, that daddr, dport 80         |
    |        v   -> redirect to 127.0.0.1:TPORT / [::1]:TPORT6           |
    |  wanmux-client --transparent ==tunnels==> wanmux-server (uid 0)    |
    |                                               |                    |
    |  HTTP origin on 198.18.5.1:80 and [fd00:5::1]:80 (d0 or lo) <-----+ |
    +--------------------------------------------------------------------+

The redirect matches only uid 65534 (curl runs as nobody): the server runs
as root in the same namespace and its own connection to 198.18.5.1:80 passes
the same output hook; matching on the application's uid keeps that one out
of the redirect instead of looping it back into the client. In a real
deployment the server is in another site and no such exemption is needed.

Checks: a page and a 4 MiB file by IPv4 and IPv6 (SHA-256), the server log
names the original destination, and a connection made straight to the
transparent port (not redirected) is refused without reaching the server.
The namespace also gives a target whose SYNs are silently dropped, for the
front ends' timeout answers (SOCKS5 reply 6, HTTP 504).
Needs root, `ip netns` and nft; when not root it prints why and exits 0.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

NS = f"wmx-tp-{os.getpid()}"
V4, V6 = "198.18.5.1", "fd00:5::1"  # benchmark / ULA addresses, only inside NS
DROP = "198.18.9.9"                 # its SYNs are dropped: connections time out
APP_UID = 65534                      # nobody: the redirected application
CLONE_NEWNET = 0x40000000
ORIGIN_DEV = "d0"  # where V4 and V6 live: d0 (dummy) or lo, see main()
_libc = ctypes.CDLL(None, use_errno=True)
PAGE = b"the original destination answered\n"
BIG = h.make_random(4 << 20, seed=17)


def sh(*argv, check_rc=True):
    p = subprocess.run(list(argv), capture_output=True, timeout=t(20))
    if check_rc and p.returncode != 0:
        raise h.TestFailure(f"{' '.join(argv)}: exit {p.returncode}: "
                            f"{p.stderr.decode(errors='replace').strip()}")
    return p


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({path}): {os.strerror(e)}")
    finally:
        os.close(fd)


def cannot_run():
    """Why this machine cannot run the test (only acceptable when not root),
    or None."""
    if os.geteuid() != 0:
        return "not root (needs a network namespace and nftables NAT rules)"
    # As root, a missing nft or a namespace that cannot be built is a
    # failure (a missing package or capability), not a reason to skip.
    return None


def load_rules(tport, tport6):
    """The REDIRECT rules (ruleset of this namespace only)."""
    rules = f"""
flush ruleset
table ip wmx {{
    chain out {{
        type nat hook output priority -100; policy accept;
        meta skuid {APP_UID} ip daddr {V4} tcp dport 80 redirect to :{tport}
    }}
}}
"""
    if tport6:
        rules += f"""
table ip6 wmx6 {{
    chain out {{
        type nat hook output priority -100; policy accept;
        meta skuid {APP_UID} ip6 daddr {V6} tcp dport 80 redirect to :{tport6}
    }}
}}
"""
    path = "/tmp/" + NS + ".nft"
    with open(path, "w") as f:
        f.write(rules)
    try:
        sh("nft", "-f", path)
    finally:
        os.unlink(path)


def app_curl(env, url, timeout=None):
    """curl as the redirected application (uid 65534); returns (rc, body,
    stderr)."""
    timeout = t(30) if timeout is None else timeout
    argv = [shutil.which("curl"), "-sS", "--noproxy", "*", "--max-time", str(int(timeout)), url]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout + 5, user=APP_UID, group=APP_UID, extra_groups=[],
                           env={"PATH": os.environ.get("PATH", ""), "HOME": "/tmp"},
                           cwd="/", preexec_fn=h._die_with_parent)
    except subprocess.TimeoutExpired:
        raise h.TestFailure(f"curl {url} still running after {timeout + 5:.0f} s")
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def pair(env, with_v6):
    """Origin on V4:80 (and [V6]:80), server allowing them, client(s) with
    --transparent; the nft rules. Returns (srv, cli, cli6 or None, tport)."""
    files = {"index.html": PAGE, "big.bin": BIG}
    origin = env.target(h.HttpOrigin(files=files, host=V4, port=80))
    allow = [f"{V4}:80"]
    if with_v6:
        env.target(h.HttpOrigin(files=files, host=V6, port=80, family=socket.AF_INET6))
        allow.append(f"[{V6}]:80")
    srv = env.start_server(allow=allow)
    tport = h.free_port()
    cli = h.start_frontend_client(env, srv.port, transparent=f"127.0.0.1:{tport}")
    cli6, tport6 = None, None
    if with_v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        tport6 = s.getsockname()[1]
        s.close()
        # One --transparent per client: a second client for the IPv6 port.
        cli6 = h.start_frontend_client(env, srv.port, transparent=f"[::1]:{tport6}",
                                       name="client6")
    load_rules(tport, tport6)
    return srv, cli, cli6, tport


def ipv6_usable():
    p = sh("ip", "-6", "addr", "show", "dev", ORIGIN_DEV, check_rc=False)
    if V6 not in p.stdout.decode():
        return False, f"could not put {V6} on the dummy interface (IPv6 disabled?)"
    return True, ""


def test_redirected_ipv4(env):
    srv, cli, _, tport = pair(env, with_v6=False)
    rc, body, err = app_curl(env, f"http://{V4}/index.html")
    check(rc == 0, f"curl http://{V4}/ as uid {APP_UID} failed ({rc}): {err.strip()}")
    check(body == PAGE, f"curl http://{V4}/ got {body[:80]!r}")
    m = srv.wait_log(r"stream \d+ from client .* connected to %s:80" % re.escape(V4), t(5))
    print(f"     server: {m.group(0).split(' debug: ')[-1]}")
    cli.wait_log(r"stream \d+ to %s:80 via tunnel" % re.escape(V4), t(5))
    rc, body, err = app_curl(env, f"http://{V4}/big.bin", timeout=t(60))
    check(rc == 0 and h.sha(body) == h.sha(BIG),
          f"4 MiB via the transparent port: rc {rc}, {len(body)} bytes, {err.strip()}")
    srv.wait_log(r"connected to %s:80" % re.escape(V4), t(5), count=2)
    print(f"     http://{V4}/ and 4 MiB through the redirect intact")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a tunnel went down")


def test_redirected_ipv6(env):
    ok, why = ipv6_usable()
    if not ok:
        print(f"     IPv6 part skipped: {why}")
        return
    srv, cli, cli6, tport = pair(env, with_v6=True)
    rc, body, err = app_curl(env, f"http://[{V6}]/index.html")
    check(rc == 0, f"curl http://[{V6}]/ as uid {APP_UID} failed ({rc}): {err.strip()}")
    check(body == PAGE, f"curl http://[{V6}]/ got {body[:80]!r}")
    m = srv.wait_log(r"stream \d+ from client .* connected to \[%s\]:80" % re.escape(V6), t(5))
    print(f"     server: {m.group(0).split(' debug: ')[-1]}")
    rc, body, err = app_curl(env, f"http://[{V6}]/big.bin", timeout=t(60))
    check(rc == 0 and h.sha(body) == h.sha(BIG),
          f"4 MiB via the IPv6 transparent port: rc {rc}, {len(body)} bytes, {err.strip()}")
    srv.wait_log(r"connected to \[%s\]:80" % re.escape(V6), t(5), count=2)
    cli6.wait_log(r"stream \d+ to \[%s\]:80 via tunnel" % re.escape(V6), t(5), count=2)
    # IPv4 still goes through the first client.
    rc, body, err = app_curl(env, f"http://{V4}/index.html")
    check(rc == 0 and body == PAGE, f"IPv4 next to IPv6: rc {rc}, {body[:60]!r}")
    print(f"     http://[{V6}]/ and 4 MiB through the ip6 redirect intact")


def test_direct_connection_refused(env):
    srv, cli, _, tport = pair(env, with_v6=False)
    for i in range(3):
        time.sleep(h.LOG_THROTTLE_S)  # one line a second per kind
        mark = cli.mark()
        s = h.connect(tport, timeout=t(5))
        try:
            try:
                s.sendall(f"GET /index.html HTTP/1.0\r\nHost: {V4}\r\n\r\n".encode())
            except OSError:
                pass
            took, how = h.wait_closed(s, t(3))
        finally:
            s.close()
        m = cli.wait_log(r"(connection was made to the transparent port itself|"
                         r"transparent connection without an original destination).*$",
                         t(5), since=mark)
        print(f"     direct connection #{i}: closed after {took * 1000:.0f} ms ({how}); "
              f"client: {m.group(0)[:70]}...")
    time.sleep(0.3)
    check(srv.count(r"stream \d+ from client") == 0,
          "a direct (not redirected) connection reached the server")
    # Root's own connection to the origin is not redirected (the rule is
    # for uid 65534 only) and works directly: the exemption the server needs.
    with socket.create_connection((V4, 80), timeout=t(5)) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        check(h.recv_all(s).endswith(PAGE), "root's direct connection to the origin failed")
    # And the redirect still works after the refused ones.
    rc, body, err = app_curl(env, f"http://{V4}/index.html")
    check(rc == 0 and body == PAGE, f"redirected curl after direct ones: rc {rc}, {err.strip()}")
    srv.wait_log(r"connected to %s:80" % re.escape(V4), t(5))
    check(cli.alive(), "the client died")


def test_connect_timeout_answers(env):
    """Not transparent proxying, but it needs this namespace: a target whose
    SYNs are silently dropped (nft input drop) times out on the server, and
    the front ends say so: SOCKS5 reply 6, HTTP 504. On the host network
    there is no such target to rely on."""
    sh("ip", "addr", "add", f"{DROP}/32", "dev", "lo", check_rc=False)
    path = "/tmp/" + NS + "-drop.nft"
    with open(path, "w") as f:
        f.write(f"""flush ruleset
table ip wmxdrop {{
    chain in {{
        type filter hook input priority 0; policy accept;
        ip daddr {DROP} tcp dport 9 drop
    }}
}}
""")
    try:
        sh("nft", "-f", path)
    finally:
        os.unlink(path)
    srv = env.start_server(allow=[f"{DROP}:9"])
    sport, hport = h.free_port(), h.free_port()
    cli = h.start_frontend_client(env, srv.port, socks=sport, http=hport)
    limit = 10.0 + t(8)  # the server's 10 s connect timeout, then the answer

    def socks():
        t0 = time.monotonic()
        rep, s = h.socks5_connect(sport, h.SOCKS5_CONNECT, h.SOCKS5_IPV4, DROP, 9,
                                  timeout=limit)
        s.close()
        check(rep == 6, f"SOCKS5 CONNECT to a silent target: reply {rep}, expected 6")
        return time.monotonic() - t0

    def http():
        t0 = time.monotonic()
        status, ans = h.http_exchange(hport, f"CONNECT {DROP}:9 HTTP/1.1\r\n\r\n".encode(),
                                      timeout=limit)
        check(status == 504, f"HTTP CONNECT to a silent target: {ans[:60]!r}, expected 504")
        return time.monotonic() - t0

    took = h.parallel([socks, http], timeout=limit + 5)
    print(f"     silent target: SOCKS5 reply 6 after {took[0]:.1f} s, HTTP 504 after "
          f"{took[1]:.1f} s")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a timeout took a tunnel down")


def main():
    args = h.parse_args(__doc__)
    why = cannot_run()
    if why:
        print(f"SKIPPED: {why}")
        print("0 passed, 0 failed")
        sys.exit(h.SKIP_RC)
    for prog in ("ip", "nft", "curl"):
        if shutil.which(prog) is None:
            print(f"FAIL: {prog} not found; as root this test needs it "
                  f"(apt-get install {'iproute2' if prog == 'ip' else 'nftables' if prog == 'nft' else prog})")
            print("0 passed, 1 failed")
            sys.exit(1)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)

    def on_signal(sig, frame):
        # Killed mid-run (ctest timeout): do not leave the namespace behind.
        h._kill_all()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    rc = 1
    try:
        sh("ip", "netns", "add", NS)
        try:
            setns(f"/run/netns/{NS}")
            sh("ip", "link", "set", "lo", "up")
            # A dummy interface for the origin's addresses; kernels without
            # the dummy driver get them on lo (same routing, all local).
            dev = "d0"
            if sh("ip", "link", "add", dev, "type", "dummy", check_rc=False).returncode != 0:
                dev = "lo"
            sh("ip", "link", "set", dev, "up")
            sh("ip", "addr", "add", f"{V4}/32", "dev", dev)
            sh("ip", "-6", "addr", "add", f"{V6}/128", "dev", dev, "nodad", check_rc=False)
            global ORIGIN_DEV
            ORIGIN_DEV = dev
            rc = h.run_tests([test_redirected_ipv4, test_redirected_ipv6,
                              test_direct_connection_refused, test_connect_timeout_answers],
                             args)
        finally:
            h._kill_all()
            if _libc.setns(home, CLONE_NEWNET) != 0:
                print("test_transparent: could not return to the original namespace")
            subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    except h.TestFailure as e:
        print(f"FAIL: setting up namespace {NS}: {e}")
        print("0 passed, 1 failed")
    finally:
        os.close(home)
    sys.exit(rc)


if __name__ == "__main__":
    main()
