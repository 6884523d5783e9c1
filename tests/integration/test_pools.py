#!/usr/bin/env python3
"""Target pools on the server (--pool): three loopback backends that say who
they are share 60 connections evenly by round robin; a killed backend costs
no client connection and gets nothing after, and a returning one gets
traffic again after --health-rise checks; leastconn sends new streams to the
backend with the fewest open ones, source keeps a client on one backend;
with every backend down a connection ends at once; a backend drained by a
reload (/drain) or by the admin port takes no new streams while its open one
keeps working; /metrics (promtool), /status and the status page show each
backend's state; bad pool definitions refuse a reload whole; SOCKS5 by name
and an address as virtual target work; a key's own allow= limits its pools.
Assertions are on which backend served each connection and on the metrics."""

import json
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_admin import http_get, metric, promtool_check, scrape  # noqa: E402

VHOST = "web.pool"
VPORT = 80
POOL = f"{VHOST}:{VPORT}"
# Fast checks so the test does not wait: 0.2 s, up after 2, down after 2.
HEALTH = ["--health-interval", "0.2", "--health-rise", "2", "--health-fall", "2"]


def backend_fn(name):
    """A backend: sends its name and a newline, then echoes."""
    def fn(c, idx, srv):
        try:
            c.sendall(f"{name}\n".encode())
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
    return fn


def start_backend(env, name, port=0):
    return env.target(h.FuncServer(backend_fn(name), port=port))


def ask(lport, timeout=None, send=b""):
    """One connection through the forward: the backend's name, or raises
    TestFailure when the connection fails (closed, reset) before a name.
    send: bytes sent at once (before any answer), checked in the echo."""
    try:
        s = h.connect(lport, timeout=timeout or t(10))
    except OSError as e:
        # The refusal can reset the connection before connect() returns.
        raise h.TestFailure(f"connection through the pool failed: {e}")
    try:
        if send:
            s.sendall(send)
        buf = b""
        while b"\n" not in buf or len(buf) < buf.index(b"\n") + 1 + len(send):
            try:
                b = s.recv(64)
            except OSError as e:
                raise h.TestFailure(f"connection through the pool failed: {e}")
            if not b:
                raise h.TestFailure("connection through the pool closed before a backend "
                                    "answered")
            buf += b
        name, _, echo = buf.partition(b"\n")
        check(echo == send, f"data sent before the answer came back as {echo!r}")
        return name.decode()
    finally:
        s.close()


def open_held(lport):
    """A connection kept open: (socket, backend name)."""
    s = h.connect(lport, timeout=t(10))
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(64)
        check(b, "held connection closed before a backend answered")
        buf += b
    return s, buf.decode().strip()


def setup(env, backends, policy=None, extra_pool="", server_extra=(), config_lines="",
          health=HEALTH):
    """Backends B0.. on loopback, a server with the pool (in a config file,
    so a reload can change it) and admin, a client forwarding to VHOST:PORT.
    Returns (srv, cli, lport, targets)."""
    targets = [start_backend(env, f"B{i}") for i in range(backends)]
    spec = ",".join(f"127.0.0.1:{tg.port}" for tg in targets) + extra_pool
    conf = env.write("server.conf", f"pool {POOL}={spec}\n" + config_lines)
    admin = h.free_port()
    extra = ["--config", conf, "--admin", str(admin), *health, *server_extra]
    if policy:
        extra += ["--pool-policy", policy]
    # No --allow for the backends: the pool is its own rule.
    srv = env.start_server(allow=["127.0.0.2:9"], extra=extra, log_level="info")
    srv.admin = admin
    srv.conf = conf
    lport = h.free_port()
    cli = env.start_client(srv.port, [(lport, VHOST, VPORT)], tunnels=2, log_level="info")
    return srv, cli, lport, targets


def counts(names, n):
    return {f"B{i}": names.count(f"B{i}") for i in range(n)}


def backend_metric(srv, name, tg):
    return metric(scrape(srv.admin), name, pool=POOL, backend=f"127.0.0.1:{tg.port}")


