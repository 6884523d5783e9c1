#!/usr/bin/env python3
"""Security review of target pools (--pool), as a hostile client and a LAN
page against the admin actions: backends whose connects fail inside
connect() (ENETUNREACH to 224.0.0.1: nothing is sent) or whose lookups
answer inside the call (localhost, /etc/hosts) are tried in turn without
freeing the stream's state twice; the server out of descriptors refuses the
stream without marking backends down; streams reset, cut by a lost tunnel
or by a reload mid-retry free everything and return every descriptor;
early bytes and a FIN survive a retry once; health checks of a localhost
backend ask no DNS, those of named backends resolve as streams do, and a
reload or the exit cancels a lookup still under way; admin actions take
only a literal Host (a port at most after it), no preflight, no body, no
GET; reloads while checks run."""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_admin import metric, scrape  # noqa: E402
from test_pools import (HEALTH, POOL, VHOST, VPORT, Blackhole, ask, open_held,  # noqa: E402
                        start_backend)  # noqa: E402

# A TCP connect to a multicast address fails inside connect() with
# ENETUNREACH on Linux: no packet leaves the host.
UNREACHABLE = "224.0.0.1:9"


def pool_server(env, spec, extra=()):
    conf = env.write("server.conf", f"pool {POOL}={spec}\n")
    admin = h.free_port()
    srv = env.start_server(allow=["127.0.0.2:9"],
                           extra=["--config", conf, "--admin", str(admin), *HEALTH, *extra],
                           log_level="info")
    srv.admin = admin
    srv.conf = conf
    lport = h.free_port()
    cli = env.start_client(srv.port, [(lport, VHOST, VPORT)], tunnels=1, log_level="info")
    return srv, cli, lport



def never_served(lport, n, what):
    """n requests through lport, each failing as ask() fails; one answered
    raises with what."""
    for _ in range(n):
        try:
            ask(lport, timeout=t(5))
        except h.TestFailure:
            continue
        raise AssertionError(what)


def test_sync_connect_failure_tries_next_once(env):
    """A backend whose connect fails at once: the stream goes to the live
    backend, which is not blamed for it; with only such a backend the
    stream is refused, and the server survives (no double free)."""
    ok = start_backend(env, "B0")
    srv, cli, lport = pool_server(env, f"{UNREACHABLE},127.0.0.1:{ok.port}",
                                  extra=["--health-fall", "100"])
    names = [ask(lport, send=b"early") for _ in range(6)]
    check(names == ["B0"] * 6, f"connections not all served by the live backend: {names}")
    text = scrape(srv.admin)
    fails = metric(text, "wanmux_pool_backend_connect_failures_total", pool=POOL,
                   backend=f"127.0.0.1:{ok.port}")
    check(fails == 0, f"the live backend was blamed for {fails} failed connects")
    check(metric(text, "wanmux_pool_backend_up", pool=POOL, backend=f"127.0.0.1:{ok.port}")
          == 1, "the live backend is marked down")
    # Only the unreachable one: every connection refused, the server lives.
    env.write("server.conf", f"pool {POOL}={UNREACHABLE}\n")
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    never_served(lport, 4, "unreachable")
    check(srv.proc.poll() is None, "the server died")
    srv.check_sanitizer()


def server_nofile(env, spec, nofile, extra=()):
    """A server with the pool under RLIMIT_NOFILE nofile (soft = hard)."""
    port = h.free_port()
    admin = h.free_port()
    conf = env.write("server.conf", f"pool {POOL}={spec}\n")
    auth = env.write("server.authorized", f"{env.client_pub} test key\n", 0o644)
    argv = [env.bins.server, "--listen", f"127.0.0.1:{port}", "--key", env.server_key,
            "--authorized-keys", auth, "--allow", "127.0.0.2:9", "--log-level", "info",
            "--config", conf, "--admin", str(admin), *HEALTH, *extra]
    srv = h.Daemon("server", argv, env.path("server.log"), nofile=(nofile, nofile))
    env.daemons.append(srv)
    srv.wait_log(r"listening on 127\.0\.0\.1:%d" % port, t(10))
    srv.port = port
    srv.admin = admin
    return srv


