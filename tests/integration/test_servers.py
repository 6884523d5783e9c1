#!/usr/bin/env python3
"""Several servers (--server given twice, --server-policy): two real
wanmux-servers on loopback and one client.

failover: streams go to the first server; kill -9 it and new connections
work again through the second within 5 s (measured), and go back to the
first once it is restarted. spread: both servers get streams (each server's
own /metrics counts them) and losing one keeps new connections working. A
server whose key is not the one listed is marked down with a clear line and
costs the other server nothing. Bad --server values are one-line errors."""

import json
import os
import re
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

TARGET_S = 5.0  # the bound for new connections after a server dies


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=t(5)) as r:
        return r.read().decode()


def metric(text, name, **labels):
    """Value of the sample name{labels}, or None."""
    want = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        got = sorted(re.findall(r'[a-zA-Z_]\w*="(?:[^"\\]|\\.)*"', m.group(3) or ""))
        if got == want:
            return float(m.group(4))
    return None


def server_streams(srv):
    """Streams the server opened for clients (its own /metrics)."""
    v = metric(http_get(srv.admin, "/metrics"), "wanmux_streams_opened_total",
               frontend="tunnel")
    check(v is not None, f"{srv.name}: no wanmux_streams_opened_total in /metrics")
    return int(v)


def start_server(env, name, port=None, key=None):
    admin = h.free_port()
    srv = env.start_server(allow=[f"127.0.0.1:{env.echo.port}"], port=port, key=key,
                           name=name, log_level="info", extra=["--admin", str(admin)])
    srv.admin = admin
    return srv


def start_client(env, servers, policy=None, tunnels=2, extra=(), name="client"):
    """servers: list of "HOST:PORT[@KEY]" entries, in order."""
    lport, admin = h.free_port(), h.free_port()
    argv = [env.bins.client, "--key", env.client_key,
            "--server-key", env.server_key + ".pub",
            "--forward", f"{lport}:127.0.0.1:{env.echo.port}",
            "--tunnels", str(tunnels), "--admin", str(admin), "--log-level", "debug"]
    for s in servers:
        argv += ["--server", s]
    if policy:
        argv += ["--server-policy", policy]
    argv += list(extra)
    argv += h._drain_default(())
    d = h.Daemon(name, argv, env.path(f"{name}.log"))
    env.daemons.append(d)
    d.lport, d.admin = lport, admin
    d.wait_log(r"forwarding 127\.0\.0\.1:%d " % lport, t(10))
    return d


def echo_once(port, payload=b"ping", timeout=2.0):
    """One new connection through the forward: send, read it back."""
    s = h.connect(port, timeout=timeout)
    try:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = s.recv(65536)
            if not b:
                break
            got += b
        return got == payload
    finally:
        s.close()