def wait_backend(srv, tg, up, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backend_metric(srv, "wanmux_pool_backend_up", tg) == (1 if up else 0):
            return
        time.sleep(0.05)
    raise h.TestFailure(f"backend {tg.port} not {'up' if up else 'down'} within {timeout} s")


def test_roundrobin_shares_evenly(env):
    srv, cli, lport, tgs = setup(env, 3)
    names = [ask(lport) for _ in range(60)]
    c = counts(names, 3)
    print(f"     roundrobin, 60 connections: {c}")
    check(c == {"B0": 20, "B1": 20, "B2": 20}, f"60 connections not shared 20/20/20: {c}")
    text = scrape(srv.admin)
    promtool_check(text, "server")
    for tg in tgs:
        check(metric(text, "wanmux_pool_backend_streams_total", pool=POOL,
                     backend=f"127.0.0.1:{tg.port}") == 20, "streams_total is not 20")
    check(metric(text, "wanmux_pool_streams_total", pool=POOL) == 60, "pool streams not 60")
    # The backends themselves are not reachable directly: no rule allows them.
    lport2 = h.free_port()
    cli2 = env.start_client(srv.port, [(lport2, "127.0.0.1", tgs[0].port)], tunnels=1,
                            name="direct", log_level="info")
    try:
        got = ask(lport2, timeout=t(5))
        raise h.TestFailure(f"a backend was reachable directly (answered {got})")
    except h.TestFailure as e:
        if "reachable directly" in str(e):
            raise
    srv.wait_log(r"refused stream \d+ .* no rule permits it", t(5))
    cli2.stop()


def test_killed_backend_costs_nothing_and_returns(env):
    # --health-fall 100: only a stream's failed connect can take B1 down
    # (the passive check), so the retry path is what keeps the clients whole.
    srv, cli, lport, tgs = setup(env, 3, health=["--health-interval", "0.5",
                                                  "--health-rise", "2",
                                                  "--health-fall", "100"])
    port1 = tgs[1].port
    tgs[1].stop()
    # Every connection still works: the stream sent to the dead one is
    # retried on another before the client saw anything.
    # Each sends its first bytes at once: they wait in the server while
    # the dead backend is tried, and reach the live one intact.
    names = [ask(lport, send=b"early bytes %d" % i) for i in range(30)]
    c = counts(names, 3)
    print(f"     B1 killed, 30 connections at once: {c}")
    check(c["B1"] == 0, f"the killed backend got connections: {c}")
    check(c["B0"] + c["B2"] == 30, f"not every connection was served: {c}")
    wait_backend(srv, tgs[1], False, t(5))
    text = scrape(srv.admin)
    promtool_check(text, "server")
    lbl = dict(pool=POOL, backend=f"127.0.0.1:{port1}")
    failures = metric(text, "wanmux_pool_backend_connect_failures_total", **lbl)
    retries = metric(text, "wanmux_pool_backend_retries_total", **lbl)
    print(f"     B1: {failures:.0f} failed connects, {retries:.0f} streams retried elsewhere")
    check(failures >= 1 and retries == failures, f"B1 failures {failures}, retries {retries}")
    check(metric(text, "wanmux_pool_retries_total", pool=POOL) == retries, "pool retries")
    st = json.loads(http_get(srv.admin, "/status")[2])
    states = {b["name"]: b["state"] for p in st["pools"] for b in p["backends"]}
    check(states[f"127.0.0.1:{port1}"] == "down", f"/status states {states}")
    check(states[f"127.0.0.1:{tgs[0].port}"] == "up", f"/status states {states}")
    # Back on the same port: up after --health-rise (2) checks of 0.2 s.
    back = start_backend(env, "B1", port=port1)
    t0 = time.monotonic()
    wait_backend(srv, back, True, t(5))
    took = time.monotonic() - t0
    print(f"     B1 back: up again after {took:.2f} s (rise 2 x 0.5 s)")
    check(took >= 0.5, f"up after {took:.2f} s: before two checks could run")
    names = [ask(lport) for _ in range(30)]
    c = counts(names, 3)
    print(f"     after its return, 30 connections: {c}")
    check(c["B1"] >= 8, f"the returned backend gets too little: {c}")
    srv.wait_log(r"pool web\.pool:80: backend 127\.0\.0\.1:%d is up" % port1, t(2))


def test_leastconn_picks_fewest(env):
    srv, cli, lport, tgs = setup(env, 3, policy="leastconn")
    held = [open_held(lport) for _ in range(6)]
    c = counts([n for _, n in held], 3)
    check(c == {"B0": 2, "B1": 2, "B2": 2}, f"six held connections not 2/2/2: {c}")
    # Close the two on B0: it has none, the others two each.
    for s, n in held:
        if n == "B0":
            s.close()
    deadline = time.monotonic() + t(5)
    while backend_metric(srv, "wanmux_pool_backend_active_streams", tgs[0]) != 0:
        check(time.monotonic() < deadline, "B0's streams never ended")
        time.sleep(0.05)
    new = [open_held(lport) for _ in range(2)]
    got = [n for _, n in new]
    print(f"     leastconn with 0/2/2 open: next two went to {got}")
    check(got == ["B0", "B0"], f"leastconn did not pick the least loaded: {got}")
    for s, _ in held + new:
        s.close()


def test_source_sticks(env):
    srv, cli, lport, tgs = setup(env, 3, policy="source")
    names = [ask(lport) for _ in range(20)]
    check(len(set(names)) == 1, f"source policy: one client spread over {set(names)}")
    home = names[0]
    # A second client key lands on its own backend, and sticks too.
    key2, pub2 = env.keygen("client2.key")
    auth = env.path("server.authorized")
    with open(auth, "a") as f:
        f.write(f"{pub2} second\n")
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    lport2 = h.free_port()
    env.start_client(srv.port, [(lport2, VHOST, VPORT)], key=key2, tunnels=1, name="client2",
                     log_level="info")
    names2 = [ask(lport2) for _ in range(20)]
    check(len(set(names2)) == 1, f"second client spread over {set(names2)}")
    print(f"     source: client 1 always on {home}, client 2 always on {names2[0]}")
    # Its backend killed: the client moves (no connection lost), and only then.
    victim = tgs[int(home[1])]
    victim.stop()
    moved = [ask(lport) for _ in range(10)]
    check(home not in moved and len(set(moved)) == 1,
          f"after {home} died client 1 went to {set(moved)}")


def test_all_down_fails_fast(env):
    srv, cli, lport, tgs = setup(env, 3)
    check(ask(lport) in ("B0", "B1", "B2"), "pool not working before the test")
    for tg in tgs:
        tg.stop()
    # Before the checks noticed (each connect refused, tried on the next) and
    # after (refused at once): both end within a second or two.
    for when in ("at once", "after the checks"):
        if when != "at once":
            for tg in tgs:
                wait_backend(srv, tg, False, t(5))
        t0 = time.monotonic()
        try:
            ask(lport, timeout=t(10))
            raise h.TestFailure("a connection was served with every backend down")
        except h.TestFailure as e:
            if "was served" in str(e):
                raise
        took = time.monotonic() - t0
        print(f"     all down ({when}): connection ended after {took * 1000:.0f} ms")
        check(took < 2.0, f"all down ({when}): the error took {took:.2f} s")
    check(metric(scrape(srv.admin), "wanmux_pool_refused_total", pool=POOL) >= 2,
          "refusals not counted")


def test_drain_by_reload_and_admin(env):
    srv, cli, lport, tgs = setup(env, 3, server_extra=["--admin-actions"])
    s, name = open_held(lport)
    victim = tgs[int(name[1])]
    others = [tg for tg in tgs if tg is not victim]
    # Drain the backend of the open connection in the config file, reload.
    spec = ",".join(f"127.0.0.1:{tg.port}" + ("/drain" if tg is victim else "")
                    for tg in tgs)
    env.write("server.conf", f"pool {POOL}={spec}\n")
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    names = [ask(lport) for _ in range(20)]
    check(name not in names, f"drained {name} still got new streams: {counts(names, 3)}")
    s.sendall(b"still here")
    got = b""
    while len(got) < 10:
        b = s.recv(64)
        check(b, "the drained backend's open stream was cut")
        got += b
    check(got == b"still here", f"echo on the drained backend's stream: {got!r}")
    check(backend_metric(srv, "wanmux_pool_backend_draining", victim) == 1, "not draining")
    st = json.loads(http_get(srv.admin, "/status")[2])
    states = {b["name"]: b["state"] for p in st["pools"] for b in p["backends"]}
    check(states[f"127.0.0.1:{victim.port}"] == "drain", f"/status states {states}")
    # The reload kept the other backends' counts.
    check(backend_metric(srv, "wanmux_pool_backend_streams_total", others[0]) >= 10,
          "a reload reset the backend counters")
    s.close()
    # The admin port: drain another backend, then undrain the first.
    st, body = admin_post(srv.admin, f"/pool/drain?pool={POOL}&backend=127.0.0.1:"
                          f"{others[0].port}")
    check(st == 200, f"admin drain: HTTP {st} {body!r}")
    names = [ask(lport) for _ in range(10)]
    check(set(names) == {f"B{tgs.index(others[1])}"},
          f"after draining two, not all on the third: {set(names)}")
    # An admin drain survives a reload (the config does not name it).
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reloaded: ", t(10), since=mark)
    names = [ask(lport) for _ in range(6)]
    check(set(names) == {f"B{tgs.index(others[1])}"}, f"after a reload: {set(names)}")
    st, body = admin_post(srv.admin, f"/pool/undrain?pool={POOL}&backend=127.0.0.1:"
                          f"{others[0].port}")
    check(st == 200, f"admin undrain: HTTP {st} {body!r}")
    names = [ask(lport) for _ in range(10)]
    back = f"B{tgs.index(others[0])}"
    check(back in names and name not in names, f"after undrain of {back}: {set(names)}")
    # Undraining the one the config drains says so and changes nothing.
    st, body = admin_post(srv.admin, f"/pool/undrain?pool={POOL}&backend=127.0.0.1:"
                          f"{victim.port}")
    check(st == 200 and b"configuration" in body, f"undrain of a /drain backend: {body!r}")
    # GET is not an action, an unknown backend is a 404, no header a 403.
    st, _, _ = http_get(srv.admin, f"/pool/drain?pool={POOL}&backend=127.0.0.1:{victim.port}")
    check(st in (404, 405), f"GET of an action: HTTP {st}")
    st, _ = admin_post(srv.admin, f"/pool/drain?pool={POOL}&backend=127.0.0.1:1")
    check(st == 404, f"drain of an unknown backend: HTTP {st}")
    st, _ = admin_post(srv.admin, f"/pool/drain?pool={POOL}&backend=127.0.0.1:{victim.port}",
                       header=False)
    check(st == 403, f"POST without the action header: HTTP {st}")


def admin_post(port, path, header=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=t(10))
    try:
        extra = "X-Wanmux-Action: 1\r\n" if header else ""
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
                  f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = h.recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_bad_pool_config_refused(env):
    srv, cli, lport, tgs = setup(env, 2)
    good = open(srv.conf).read()
    for bad in (f"pool {POOL}=127.0.0.1:{tgs[0].port}/weight=0\n",
                f"pool {POOL}=127.0.0.1\n",
                "pool other:80=127.0.0.1:1\npool other:80=127.0.0.1:2\n",
                good + "pool-policy nosuch:80=leastconn\n",
                good + f"pool-policy {POOL}=fastest\n"):
        env.write("server.conf", bad)
        mark = srv.mark()
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reload refused, the running configuration stays: .*server\.conf:\d",
                     t(10), since=mark)
    names = [ask(lport) for _ in range(4)]
    check(sorted(set(names)) == ["B0", "B1"], f"old pool not kept after bad reloads: {names}")
    # The same mistakes on the command line: exit 2, one line.
    rc, out, err = h.run_cmd([env.bins.server, "--listen", "127.0.0.1:1", "--key",
                              env.server_key, "--authorized-keys", env.path("server.authorized"),
                              "--pool", "web:80=[::1:80", "--check-config"])
    check(rc == 2 and len(err.strip().splitlines()) == 1, f"bad --pool: rc {rc}, {err!r}")