def hold_until_refused(lport, most):
    """Connections through the pool kept open until one is refused (or
    most are open): (held sockets, refusals seen)."""
    held = []
    refused = 0
    for _ in range(most):
        try:
            s, _name = open_held(lport)
        except (OSError, h.TestFailure):
            refused += 1
            if refused >= 3:
                break
            continue
        held.append(s)
    return held, refused


def test_emfile_on_named_backends(env):
    """The server out of descriptors (a client holding many streams): the
    connect to a named backend cannot even start, for each backend in turn.
    The stream is refused, the daemon survives (the second backend's lookup
    answered inside the first's used to free the stream's state twice), and
    no backend is marked down for what was the server's own shortage."""
    tgs = [start_backend(env, f"B{i}") for i in range(2)]
    spec = ",".join(f"localhost:{tg.port}" for tg in tgs)
    srv = server_nofile(env, spec, 64, extra=["--health-interval", "60"])
    lport = h.free_port()
    env.start_client(srv.port, [(lport, VHOST, VPORT)], tunnels=1, log_level="info")
    held, refused = hold_until_refused(lport, 80)
    print(f"     {len(held)} connections held, {refused} refused")
    check(refused > 0, f"the descriptor limit was never reached ({len(held)} held)")
    check(srv.alive(), "the server died when a backend connect could not start")
    srv.check_sanitizer()
    for s in held:
        s.close()
    time.sleep(0.5)
    text = scrape(srv.admin)
    for tg in tgs:
        up = metric(text, "wanmux_pool_backend_up", pool=POOL, backend=f"localhost:{tg.port}")
        check(up == 1, f"backend localhost:{tg.port} marked down for the server's EMFILE")
    names = [ask(lport) for _ in range(4)]
    check(sorted(set(names)) == ["B0", "B1"], f"after the shortage: {names}")


def can_bind_hosts(env):
    """Whether a private mount namespace with its own /etc/hosts can be made
    here (root, unshare): the reason it cannot, or None."""
    if os.geteuid() != 0:
        return "needs root for a private /etc/hosts (unshare -m)"
    probe = env.write("probe.hosts", "127.0.0.1 probe.test\n")
    rc, out, err = h.run_cmd(["unshare", "-m", "sh", "-c",
                              f"mount --bind {probe} /etc/hosts && cat /etc/hosts"])
    if rc != 0 or "probe.test" not in out:
        return f"unshare -m with a bind mount failed: {err.strip()}"
    return None


def test_named_backends_failing_at_once(env):
    """Backends named in /etc/hosts (answered inside the lookup call) whose
    connects fail inside connect() (ENETUNREACH, as when the backends'
    network is gone): each is tried from inside the answer for the one
    before. The stream is refused once and its state freed once (it was
    written after free, then freed twice), and a live third backend serves."""
    why = can_bind_hosts(env)
    if why:
        print(f"     skipped here: {why}")
        return
    hosts = env.write("hosts", "224.0.0.1 gone-a.test gone-b.test\n")
    ok = start_backend(env, "B0")
    port = h.free_port()
    admin = h.free_port()
    conf = env.write("server.conf", "pool %s=gone-a.test:9,gone-b.test:9\n" % POOL)
    auth = env.write("server.authorized", f"{env.client_pub} test key\n", 0o644)
    argv = [env.bins.server, "--listen", f"127.0.0.1:{port}", "--key", env.server_key,
            "--authorized-keys", auth, "--allow", "127.0.0.2:9", "--log-level", "info",
            "--config", conf, "--admin", str(admin), *HEALTH, "--health-interval", "60"]
    script = f"mount --bind {hosts} /etc/hosts && exec \"$@\""
    srv = h.Daemon("server", ["unshare", "-m", "sh", "-c", script, "sh", *argv],
                   env.path("server.log"))
    env.daemons.append(srv)
    srv.wait_log(r"listening on 127\.0\.0\.1:%d" % port, t(10))
    lport = h.free_port()
    env.start_client(port, [(lport, VHOST, VPORT)], tunnels=1, log_level="info")
    never_served(lport, 3, "a pool of unreachable backends served")
    srv.wait_log(r"no backend (left to try|of the pool is up)", t(5))
    check(srv.alive(), "the server died")
    srv.check_sanitizer()
    # With a live backend after them, it serves.
    env.write("server.conf", "pool %s=gone-a.test:9,gone-b.test:9,localhost:%d\n"
              % (POOL, ok.port))
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    names = [ask(lport, send=b"early") for _ in range(4)]
    check(names == ["B0"] * 4, f"not served by the live backend: {names}")
    check(srv.alive(), "the server died")
    srv.check_sanitizer()


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def reset_soon(lport, n):
    """n connections through the forward, each reset after a moment: the
    client's RESET reaches the server while it is still connecting."""
    socks = []
    for _ in range(n):
        s = h.connect(lport, timeout=t(5))
        s.sendall(b"early bytes")
        socks.append(s)
    time.sleep(0.1)
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()


