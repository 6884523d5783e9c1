#!/usr/bin/env python3
"""Shared reverse listeners (wanmux-server --reverse-group ADDR:PORT=KEY,...):
two clients with different keys, both in the group, hold the same listener;
connections are balanced over both (each client's own target names it); one
client killed (SIGKILL): new connections all succeed through the other;
restarted: it rejoins and gets connections again. A third key, allowed by
--allow-listen but not in the group, is refused with a log line naming why,
and gets no connection; an exclusive listener still refuses a second key.
Members and connections per member are checked in /metrics (promtool) and
/status."""

import json
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

N = 20


def http_get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=t(10))
    try:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = h.recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    check(b" 200 " in head.split(b"\r\n")[0], f"GET {path}: {head[:80]!r}")
    return body.decode()


def metric(text, name, **labels):
    """The value of one sample of name with exactly these labels."""
    want = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        if sorted(re.findall(r'[a-zA-Z_]\w*="(?:[^"\\]|\\.)*"', m.group(3) or "")) == want:
            return float(m.group(4))
    raise h.TestFailure(f"no sample {name}{{{','.join(want)}}} in the scrape")


def promtool_check(text):
    promtool = shutil.which("promtool")
    if promtool is None:
        print("     (promtool not installed: scrape not checked with promtool)")
        return
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=t(30))
    out = (p.stdout + p.stderr).decode(errors="replace").strip()
    check(p.returncode == 0, f"promtool check metrics failed: {out}")


def cl(pub):
    """A client as the server's log names it: its key and comment."""
    return re.escape(pub) + r" \(test key\)"


def ask(port):
    """One connection to the shared listener: the name its target sent."""
    s = h.connect(port, timeout=t(10))
    try:
        return h.recv_all(s).decode().strip()
    finally:
        s.close()


def spread(port, n):
    counts = {}
    for _ in range(n):
        who = ask(port)
        counts[who] = counts.get(who, 0) + 1
    return counts


def status_listener(status, name):
    for rl in status.get("reverse_listeners", []):
        if rl["listener"] == name:
            return rl
    raise h.TestFailure(f"/status has no reverse listener {name}: "
                        f"{status.get('reverse_listeners')}")