def until_echo(port, within):
    """Seconds until a new connection echoes, trying every 50 ms."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        try:
            if echo_once(port, timeout=1.0):
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise h.TestFailure(f"no new connection worked within {within:.1f} s")


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise h.TestFailure(f"{what} within {timeout:.1f} s")


def servers_status(cli):
    return {s["server"]: s for s in json.loads(http_get(cli.admin, "/status"))["servers"]}


def setup(env):
    env.echo = env.target(h.EchoServer())


def test_failover_kill_and_back(env):
    setup(env)
    a, b = start_server(env, "a"), start_server(env, "b")
    na, nb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    cli = start_client(env, [na, nb], tunnels=2)
    # All tunnels to a, one warm tunnel to b.
    cli.wait_log(r"tunnel \d+ to 127\.0\.0\.1:%d up" % a.port, t(10), count=2)
    cli.wait_log(r"tunnel 0 to 127\.0\.0\.1:%d up" % b.port, t(10))
    for _ in range(5):
        check(echo_once(cli.lport, timeout=t(5)), "echo through the first server")
    check(server_streams(a) == 5 and server_streams(b) == 0,
          f"failover: streams a={server_streams(a)} b={server_streams(b)}, want 5 and 0")
    m = http_get(cli.admin, "/metrics")
    check(metric(m, "wanmux_client_server_up", server=na) == 1 and
          metric(m, "wanmux_client_server_up", server=nb) == 1, "both servers up in /metrics")
    check(metric(m, "wanmux_client_server_active", server=na) == 1 and
          metric(m, "wanmux_client_server_active", server=nb) == 0, "a is the active server")
    check(metric(m, "wanmux_client_server_tunnels", server=nb) == 1,
          "b (standby) keeps exactly one warm tunnel")

    mark = cli.mark()
    t0 = time.monotonic()
    a.kill()  # SIGKILL, by the PID we started
    took = until_echo(cli.lport, t(10))
    print(f"     failover (loopback): first new connection worked {took * 1000:.0f} ms "
          f"after SIGKILL of the active server")
    check(took < TARGET_S, f"failover took {took:.2f} s, want < {TARGET_S} s")
    check(server_streams(b) >= 1, "the new connection went through b")
    cli.wait_log(r"server %s down: " % re.escape(na), t(5), since=mark)
    cli.wait_log(r"failing over from server %s .* to %s" % (re.escape(na), re.escape(nb)),
                 t(5), since=mark)
    st = servers_status(cli)
    check(st[na]["state"] == "down" and st[na]["why"] != "", f"/status of a: {st[na]}")
    check(st[nb]["state"] == "up" and st[nb]["active"], f"/status of b: {st[nb]}")
    m = http_get(cli.admin, "/metrics")
    check(metric(m, "wanmux_client_server_failovers_total") == 1, "one failover counted")
    check(metric(m, "wanmux_client_server_up", server=na) == 0, "a down in /metrics")
    # b now holds all the tunnels.
    wait_for(lambda: servers_status(cli)[nb]["tunnels_up"] == 2, t(10), "b gets both tunnels")

    # a returns on its port: new streams go back to it, b's stay.
    mark = cli.mark()
    held = h.connect(cli.lport, timeout=t(5))  # an open stream on b
    held.sendall(b"x")
    check(held.recv(1) == b"x", "held stream on b echoes")
    a2 = start_server(env, "a2", port=a.port)
    cli.wait_log(r"back to server %s" % re.escape(na), t(15), since=mark)
    before_a, before_b = server_streams(a2), server_streams(b)
    for _ in range(5):
        check(echo_once(cli.lport, timeout=t(5)), "echo after the first server returned")
    check(server_streams(a2) - before_a == 5 and server_streams(b) == before_b,
          f"after failback: a got {server_streams(a2) - before_a}, b "
          f"{server_streams(b) - before_b} of 5 new streams")
    held.sendall(b"y")
    check(held.recv(1) == b"y", "the stream on b runs on after the failback")
    held.close()
    m = http_get(cli.admin, "/metrics")
    fb = metric(m, "wanmux_client_server_failbacks_total")
    check(fb == 1, f"one failback counted, got {fb}")
    # b goes back to one warm tunnel once its streams are done.
    wait_for(lambda: servers_status(cli)[nb]["tunnels_up"] == 1, t(10),
             "b back to one warm tunnel")


def test_failover_server_stops_answering(env):
    """The active server is frozen (SIGSTOP): its kernel still holds the
    connections, so no FIN or RST comes, only silence. New connections go
    to the second server within 5 s (not after the 30 s dead-tunnel check),
    and back once the first answers again (SIGCONT)."""
    setup(env)
    a, b = start_server(env, "a"), start_server(env, "b")
    na, nb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    cli = start_client(env, [na, nb], tunnels=2)
    cli.wait_log(r"tunnel \d+ to 127\.0\.0\.1:%d up" % a.port, t(10), count=2)
    cli.wait_log(r"tunnel 0 to 127\.0\.0\.1:%d up" % b.port, t(10))
    check(echo_once(cli.lport, timeout=t(5)), "echo through a")
    held = h.connect(cli.lport, timeout=t(5))  # a stream on a, across the freeze
    held.sendall(b"1")
    check(held.recv(1) == b"1", "held stream on a echoes")
    mark = cli.mark()
    os.kill(a.pid, signal.SIGSTOP)
    try:
        took = until_echo(cli.lport, t(15))
        # Detection: the PING the first new stream sends along, unanswered
        # for 1.5 s, seen by a 250 ms tick; the attempts made meanwhile
        # hang on a (each for its 1 s timeout).
        print(f"     frozen server: first new connection worked {took * 1000:.0f} ms after "
              f"SIGSTOP")
        check(took < TARGET_S, f"took {took:.2f} s after SIGSTOP (the dead-tunnel check "
              f"alone would take 30 s)")
        cli.wait_log(r"server %s not answering" % re.escape(na), t(5), since=mark)
        check(servers_status(cli)[na]["state"] == "unresponsive", "a unresponsive in /status")
        before = server_streams(b)
        check(echo_once(cli.lport, timeout=t(5)), "echo through b")
        check(server_streams(b) == before + 1, "new streams go to b")
    finally:
        os.kill(a.pid, signal.SIGCONT)
    cli.wait_log(r"server %s answers again" % re.escape(na), t(15), since=mark)
    cli.wait_log(r"back to server %s" % re.escape(na), t(5), since=mark)
    before = server_streams(a)
    check(echo_once(cli.lport, timeout=t(5)), "echo after SIGCONT")
    check(server_streams(a) == before + 1, "new streams back on a")
    held.settimeout(t(5))
    held.sendall(b"2")
    check(held.recv(1) == b"2", "the stream on a carries on after the freeze")
    held.close()


def test_failover_lost_tunnels_resume(env):
    """Every tunnel to the active server destroyed (ss -K), the server still
    running: new streams go on working, and the streams it carried resume
    on its tunnels when they are back (its session is not lost)."""
    why = h.ss_kill_works()
    if why is not None:
        print(f"     SKIP: {why}: tunnels not killed")
        return
    setup(env)
    a, b = start_server(env, "a"), start_server(env, "b")
    na = f"127.0.0.1:{a.port}"
    cli = start_client(env, [na, f"127.0.0.1:{b.port}"], tunnels=2)
    cli.wait_log(r"tunnel \d+ to 127\.0\.0\.1:%d up" % a.port, t(10), count=2)
    cli.wait_log(r"tunnel 0 to 127\.0\.0\.1:%d up" % b.port, t(10))
    held = h.connect(cli.lport, timeout=t(5))
    held.sendall(b"1")
    check(held.recv(1) == b"1", "held stream on a echoes")
    check(server_streams(a) == 1, "the held stream is on a")
    mark = cli.mark()
    killed = h.ss_kill(["dst", "127.0.0.1", "dport", "=", str(a.port)])
    check(len(killed) == 2, f"ss -K killed {killed}, want a's 2 tunnels")
    took = until_echo(cli.lport, t(10))
    print(f"     a's tunnels killed: new connection worked after {took * 1000:.0f} ms")
    check(took < TARGET_S, f"took {took:.2f} s")
    held.settimeout(t(10))
    held.sendall(b"2")
    check(held.recv(1) == b"2", "the stream on a resumed on its new tunnels")
    held.close()
    log = cli.log_since(mark)
    check(not re.search(r"session \S+ to %s ended" % re.escape(na), log),
          "a's session was kept (resumed), not ended")


def test_failover_pending_go_to_first_up(env):
    """Connections that wait while no server is up go to whichever comes
    up first: here the second, while the first stays dead."""
    setup(env)
    dead = h.free_port()  # nothing listens: every dial is refused
    b_port = h.free_port()
    cli = start_client(env, [f"127.0.0.1:{dead}", f"127.0.0.1:{b_port}"], tunnels=2)
    s = h.connect(cli.lport, timeout=t(5))
    s.sendall(b"early")
    time.sleep(0.5)
    start_server(env, "b", port=b_port)
    s.settimeout(t(15))
    got = b""
    while len(got) < 5:
        c = s.recv(64)
        if not c:
            break
        got += c
    s.close()
    check(got == b"early", f"the waiting connection got {got!r} through b")
    cli.wait_log(r"server 127\.0\.0\.1:%d down: " % dead, t(5))


def spread_pair(env):
    """Two servers a and b, and a client spreading over both with two tunnels
    each, all up: (a, b, "addr:port" of a, of b, client)."""
    setup(env)
    a, b = start_server(env, "a"), start_server(env, "b")
    na, nb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    cli = start_client(env, [na, nb], policy="spread", tunnels=2)
    cli.wait_log(r"tunnel \d+ to 127\.0\.0\.1:%d up" % a.port, t(10), count=2)
    cli.wait_log(r"tunnel \d+ to 127\.0\.0\.1:%d up" % b.port, t(10), count=2)
    return a, b, na, nb, cli


def test_spread_uses_both_and_survives(env):
    a, b, na, nb, cli = spread_pair(env)
    # Held open, so each stream counts against its server's room.
    held = []
    for i in range(20):
        s = h.connect(cli.lport, timeout=t(5))
        s.sendall(b"%02d" % i)
        check(s.recv(2) == b"%02d" % i, "echo on a spread stream")
        held.append(s)
    sa, sb = server_streams(a), server_streams(b)
    print(f"     spread: 20 streams, a got {sa}, b got {sb}")
    check(sa + sb == 20 and sa >= 5 and sb >= 5, f"spread: a={sa} b={sb} of 20")
    m = http_get(cli.admin, "/metrics")
    check(metric(m, "wanmux_client_server_streams", server=na) == sa and
          metric(m, "wanmux_client_server_streams", server=nb) == sb,
          "the client's per-server stream gauges match the servers")
    # Losing b costs a's streams nothing: every stream a carries still
    # echoes (b's wait for b to resume, so they stay silent).
    b.kill()
    took = until_echo(cli.lport, t(10))
    alive = 0
    for i, s in enumerate(held):
        s.settimeout(0.5)
        try:
            s.sendall(b"z")
            alive += s.recv(1) == b"z"
        except OSError:
            pass
    print(f"     spread: after b died, {alive} of 20 open streams still echo (a had {sa})")
    check(alive == sa, f"the {sa} streams on a run on untouched; {alive} echoed")
    for s in held:
        s.close()
    print(f"     spread: new connection worked {took * 1000:.0f} ms after SIGKILL of b")
    check(took < TARGET_S, f"spread recovery took {took:.2f} s")
    before = server_streams(a)
    for _ in range(10):
        check(echo_once(cli.lport, timeout=t(5)), "echo with one server left")
    check(server_streams(a) - before == 10, "every new stream on the server left")
    cli.wait_log(r"server %s down: " % re.escape(nb), t(5))


def test_spread_restarts_of_one_leave_the_other_alone(env):
    """One server restarted three times (each restart is a new epoch: its
    session is lost, its streams reset, as a hostile server could do at will)
    while streams run on both: the other server's streams and session never
    notice."""
    a, b, na, nb, cli = spread_pair(env)
    held = []
    for i in range(10):
        s = h.connect(cli.lport, timeout=t(5))
        s.sendall(b"h")
        check(s.recv(1) == b"h", "echo on a held stream")
        held.append(s)
    on_a = server_streams(a)
    check(0 < on_a < 10, f"both servers hold streams (a {on_a} of 10)")
    mark = cli.mark()
    for k in range(3):
        b.kill()
        again = cli.mark()
        b = start_server(env, f"b{k + 2}", port=b.port)
        cli.wait_log(r"tunnel \d+ to 127\.0\.0\.1:%d up" % b.port, t(15), since=again)
    alive = 0
    for s in held:
        s.settimeout(t(2))
        try:
            s.sendall(b"z")
            alive += s.recv(1) == b"z"
        except OSError:
            pass
        s.close()
    check(alive == on_a, f"{alive} held streams echo after b's restarts; a carried {on_a}")
    log = cli.log_since(mark)
    check(not re.search(r"session \S+ to %s ended" % re.escape(na), log),
          "a's session never ended")
    check(re.search(r"session \S+ to %s ended: the server does not know" % re.escape(nb), log),
          "b's lost session is named in the log")


def test_wrong_key_marks_server_down(env):
    """The first server's key is not the one listed: it is down with a
    clear reason, and the second server carries everything."""
    setup(env)
    other_key, _ = env.keygen("other.key")
    a = start_server(env, "a", key=other_key)
    b = start_server(env, "b")
    na, nb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    cli = start_client(env, [na, nb], tunnels=2)
    cli.wait_log(r"server %s down: " % re.escape(na), t(15))
    for _ in range(3):
        check(echo_once(cli.lport, timeout=t(5)), "echo through b")
    check(server_streams(b) == 3, "streams went to b")
    st = servers_status(cli)
    check(st[na]["state"] == "down", f"a: {st[na]}")
    print(f"     wrong key: {st[na]['why']}")


def test_reload_server_list_needs_restart(env):
    """SIGHUP with another --server list in the config file: logged as
    needing a restart, naming where the tunnels still go; they stay."""
    setup(env)
    a, b = start_server(env, "a"), start_server(env, "b")
    na, nb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    pub = env.server_key + ".pub"
    cfg = env.write("client.conf", f"server {na}\nserver {nb}\nserver-key {pub}\n")
    cli = start_client(env, [], extra=["-c", cfg])
    cli.wait_log(r"tunnel 0 to 127\.0\.0\.1:%d up" % b.port, t(10))
    mark = cli.mark()
    env.write("client.conf", f"server {nb}\nserver-key {pub}\nserver-policy spread\n")
    cli.proc.send_signal(signal.SIGHUP)
    cli.wait_log(r"reload: the --server list changed; it takes effect at a restart; tunnels "
                 r"still go to %s, %s" % (re.escape(na), re.escape(nb)), t(5), since=mark)
    cli.wait_log(r"reloaded: ", t(5), since=mark)
    check(echo_once(cli.lport, timeout=t(5)), "echo after the reload")
    check(server_streams(a) == 1, "still on the first server")
    env.write("client.conf", f"server {na}@{pub}\nserver {nb}\nserver-key {pub}\n"
              f"server-policy spread\n")
    mark = cli.mark()
    cli.proc.send_signal(signal.SIGHUP)
    cli.wait_log(r"reload: --server-policy changed; it takes effect at a restart", t(5),
                 since=mark)


def test_status_page_shows_servers(env):
    """The client's status page draws one row per --server with its state."""
    from test_admin import chromium, find_chromium
    if find_chromium() is None:
        print("     SKIP: chromium not installed: the servers table is not rendered")
        return
    setup(env)
    a, b = start_server(env, "a"), start_server(env, "b")
    cli = start_client(env, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], tunnels=2)
    cli.wait_log(r"tunnel 0 to 127\.0\.0\.1:%d up" % b.port, t(10))
    b.kill()
    cli.wait_log(r"server 127\.0\.0\.1:%d down: " % b.port, t(10))
    p = chromium(["--virtual-time-budget=3000", "--dump-dom",
                  f"http://127.0.0.1:{cli.admin}/"], t(90))
    dom = p.stdout.decode(errors="replace")
    check(p.returncode == 0 and "<html" in dom, f"chromium failed ({p.returncode})")
    rows = re.findall(r'<tr class="server">(.*?)</tr>', dom, re.S)
    check(len(rows) == 2, f"page shows {len(rows)} server rows, expected 2")
    states = [re.search(r'class="state (\w+)"', r).group(1) for r in rows]
    check(states == ["up", "down"], f"page states {states}")
    check("2 (1 up)" in dom, "servers heading")