def test_streams_ended_mid_retry(env):
    """Streams whose connects are under way (a blackholed backend first,
    then named ones) end every way they can: the client resets them, the
    tunnel dies, a reload removes the pool. Nothing is used after free and
    the server's descriptors come back to where they were."""
    holes = [Blackhole() for _ in range(2)]
    env.targets.extend(holes)
    ok = start_backend(env, "B0")
    spec = (f"127.0.0.1:{holes[0].port},127.0.0.1:{holes[1].port},localhost:{ok.port}")
    srv, cli, lport = pool_server(env, spec, extra=["--health-interval", "60",
                                                    "--pool-connect-timeout", "1s",
                                                    "--resume-timeout", "1"])
    check(ask(lport) == "B0", "the live backend does not serve")
    base = fds(srv.pid)
    # The client resets streams while their first or second connect runs.
    for delay in (0.05, 1.2):
        reset_soon(lport, 6)
        time.sleep(delay)
    # Streams mid-retry, then a reload drops the pool.
    held = [h.connect(lport, timeout=t(5)) for _ in range(6)]
    time.sleep(0.3)
    env.write("server.conf", f"pool other.pool:80=localhost:{ok.port}\n")
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    # Streams mid-retry, then the tunnel dies (the client killed).
    env.write("server.conf", f"pool {POOL}={spec}\n")
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    more = [h.connect(lport, timeout=t(5)) for _ in range(6)]
    time.sleep(0.3)
    cli.kill()
    for s in held + more:
        s.close()
    deadline = time.monotonic() + t(10)
    while fds(srv.pid) > base and time.monotonic() < deadline:
        time.sleep(0.1)
    check(srv.alive(), "the server died")
    srv.check_sanitizer()
    check(fds(srv.pid) <= base, f"server descriptors {base} before, {fds(srv.pid)} after")
    text = scrape(srv.admin)
    for b in (f"127.0.0.1:{holes[0].port}", f"127.0.0.1:{holes[1].port}",
              f"localhost:{ok.port}"):
        act = metric(text, "wanmux_pool_backend_active_streams", pool=POOL, backend=b)
        check(act == 0, f"backend {b}: {act} active streams after all ended")


def test_early_bytes_and_fin_across_retries(env):
    """A stream that sent 256 KiB and its FIN while the server was still
    trying a blackholed backend: the live backend gets every byte once, in
    order, then the FIN (its echo ends with EOF)."""
    hole = Blackhole()
    env.targets.append(hole)
    ok = start_backend(env, "B0")
    srv, cli, lport = pool_server(env, f"127.0.0.1:{hole.port},127.0.0.1:{ok.port}",
                                  extra=["--health-interval", "60",
                                         "--pool-connect-timeout", "500ms"])
    payload = bytes(range(256)) * 1024
    for _ in range(2):  # round robin: one of the two tries the hole first
        s = h.connect(lport, timeout=t(10))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = h.recv_all(s)
        s.close()
        check(got == b"B0\n" + payload,
              f"echo across the retry: {len(got)} bytes, expected {len(payload) + 3}")
    check(srv.count(r"timeout; trying another backend") >= 1, "no stream was retried")
    srv.check_sanitizer()