def socks_ask(sport, host, port, atyp=3):
    """Through the client's SOCKS5 port to host:port (a name, or with atyp 1
    an IPv4 address): the backend's name, or None when refused."""
    s = h.connect(sport, timeout=t(10))
    try:
        s.sendall(b"\x05\x01\x00")
        check(s.recv(2) == b"\x05\x00", "SOCKS5 greeting refused")
        if atyp == 3:
            addr = bytes([3, len(host)]) + host.encode()
        else:
            addr = b"\x01" + socket.inet_aton(host)
        s.sendall(b"\x05\x01\x00" + addr + port.to_bytes(2, "big"))
        rep = b""
        while len(rep) < 10:
            b = s.recv(10 - len(rep))
            if not b:
                break
            rep += b
        if len(rep) < 2 or rep[1] != 0:
            return None
        buf = b""
        while not buf.endswith(b"\n"):
            b = s.recv(64)
            check(b, "SOCKS stream closed before a backend answered")
            buf += b
        return buf.decode().strip()
    finally:
        s.close()


def test_socks_and_address_vhost(env):
    """The client needs no new syntax: SOCKS5 by name, and a pool whose
    virtual target is an address (10.255.0.1:80, never connected to)."""
    tgs = [start_backend(env, f"B{i}") for i in range(2)]
    spec = ",".join(f"127.0.0.1:{tg.port}" for tg in tgs)
    conf = env.write("server.conf", f"pool {POOL}={spec}\npool 10.255.0.1:80={spec}\n")
    srv = env.start_server(allow=["127.0.0.2:9"], extra=["--config", conf, *HEALTH],
                           log_level="info")
    sport = h.free_port()
    h.start_frontend_client(env, srv.port, socks=sport, log_level="info")
    by_name = [socks_ask(sport, VHOST, VPORT) for _ in range(4)]
    by_addr = [socks_ask(sport, "10.255.0.1", 80, atyp=1) for _ in range(4)]
    print(f"     SOCKS5 by name: {by_name}, by address: {by_addr}")
    check(sorted(by_name) == ["B0", "B0", "B1", "B1"], f"by name: {by_name}")
    check(sorted(by_addr) == ["B0", "B0", "B1", "B1"], f"by address: {by_addr}")
    # Another port of the same name is no pool: refused by the rules.
    check(socks_ask(sport, VHOST, 81) is None, "web.pool:81 was served")