def test_reverse_group(env):
    key_b, pub_b = env.keygen("b.key")
    key_c, pub_c = env.keygen("c.key")
    pub_a = env.client_pub
    short = {pub_a[:8]: "A", pub_b[:8]: "B"}
    targets = {who: env.target(h.SourceServer(f"{who}\n".encode())) for who in "ABC"}
    sp, sp_ex, admin = h.free_port(), h.free_port(), h.free_port()
    while sp_ex == sp:
        sp_ex = h.free_port()
    shared, exclusive = f"127.0.0.1:{sp}", f"127.0.0.1:{sp_ex}"
    # --allow-listen lets every key listen on both ports: only the group
    # keeps C out of the shared one.
    srv = env.start_server(
        allow=[], authorized=[pub_a, pub_b, pub_c], log_level="info",
        extra=["--allow-listen", shared, "--allow-listen", exclusive,
               "--allow-listen", f"0.0.0.0:{sp}",
               "--reverse-group", f"{shared}={pub_a},{env.path('b.key.pub')}",
               "--admin", str(admin)])
    srv.wait_log(r"admin interface on http://127\.0\.0\.1:%d/" % admin, t(5))

    def start(who, key, name, reverses):
        return h.start_frontend_client(
            env, srv.port, key=key, tunnels=2, name=name, log_level="info",
            reverse=[f"{p}:127.0.0.1:{targets[who].port}" for p in reverses])

    cli_a = start("A", None, "client_a", [sp, sp_ex])
    srv.wait_log(r"reverse group %s: listening, first member client %s"
                 % (re.escape(shared), cl(pub_a)), t(10))
    cli_a.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp_ex, t(10))
    cli_b = start("B", key_b, "client_b", [sp, sp_ex])
    srv.wait_log(r"reverse group %s: client %s joined \(2 member sessions\)"
                 % (re.escape(shared), cl(pub_b)), t(10))
    cli_b.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp, t(10))

    # The exclusive listener is A's: B is refused as before, and its
    # connections all go to A.
    cli_b.wait_log(r"reverse forward 127\.0\.0\.1:%d refused by the server" % sp_ex, t(10))
    srv.wait_log(r"client %s asked to listen on %s, which client %s holds"
                 % (cl(pub_b), re.escape(exclusive), cl(pub_a)), t(5))
    got = spread(sp_ex, 6)
    check(got == {"A": 6}, f"exclusive listener of A served {got}")
    print("     exclusive listener: second key refused, 6/6 connections to its owner")

    got = spread(sp, N)
    print(f"     {N} connections on the shared listener: {got}")
    check(set(got) == {"A", "B"}, f"not served by both members: {got}")
    check(min(got.values()) >= N // 4, f"round robin is lopsided: {got}")

    text = http_get(admin, "/metrics")
    promtool_check(text)
    check(metric(text, "wanmux_reverse_listener_members", listener=shared, mode="shared") == 2,
          "members of the shared listener != 2")
    check(metric(text, "wanmux_reverse_listener_members", listener=exclusive,
                 mode="exclusive") == 1, "members of the exclusive listener != 1")
    for k8, who in short.items():
        n = metric(text, "wanmux_reverse_member_connections_total", listener=shared, client=k8)
        check(n == got[who], f"/metrics: {who} took {n} connections, its target saw {got[who]}")
    st = status_listener(json.loads(http_get(admin, "/status")), shared)
    check(st["mode"] == "shared" and st["members"] == 2, f"/status: {st}")
    check({c["client"]: c["connections"] for c in st["clients"]}
          == {k8: got[who] for k8, who in short.items()}, f"/status per member: {st}")
    print("     /metrics (promtool clean) and /status: 2 members, per-member counts match")

    # A third key allowed to listen there but not in the group.
    cli_c = start("C", key_c, "client_c", [sp])
    cli_c.wait_log(r"reverse forward 127\.0\.0\.1:%d refused by the server: (.*)$" % sp, t(10))
    line = srv.wait_log(r"limit reverse listens on a --reverse-group address by a key not in "
                        r"it, or on one overlapping it hit: client %s asked to listen on %s, which --reverse-group "
                        r"shares among 2 keys; its key is not one of them, refused"
                        % (cl(pub_c), re.escape(shared)), t(5))
    print(f"     key not in the group refused: '{line.group(0)[:90]}...'")
    # Nor may it take the group's connections through the wildcard address.
    # (Refusal lines are throttled to one a second: count, not lines.)
    before = metric(http_get(admin, "/metrics"), "wanmux_limit_hits_total",
                    limit="reverse_group_not_member")
    cli_c2 = start("C", key_c, "client_c2", [f"0.0.0.0:{sp}"])
    cli_c2.wait_log(r"reverse forward 0\.0\.0\.0:%d refused by the server: not allowed" % sp,
                    t(10))
    after = metric(http_get(admin, "/metrics"), "wanmux_limit_hits_total",
                   limit="reverse_group_not_member")
    check(after >= before + 1, f"overlapping refusal not counted ({before} -> {after})")
    try:
        socket.create_connection(("127.0.0.2", sp), timeout=t(3)).close()
        raise h.TestFailure(f"something listens on 0.0.0.0:{sp}")
    except ConnectionRefusedError:
        pass
    print("     key not in the group refused on the overlapping 0.0.0.0 too")
    got = spread(sp, 10)
    check("C" not in got, f"the refused key got connections: {got}")

    # Kill A: every new connection goes to B.
    mark = srv.mark()
    os.kill(cli_a.pid, signal.SIGKILL)
    cli_a.proc.wait(timeout=t(10))
    cli_a.rc = cli_a.proc.returncode
    srv.wait_log(r"tunnel from \S+ \(client %s.*\) down" % cl(pub_a), t(10),
                 since=mark, count=2)
    t0 = time.monotonic()
    got = spread(sp, N)
    print(f"     A killed: {N} new connections {got} ({time.monotonic() - t0:.1f} s)")
    check(got == {"B": N}, f"after A was killed: {got}")
    # Still held by B, exclusive listener of A in its grace (its session waits).
    text = http_get(admin, "/metrics")
    promtool_check(text)

    # A comes back (a new process, a new session) and rejoins.
    mark = srv.mark()
    cli_a2 = start("A", None, "client_a2", [sp])
    srv.wait_log(r"reverse group %s: client %s (joined|is back)"
                 % (re.escape(shared), cl(pub_a)), t(15), since=mark)
    cli_a2.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp, t(10))
    got = spread(sp, N)
    print(f"     A restarted: {N} connections {got}")
    check(set(got) == {"A", "B"}, f"A did not rejoin: {got}")
    check(got["A"] >= N // 4, f"A rejoined but got few connections: {got}")
    text = http_get(admin, "/metrics")
    promtool_check(text)
    check(metric(text, "wanmux_limit_hits_total", limit="reverse_group_not_member") >= 1,
          "not-member refusal not counted")
    check(cli_b.alive() and cli_c.alive() and cli_c2.alive() and srv.alive(), "a daemon died")


def test_reverse_group_grace(env):
    """The last member leaves: the listener stays reserved for the group's
    keys for --reverse-grace, any of them may take it back, another key
    may not; then it closes."""
    key_b, pub_b = env.keygen("b.key")
    key_c, pub_c = env.keygen("c.key")
    pub_a = env.client_pub
    targets = {who: env.target(h.SourceServer(f"{who}\n".encode())) for who in "ABC"}
    sp = h.free_port()
    shared = f"127.0.0.1:{sp}"
    srv = env.start_server(
        allow=[], authorized=[pub_a, pub_b, pub_c], log_level="info",
        extra=["--allow-listen", shared, "--reverse-group", f"{shared}={pub_a},{pub_b}",
               "--reverse-grace", "30s", "--resume-timeout", "0"])

    def start(who, key, name):
        return h.start_frontend_client(env, srv.port, key=key, tunnels=1, name=name,
                                       log_level="info",
                                       reverse=[f"{sp}:127.0.0.1:{targets[who].port}"])

    cli_a = start("A", None, "client_a")
    srv.wait_log(r"reverse group %s: listening" % re.escape(shared), t(10))
    check(ask(sp) == "A", "A does not serve")
    cli_a.stop()
    srv.wait_log(r"reverse group %s: its last member \(client %s\) left; kept for the "
                 r"group's keys for 30 s" % (re.escape(shared), cl(pub_a)), t(10))
    # Still listening during the grace period (nothing serves it: closed at once).
    s = h.connect(sp, timeout=t(5))
    s.close()
    cli_c = start("C", key_c, "client_c")
    cli_c.wait_log(r"reverse forward 127\.0\.0\.1:%d refused by the server" % sp, t(10))
    cli_b = start("B", key_b, "client_b")
    srv.wait_log(r"reverse group %s: client %s is back; serving again"
                 % (re.escape(shared), cl(pub_b)), t(10))
    check(ask(sp) == "B", "B does not serve after taking the group back")
    print("     grace: listener kept, non-member refused, another member took it back")
    check(cli_b.alive() and cli_c.alive() and srv.alive(), "a daemon died")


def test_reverse_group_reload(env):
    """SIGHUP: a key taken out of the group leaves it at once (no more
    connections); the group removed, its listener closes."""
    key_b, pub_b = env.keygen("b.key")
    pub_a = env.client_pub
    targets = {who: env.target(h.SourceServer(f"{who}\n".encode())) for who in "AB"}
    sp = h.free_port()
    shared = f"127.0.0.1:{sp}"
    conf = env.write("server.conf", f"allow-listen {shared}\n"
                     f"reverse-group {shared}={pub_a},{pub_b}\n")
    srv = env.start_server(allow=[], authorized=[pub_a, pub_b], log_level="info",
                           extra=["-c", conf])
    clis = [h.start_frontend_client(env, srv.port, key=key, tunnels=1, name=f"client_{who}",
                                    log_level="info",
                                    reverse=[f"{sp}:127.0.0.1:{targets[who].port}"])
            for who, key in (("A", None), ("B", key_b))]
    srv.wait_log(r"reverse group %s: client %s joined" % (re.escape(shared), cl(pub_b)), t(10))
    got = spread(sp, 10)
    check(got == {"A": 5, "B": 5}, f"before the reload: {got}")

    def hup():
        mark = srv.mark()
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reloaded: ", t(10), since=mark)
        return mark

    env.write("server.conf", f"allow-listen {shared}\nreverse-group {shared}={pub_a}\n")
    mark = hup()
    srv.wait_log(r"reload: client %s is no longer in reverse group %s; it left"
                 % (cl(pub_b), re.escape(shared)), t(5), since=mark)
    got = spread(sp, 10)
    check(got == {"A": 10}, f"B taken out of the group still served: {got}")
    print(f"     key taken out of the group by a reload: {got}")

    env.write("server.conf", f"allow-listen {shared}\n")
    mark = hup()
    srv.wait_log(r"reload: %s is no longer a --reverse-group address; closed"
                 % re.escape(shared), t(5), since=mark)
    try:
        socket.create_connection(("127.0.0.1", sp), timeout=t(3)).close()
        raise h.TestFailure(f"{shared} still listens after its group was removed")
    except ConnectionRefusedError:
        pass
    print("     group removed by a reload: its listener closed")
    check(all(c.alive() for c in clis) and srv.alive(), "a daemon died")


def test_reverse_group_member_target_down(env):
    """A member whose own target refuses: after its first refused
    connection the other member takes the next ones (it gets none for
    5 s), so few connections are lost, not every second one."""
    key_b, pub_b = env.keygen("b.key")
    pub_a = env.client_pub
    target_a = env.target(h.SourceServer(b"A\n"))
    gone = env.target(h.RefusingPort())
    sp, admin = h.free_port(), h.free_port()
    shared = f"127.0.0.1:{sp}"
    srv = env.start_server(allow=[], authorized=[pub_a, pub_b], log_level="info",
                           extra=["--allow-listen", shared, "--admin", str(admin),
                                  "--reverse-group", f"{shared}={pub_a},{pub_b}"])
    h.start_frontend_client(env, srv.port, tunnels=1, name="client_a", log_level="info",
                            reverse=[f"{sp}:127.0.0.1:{target_a.port}"])
    h.start_frontend_client(env, srv.port, key=key_b, tunnels=1, name="client_b",
                            log_level="info", reverse=[f"{sp}:127.0.0.1:{gone.port}"])
    srv.wait_log(r"reverse group %s: client %s joined" % (re.escape(shared), cl(pub_b)), t(10))
    t0 = time.monotonic()
    got = {}
    for _ in range(N):
        try:
            who = ask(sp) or "lost"
        except OSError:
            who = "lost"
        got[who] = got.get(who, 0) + 1
    took = time.monotonic() - t0
    print(f"     B's target down: {N} connections {got} in {took:.1f} s")
    lost = got.get("lost", 0)
    # One per 5 s period at most (the first one, then one per retry).
    check(1 <= lost <= 1 + int(took / 5), f"lost {lost} connections in {took:.1f} s: {got}")
    check(got.get("A", 0) == N - lost, f"the rest did not all go to A: {got}")
    text = http_get(admin, "/metrics")
    check(metric(text, "wanmux_reverse_member_failures_total", listener=shared,
                 client=pub_b[:8]) == lost, "failures of B in /metrics differ")


def test_reverse_group_sessions_per_key(env):
    """One key holds at most 8 sessions in a group: a ninth client with the
    same key is refused and counted, so a member cannot crowd out the
    others; the other key still joins."""
    key_b, pub_b = env.keygen("b.key")
    pub_a = env.client_pub
    target = env.target(h.SourceServer(b"x\n"))
    sp, admin = h.free_port(), h.free_port()
    shared = f"127.0.0.1:{sp}"
    srv = env.start_server(allow=[], authorized=[pub_a, pub_b], log_level="info",
                           extra=["--allow-listen", shared, "--admin", str(admin),
                                  "--reverse-group", f"{shared}={pub_a},{pub_b}"])
    clis = []
    for i in range(9):
        clis.append(h.start_frontend_client(env, srv.port, tunnels=1, name=f"client_a{i}",
                                            log_level="info",
                                            reverse=[f"{sp}:127.0.0.1:{target.port}"]))
    # Which one is the ninth depends on the order the handshakes finish.
    refused = 0
    for c in clis:
        m = c.wait_log(r"reverse forward(: server listens on| \S+ refused by the server: "
                       r"refused)", t(10))
        refused += "refused" in m.group(0)
    check(refused == 1, f"{refused} of 9 sessions of one key refused, expected 1")
    b = h.start_frontend_client(env, srv.port, key=key_b, tunnels=1, name="client_b",
                                log_level="info", reverse=[f"{sp}:127.0.0.1:{target.port}"])
    b.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp, t(10))
    text = http_get(admin, "/metrics")
    check(metric(text, "wanmux_limit_hits_total", limit="reverse_group_sessions_per_key") == 1,
          "the ninth session of one key was not counted")
    check(metric(text, "wanmux_reverse_member_sessions", listener=shared,
                 client=pub_a[:8]) == 8, "A's member sessions != 8")
    check(metric(text, "wanmux_reverse_listener_members", listener=shared, mode="shared") == 9,
          "members != 8 + 1")
    print("     9 sessions of one key: 8 members, the ninth refused; the other key joined")


if __name__ == "__main__":
    h.main([test_reverse_group, test_reverse_group_grace, test_reverse_group_reload,
            test_reverse_group_member_target_down, test_reverse_group_sessions_per_key],
           __doc__)