def test_localhost_backend_checks_ask_no_dns(env):
    """A backend named db.localhost: its streams go to loopback without DNS
    (RFC 6761), and so must its health checks. They used to go through
    bufferevent's own lookup: the name went to the resolver (here a UDP
    socket that counts queries and never answers), the checks failed and
    a working backend was marked down."""
    why = can_bind_hosts(env)
    if why:
        print(f"     skipped here: {why}")
        return
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    dns.setblocking(False)
    resolv = env.write("resolv.conf", "nameserver 127.0.0.1:%d\noptions timeout:1 attempts:1\n"
                       % dns.getsockname()[1])
    ok = start_backend(env, "B0")
    port = h.free_port()
    admin = h.free_port()
    conf = env.write("server.conf", f"pool {POOL}=db.localhost:{ok.port}\n")
    auth = env.write("server.authorized", f"{env.client_pub} test key\n", 0o644)
    argv = [env.bins.server, "--listen", f"127.0.0.1:{port}", "--key", env.server_key,
            "--authorized-keys", auth, "--allow", "127.0.0.2:9", "--log-level", "info",
            "--config", conf, "--admin", str(admin), *HEALTH]
    script = f"mount --bind {resolv} /etc/resolv.conf && exec \"$@\""
    srv = h.Daemon("server", ["unshare", "-m", "sh", "-c", script, "sh", *argv],
                   env.path("server.log"))
    env.daemons.append(srv)
    srv.wait_log(r"listening on 127\.0\.0\.1:%d" % port, t(10))
    time.sleep(3)  # 15 checks at 0.2 s; fall is 2
    queries = 0
    while True:
        try:
            dns.recv(4096)
            queries += 1
        except BlockingIOError:
            break
    dns.close()
    text = scrape(admin)
    b = f"db.localhost:{ok.port}"
    passed = metric(text, "wanmux_pool_backend_checks_passed_total", pool=POOL, backend=b)
    up = metric(text, "wanmux_pool_backend_up", pool=POOL, backend=b)
    print(f"     {queries} DNS queries, {passed} checks passed, up={up}")
    check(queries == 0, f"health checks sent {queries} DNS queries for a localhost name")
    check(passed >= 5 and up == 1, f"the backend's checks: {passed} passed, up={up}")
    lport = h.free_port()
    env.start_client(port, [(lport, VHOST, VPORT)], tunnels=1, log_level="info")
    check(ask(lport) == "B0", "the localhost backend does not serve")
    srv.check_sanitizer()