def test_ipv6_backend(env):
    ok6, why6 = h.have_ipv6_loopback()
    if not ok6:
        print(f"     SKIP part: no IPv6 loopback ({why6})")
        return
    b6 = env.target(h.FuncServer(backend_fn("V6"), host="::1", family=socket.AF_INET6))
    b4 = start_backend(env, "V4")
    conf = env.write("server.conf", f"pool {POOL}=[::1]:{b6.port}/weight=2,"
                                    f"127.0.0.1:{b4.port}\n")
    srv = env.start_server(allow=["127.0.0.2:9"], extra=["--config", conf, *HEALTH],
                           log_level="info")
    lport = h.free_port()
    env.start_client(srv.port, [(lport, VHOST, VPORT)], tunnels=1, log_level="info")
    names = [ask(lport) for _ in range(9)]
    print(f"     [::1] weight 2 and 127.0.0.1 weight 1: {names.count('V6')}/{names.count('V4')}")
    check(names.count("V6") == 6 and names.count("V4") == 3, f"weights 2:1 gave {names}")


def test_status_page_shows_pools(env):
    from test_admin import chromium, find_chromium
    if find_chromium() is None:
        print("     SKIP: chromium not installed: the pools table is not rendered")
        return
    srv, cli, lport, tgs = setup(env, 3)
    tgs[2].stop()
    wait_backend(srv, tgs[2], False, t(5))
    p = chromium(["--virtual-time-budget=3000", "--dump-dom",
                  f"http://127.0.0.1:{srv.admin}/"], t(90))
    dom = p.stdout.decode(errors="replace")
    check(p.returncode == 0 and "<html" in dom, f"chromium failed ({p.returncode})")
    rows = re.findall(r'<tr class="backend">(.*?)</tr>', dom, re.S)
    check(len(rows) == 3, f"page shows {len(rows)} backend rows, expected 3")
    states = [re.search(r'class="state (\w+)"', r).group(1) for r in rows]
    check(states == ["up", "up", "down"], f"page states {states}")
    check("1 pool, 2 of 3 backends up" in dom, "pools heading")