def test_server_option_errors(env):
    pub = env.server_key + ".pub"
    base = [env.bins.client, "--key", env.client_key, "--forward", "1:127.0.0.1:2",
            "--check-config"]
    cases = [
        (["--server", "127.0.0.1:1@"], r"nothing after '@'"),
        (["--server", "127.0.0.1:1"], r"has no key"),
        (["--server", "127.0.0.1:1@" + pub, "--server", "127.0.0.1:1@" + pub],
         r"given twice"),
        (["--server", "127.0.0.1:1@/nonexistent.pub"], r"--server 127\.0\.0\.1:1: "),
        (["--server", "nope@" + pub], r"--server"),
        (["--server", "127.0.0.1:1@" + pub, "--server-policy", "random"],
         r"bad --server-policy 'random'"),
    ]
    for extra, want in cases:
        rc, out, err = h.run_cmd(base + extra)
        lines = err.strip().splitlines()
        check(rc == 2 and len(lines) == 1 and re.search(want, lines[0]),
              f"{extra}: rc {rc}, stderr {err!r}, want one line matching {want!r}")
    rc, out, err = h.run_cmd(base + ["--server", "127.0.0.1:1@" + pub,
                                     "--server", "[::1]:2", "--server-key", pub,
                                     "--server-policy", "spread"])
    check(rc == 0 and "configuration ok" in out, f"good list: rc {rc} {err!r}")


if __name__ == "__main__":
    h.main([test_failover_kill_and_back, test_failover_server_stops_answering,
            test_failover_lost_tunnels_resume,
            test_failover_pending_go_to_first_up,
            test_spread_uses_both_and_survives,
            test_spread_restarts_of_one_leave_the_other_alone, test_wrong_key_marks_server_down,
            test_reload_server_list_needs_restart, test_status_page_shows_servers,
            test_server_option_errors], __doc__)