def admin_raw(port, text):
    """One raw request to the admin port: the status code (0: no answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=t(10))
    try:
        s.sendall(text.encode())
        data = h.recv_all(s)
    finally:
        s.close()
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def test_admin_action_host_forms(env):
    """POST /pool/drain as a web page or a LAN peer would try it: only a
    Host that is an address or localhost, with at most a port after it,
    and the X-Wanmux-Action header act. A Host with a name after the
    address ("[::1]evil.example", "127.0.0.1:80.evil.example") was taken
    as the address. No preflight passes (OPTIONS is no allowed method),
    a body is refused (413), GET is no action."""
    ok = start_backend(env, "B0")
    srv, cli, lport = pool_server(env, f"127.0.0.1:{ok.port}", extra=["--admin-actions"])
    q = f"/pool/drain?pool={POOL}&backend=127.0.0.1:{ok.port}"

    def post(host, extra="", body=""):
        hh = f"Host: {host}\r\n" if host is not None else ""
        return admin_raw(srv.admin, f"POST {q} HTTP/1.1\r\n{hh}X-Wanmux-Action: 1\r\n{extra}"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}")

    refused = {}
    for host in ("[::1]evil.example", "[::1]:80.evil.example", "127.0.0.1:80.evil.example",
                 "127.0.0.1:", "localhost:x", "localhost.", "evil.example",
                 f"127.0.0.1.nip.io:{srv.admin}", "", None):
        refused[host] = post(host)
    print(f"     refused Host forms: {sorted(set(refused.values()))}")
    check(all(code == 403 for code in refused.values()), f"Host forms not refused: {refused}")
    check(post("127.0.0.1", body="x" * 64) == 413, "a POST body was taken")
    st = admin_raw(srv.admin, f"OPTIONS {q} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: "
                   "http://evil.example\r\nAccess-Control-Request-Method: POST\r\n"
                   "Access-Control-Request-Headers: x-wanmux-action\r\nConnection: close\r\n\r\n")
    check(not 200 <= st < 300, f"a CORS preflight got HTTP {st}")
    st = admin_raw(srv.admin, f"GET {q} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wanmux-Action: 1\r\n"
                   "Connection: close\r\n\r\n")
    check(st == 404, f"GET of an action: HTTP {st}")
    check(metric(scrape(srv.admin), "wanmux_pool_backend_draining", pool=POOL,
                 backend=f"127.0.0.1:{ok.port}") == 0, "a refused request drained the backend")
    for host in (f"127.0.0.1:{srv.admin}", "127.0.0.1", f"[::1]:{srv.admin}", "localhost",
                 f"localhost:{srv.admin}"):
        check(post(host) == 200, f"Host {host!r} refused")
    check(metric(scrape(srv.admin), "wanmux_pool_backend_draining", pool=POOL,
                 backend=f"127.0.0.1:{ok.port}") == 1, "not drained")


def test_reloads_while_checks_run(env):
    """Health checks in flight (0.2 s interval, blackholed and named
    backends) while reloads remove and re-add the pool ten times and
    streams run: nothing used after free, checks go on afterwards."""
    hole = Blackhole()
    env.targets.append(hole)
    ok = start_backend(env, "B0")
    spec = f"127.0.0.1:{hole.port},localhost:{ok.port}"
    srv, cli, lport = pool_server(env, spec)
    for i in range(10):
        env.write("server.conf", (f"pool {POOL}={spec}\n" if i % 2 else
                                  f"pool other.pool:80=localhost:{ok.port}\n"))
        mark = srv.mark()
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reloaded: ", t(10), since=mark)
        time.sleep(0.15)
    env.write("server.conf", f"pool {POOL}={spec}\n")
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    time.sleep(1)
    check(all(ask(lport) == "B0" for _ in range(4)), "the live backend does not serve")
    text = scrape(srv.admin)
    passed = metric(text, "wanmux_pool_backend_checks_passed_total", pool=POOL,
                    backend=f"localhost:{ok.port}")
    check(passed >= 2, f"checks did not go on after the reloads: {passed} passed")
    check(srv.alive(), "the server died")
    srv.check_sanitizer()


def dns_reply(query):
    """The answer to a query: no such name (NXDOMAIN) for names under nx.;
    else for an A record 127.0.0.1, for any other type no data (NOERROR, no
    answer). The question is copied as asked (evdns checks its 0x20 case)."""
    pos = 12
    while query[pos] != 0:
        pos += 1 + query[pos]
    qtype = int.from_bytes(query[pos + 1:pos + 3], "big")
    nx = query[12:15].lower() == b"\x02nx"
    a = qtype == 1 and not nx
    head = (query[:2] + (b"\x81\x83" if nx else b"\x81\x80") + b"\x00\x01"
            + (b"\x00\x01" if a else b"\x00\x00") + b"\x00" * 4)
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01" if a else b""
    return head + query[12:pos + 5] + answer


class FakeNameserver:
    """A nameserver on 127.0.0.1 (an ephemeral UDP port) run by a thread:
    names under nx. do not exist, every other is 127.0.0.1. While held, queries are kept unanswered until
    answer_held()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.hold = False
        self.held = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                q, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                break
            if len(q) < 17:
                continue
            with self.lock:
                if self.hold:
                    self.held.append((q, peer))
                    continue
            self.sock.sendto(dns_reply(q), peer)

    def answer_held(self):
        with self.lock:
            held, self.held = self.held, []
        for q, peer in held:
            self.sock.sendto(dns_reply(q), peer)

    def held_count(self):
        with self.lock:
            return len(self.held)

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        check(time.monotonic() < deadline, f"timed out waiting for {what}")
        time.sleep(0.05)