def test_key_allow_option_limits_pools(env):
    """A key with its own allow= reaches a pool only when allow= names it."""
    tgs = [start_backend(env, f"B{i}") for i in range(2)]
    spec = ",".join(f"127.0.0.1:{tg.port}" for tg in tgs)
    conf = env.write("server.conf", f"pool {POOL}={spec}\npool other.pool:80={spec}\n")
    srv = env.start_server(allow=["127.0.0.2:9"], extra=["--config", conf, *HEALTH],
                           authorized=[f'allow="{VHOST}:{VPORT}" {env.client_pub}'],
                           log_level="info")
    l1, l2 = h.free_port(), h.free_port()
    env.start_client(srv.port, [(l1, VHOST, VPORT), (l2, "other.pool", 80)], tunnels=1,
                     log_level="info")
    check(ask(l1) in ("B0", "B1"), "the pool its allow= names was refused")
    try:
        got = ask(l2, timeout=t(5))
        raise h.TestFailure(f"a pool outside the key's allow= was served by {got}")
    except h.TestFailure as e:
        if "was served" in str(e):
            raise
    srv.wait_log(r"refused stream \d+ .* to pool other\.pool:80: its key's allow=", t(5))


class Blackhole:
    """A loopback port that never answers a SYN: listening with a backlog
    of 0 that one connection already fills, so the kernel drops the rest
    (a backend host that died without refusing)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = [socket.create_connection(("127.0.0.1", self.port), timeout=2)]
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", self.port))
            self.filler.append(probe)  # a second one got in: fill once more
            self.filler.append(socket.create_connection(("127.0.0.1", self.port), timeout=2))
        except OSError:
            probe.close()

    def stop(self):
        for c in self.filler:
            c.close()
        self.sock.close()


def test_blackholed_backend_bounded_by_connect_timeout(env):
    """A backend that drops SYNs: the stream that tries it waits
    --pool-connect-timeout (0.5 s here, not the 10 s of a plain target),
    then gets another backend; it is marked down and gets nothing after."""
    hole = Blackhole()
    env.targets.append(hole)
    ok = start_backend(env, "B0")
    conf = env.write("server.conf", f"pool {POOL}=127.0.0.1:{hole.port},127.0.0.1:{ok.port}\n")
    srv = env.start_server(allow=["127.0.0.2:9"],
                           extra=["--config", conf, "--admin", str(h.free_port()),
                                  "--health-interval", "1", "--health-fall", "100",
                                  "--pool-connect-timeout", "500ms"], log_level="info")
    lport = h.free_port()
    env.start_client(srv.port, [(lport, VHOST, VPORT)], tunnels=1, log_level="info")
    took = []
    for _ in range(4):
        t0 = time.monotonic()
        check(ask(lport, send=b"early") == "B0", "not served by the live backend")
        took.append(time.monotonic() - t0)
    print("     connections took " + ", ".join(f"{x * 1000:.0f} ms" for x in took))
    check(max(took) >= 0.45, f"no connection waited for the blackholed backend: {took}")
    check(max(took) < 3.0, f"a connection waited {max(took):.1f} s")
    check(sorted(took)[-2] < 0.4, f"more than one connection waited: {took}")
    srv.wait_log(r"backend 127\.0\.0\.1:%d is down: a stream's connect failed \(timeout\)"
                 % hole.port, t(2))


if __name__ == "__main__":
    h.main([test_roundrobin_shares_evenly, test_killed_backend_costs_nothing_and_returns,
            test_leastconn_picks_fewest, test_source_sticks, test_all_down_fails_fast,
            test_drain_by_reload_and_admin, test_bad_pool_config_refused,
            test_socks_and_address_vhost, test_status_page_shows_pools,
            test_key_allow_option_limits_pools, test_ipv6_backend,
            test_blackholed_backend_bounded_by_connect_timeout],
           __doc__.splitlines()[0])