def test_check_lookups_cancelled_on_reload_and_exit(env):
    """Backends named through the resolver (db.test and nx.test, which does
    not exist, from a nameserver the test runs) and /etc/hosts (gone.test,
    224.0.0.1: answered inside the lookup call, whose connect then fails
    inside connect()): their health checks resolve as their streams do;
    db.test passes, the others fail and the log says why.
    A check whose lookup is unanswered when a reload drops its backend is
    cancelled: the late answer connects nothing (the lookup used to go on
    and connect a check to the dropped backend). One unanswered at exit is
    cancelled too, and the server exits clean under ASan."""
    why = can_bind_hosts(env)
    if why:
        print(f"     skipped here: {why}")
        return
    ns = FakeNameserver()
    env.targets.append(ns)
    resolv = env.write("resolv.conf", "nameserver 127.0.0.1:%d\noptions timeout:30 attempts:1\n"
                       % ns.port)
    hosts = env.write("hosts", "224.0.0.1 gone.test\n")
    ok = start_backend(env, "B0")
    other = start_backend(env, "B1")
    db, gone, nx = f"db.test:{ok.port}", "gone.test:9", "nx.test:9"
    port = h.free_port()
    admin = h.free_port()
    conf = env.write("server.conf", f"pool {POOL}={db},{gone},{nx}\n")
    auth = env.write("server.authorized", f"{env.client_pub} test key\n", 0o644)
    argv = [env.bins.server, "--listen", f"127.0.0.1:{port}", "--key", env.server_key,
            "--authorized-keys", auth, "--allow", "127.0.0.2:9", "--log-level", "info",
            "--config", conf, "--admin", str(admin), *HEALTH]
    script = (f"mount --bind {resolv} /etc/resolv.conf && mount --bind {hosts} /etc/hosts"
              " && exec \"$@\"")
    srv = h.Daemon("server", ["unshare", "-m", "sh", "-c", script, "sh", *argv],
                   env.path("server.log"))
    env.daemons.append(srv)
    srv.wait_log(r"listening on 127\.0\.0\.1:%d" % port, t(10))

    def sample(name, backend):
        return metric(scrape(admin), name, pool=POOL, backend=backend)

    wait_for(lambda: sample("wanmux_pool_backend_checks_passed_total", db) >= 2, t(10),
             f"two checks of {db} to pass")
    srv.wait_log(r"backend gone\.test:9 is down: 2 checks in a row failed, the last: "
                 r".*Network is unreachable", t(10))
    srv.wait_log(r"backend nx\.test:9 is down: 2 checks in a row failed, the last: "
                 r".*not known", t(10))
    check(sample("wanmux_pool_backend_up", db) == 1, f"{db} is down")
    for b in (gone, nx):
        check(sample("wanmux_pool_backend_up", b) == 0, f"{b} is up")
        check(sample("wanmux_pool_backend_checks_passed_total", b) == 0,
              f"a check of {b} passed")
    lport = h.free_port()
    env.start_client(port, [(lport, VHOST, VPORT)], tunnels=1, log_level="info")
    check(ask(lport) == "B0", f"the stream did not go to {db}")

    # The next check's lookup (A and AAAA) stays unanswered; a reload drops
    # the backend; then the answers come.
    ns.hold = True
    wait_for(lambda: ns.held_count() >= 2, t(10), "a check's lookup of db.test")
    before = ok.accepts
    env.write("server.conf", f"pool {POOL}=127.0.0.1:{other.port}\n")
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    ns.answer_held()
    time.sleep(t(1))
    late = ok.accepts - before
    print(f"     {late} connects to the dropped backend after its lookup was answered late")
    check(late == 0, f"a check of the dropped {db} connected {late} times after the reload")

    # Back in the pool, its check's lookup unanswered at exit.
    env.write("server.conf", f"pool {POOL}={db}\n")
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    wait_for(lambda: ns.held_count() >= 2, t(10), "a check's lookup of db.test")
    srv.stop()


if __name__ == "__main__":
    h.main([test_sync_connect_failure_tries_next_once, test_emfile_on_named_backends,
            test_named_backends_failing_at_once, test_streams_ended_mid_retry,
            test_early_bytes_and_fin_across_retries, test_localhost_backend_checks_ask_no_dns,
            test_admin_action_host_forms, test_reloads_while_checks_run,
            test_check_lookups_cancelled_on_reload_and_exit],
           __doc__.splitlines()[0])
