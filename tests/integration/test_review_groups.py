#!/usr/bin/env python3
"""Review of the shared reverse listeners (--reverse-group) as an attacker:

- a member whose session cannot take another stream (its streams all in use:
  the client's 1024, or fewer that it announced) must not swallow its round
  robin share of the connections: another member with room takes them;
- a connection the server closes after --reverse-idle-timeout was answered
  and served: it is no failure of the member that served it, or a LAN user
  who leaves one idle steers the next connections away from that member;
- reloads that remove a member key or the group while connections are open
  or unanswered, members that come and go meanwhile: the server (ASan build)
  survives and accounts for everything;
- connections of a listener a reload closed stay under
  --reverse-idle-timeout.
"""

import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_attacks import Attacker  # noqa: E402
from test_reverse_group import cl, http_get, metric  # noqa: E402


class NamedTarget(h.TargetServer):
    """Sends its name, then holds the connection until the other side
    half-closes (EOF), then closes."""

    def __init__(self, name, **kw):
        self.name = name
        super().__init__(**kw)

    def handle(self, c, idx):
        c.sendall(self.name)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass


def ask(port):
    """One connection to the shared listener, half-closed at once: the name
    its target sent, "" when the server closed it with nothing."""
    s = h.connect(port, timeout=t(10))
    try:
        s.shutdown(socket.SHUT_WR)
        return h.recv_all(s).decode().strip()
    except OSError:
        return ""
    finally:
        s.close()


def spread(port, n):
    counts = {}
    for _ in range(n):
        who = ask(port) or "lost"
        counts[who] = counts.get(who, 0) + 1
    return counts


def hold(port, timeout=10):
    """A connection left open: (socket, the name its target sent)."""
    s = h.connect(port, timeout=t(timeout))
    got = b""
    deadline = time.monotonic() + t(timeout)
    while not got.endswith(b"\n") and time.monotonic() < deadline:
        try:
            b = s.recv(64)
        except socket.timeout:
            break
        if not b:
            break
        got += b
    return s, got.decode().strip()


def test_member_without_stream_room(env):
    """M (a hostile or just busy member) answers OPENs but its session has
    no room for another stream: before the fix every connection the round
    robin gave it was closed at once ("stream limit reached"), half of them
    here, and M never counted a failure. After: A takes them all."""
    key_m, pub_m = env.keygen("m.key")
    pub_a = env.client_pub
    target_a = env.target(NamedTarget(b"A\n"))
    sp, admin = h.free_port(), h.free_port()
    shared = f"127.0.0.1:{sp}"
    srv = env.start_server(allow=[], authorized=[pub_a, pub_m], log_level="info",
                           extra=["--allow-listen", shared, "--admin", str(admin),
                                  "--reverse-group", f"{shared}={pub_a},{pub_m}"])
    m = Attacker(env, srv, key_m).start("member", "--target", shared, "--max-streams", 1,
                                        "--hold", t(60))
    line = m.stdout.readline().decode().strip()
    check(line == "listen: 0", f"member M: {line!r}")
    # M's one stream: a connection it answered and holds.
    held = h.connect(sp, timeout=t(10))
    srv.wait_log(r"reverse group %s: listening, first member client %s"
                 % (re.escape(shared), cl(pub_m)), t(5))
    deadline = time.monotonic() + t(10)
    while time.monotonic() < deadline:
        text = http_get(admin, "/metrics")
        if metric(text, "wanmux_reverse_member_connections_open", listener=shared,
                  client=pub_m[:8]) == 1:
            break
        time.sleep(0.1)
    else:
        raise h.TestFailure("M's connection never opened")
    h.start_frontend_client(env, srv.port, tunnels=1, name="client_a", log_level="info",
                            reverse=[f"{sp}:127.0.0.1:{target_a.port}"])
    srv.wait_log(r"reverse group %s: client %s joined" % (re.escape(shared), cl(pub_a)),
                 t(10))
    got = spread(sp, 10)
    print(f"     M full (1 stream of 1), A free: 10 connections {got}")
    check(got == {"A": 10}, f"connections lost on the member without room: {got}")
    held.close()
    m.kill()
    m.communicate(timeout=t(10))
    check(srv.alive(), "the server died")


def test_idle_close_is_no_failure(env):
    """A LAN user leaves a served connection idle: --reverse-idle-timeout
    closes it. Before the fix that counted as a failure of the member that
    served it (reverse_member_failures_total), which then got no connection
    for 5 s: 10 of 10 went to the other member. After: no failure, 5/5."""
    key_b, pub_b = env.keygen("b.key")
    pub_a = env.client_pub
    targets = {who: env.target(NamedTarget(f"{who}\n".encode())) for who in "AB"}
    sp, admin = h.free_port(), h.free_port()
    shared = f"127.0.0.1:{sp}"
    srv = env.start_server(allow=[], authorized=[pub_a, pub_b], log_level="info",
                           extra=["--allow-listen", shared, "--admin", str(admin),
                                  "--reverse-group", f"{shared}={pub_a},{pub_b}",
                                  "--reverse-idle-timeout", "1s"])
    for who, key in (("A", None), ("B", key_b)):
        h.start_frontend_client(env, srv.port, key=key, tunnels=1, name=f"client_{who}",
                                log_level="info",
                                reverse=[f"{sp}:127.0.0.1:{targets[who].port}"])
    srv.wait_log(r"reverse group %s: client %s joined" % (re.escape(shared), cl(pub_b)),
                 t(10))
    s, who = hold(sp)
    check(who in ("A", "B"), f"the held connection got {who!r}")
    pub = pub_a if who == "A" else pub_b
    # The server closes it after 1 s without a byte (a sweep every 250 ms).
    s.settimeout(t(10))
    t0 = time.monotonic()
    try:
        rest = s.recv(64)
    except OSError:
        rest = b""
    took = time.monotonic() - t0
    s.close()
    check(rest == b"" and took < t(10), f"idle connection not closed: {rest!r} {took:.1f} s")
    got = spread(sp, 10)
    text = http_get(admin, "/metrics")
    fails = metric(text, "wanmux_reverse_member_failures_total", listener=shared,
                   client=pub[:8])
    print(f"     {who}'s connection closed idle after {took:.1f} s: failures of {who} "
          f"{fails:.0f}; next 10 connections {got}")
    check(fails == 0, f"an idle close counted as a failure of {who}")
    check(got == {"A": 5, "B": 5}, f"the round robin passed over {who}: {got}")
    check(srv.alive(), "the server died")


def test_reload_churn_with_open_connections(env):
    """Members come and go and reloads remove a member key and then the
    group while connections are open (answered) and unanswered; the server
    (an ASan build in CI) must survive and count them right."""
    key_b, pub_b = env.keygen("b.key")
    key_m, pub_m = env.keygen("m.key")
    pub_a = env.client_pub
    targets = {who: env.target(NamedTarget(f"{who}\n".encode())) for who in "AB"}
    sp, admin = h.free_port(), h.free_port()
    shared = f"127.0.0.1:{sp}"

    def conf(keys):
        text = f"allow-listen {shared}\nreverse-open-timeout 30s\n"
        if keys:
            text += f"reverse-group {shared}={','.join(keys)}\n"
        return env.write("server.conf", text)

    path = conf([pub_a, pub_b, pub_m])
    srv = env.start_server(allow=[], authorized=[pub_a, pub_b, pub_m], log_level="info",
                           extra=["-c", path, "--admin", str(admin)])

    def hup(keys):
        conf(keys)
        mark = srv.mark()
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reloaded: ", t(10), since=mark)
        return mark

    clis = {}
    for who, key in (("A", None), ("B", key_b)):
        clis[who] = h.start_frontend_client(
            env, srv.port, key=key, tunnels=2, name=f"client_{who}", log_level="info",
            reverse=[f"{sp}:127.0.0.1:{targets[who].port}"])
        srv.wait_log(r"reverse group %s: (listening, first member|client %s joined)"
                     % (re.escape(shared), cl(pub_a if who == "A" else pub_b)), t(10))
    # M: "listen" answers no OPEN, so its connections stay unanswered.
    m = Attacker(env, srv, key_m).start("listen", "--target", shared, "--count", 1,
                                        "--hold", t(60))
    check(m.stdout.readline().decode().strip() == "listening: 1", "M did not join")
    open_conns = [h.connect(sp, timeout=t(10)) for _ in range(12)]
    time.sleep(0.5)
    # M out of the group (its unanswered connections stay), then B killed
    # while its connections are open, then the group removed.
    hup([pub_a, pub_b])
    mark = srv.mark()
    os.kill(clis["B"].pid, signal.SIGKILL)
    clis["B"].proc.wait(timeout=t(10))
    clis["B"].rc = clis["B"].proc.returncode
    srv.wait_log(r"tunnel from \S+ \(client %s.*\) down" % cl(pub_b), t(10), since=mark)
    got = spread(sp, 4)
    check(got == {"A": 4}, f"after B died: {got}")
    hup([pub_a, pub_m])
    hup([])
    for s in open_conns:
        s.close()
    m.kill()
    m.communicate(timeout=t(10))
    try:
        socket.create_connection(("127.0.0.1", sp), timeout=t(3)).close()
        raise h.TestFailure("the group's listener still listens after its removal")
    except ConnectionRefusedError:
        pass
    text = http_get(admin, "/metrics")
    check("wanmux_reverse_listener_members" not in text or
          f'listener="{shared}"' not in text, "the removed listener is still reported")
    check(srv.alive() and clis["A"].alive(), "a daemon died")
    print("     reloads with open and unanswered connections: server alive, listener gone")


def test_closed_listener_keeps_idle_bound(env):
    """A reload removes the group: its listener closes but the connections
    it accepted run on (their member is still up). Before the fix they left
    the idle sweep with the listener: one a LAN user left idle stayed open
    for good (8 s here, 4 times --reverse-idle-timeout). After: closed."""
    pub_a = env.client_pub
    target = env.target(NamedTarget(b"A\n"))
    sp = h.free_port()
    shared = f"127.0.0.1:{sp}"
    base = f"allow-listen {shared}\nreverse-idle-timeout 2s\n"
    conf = env.write("server.conf", base + f"reverse-group {shared}={pub_a}\n")
    srv = env.start_server(allow=[], authorized=[pub_a], log_level="info",
                           extra=["-c", conf])
    cli = h.start_frontend_client(env, srv.port, tunnels=1, name="client_a", log_level="info",
                                  reverse=[f"{sp}:127.0.0.1:{target.port}"])
    srv.wait_log(r"reverse group %s: listening" % re.escape(shared), t(10))
    s, who = hold(sp)
    check(who == "A", f"the held connection got {who!r}")
    env.write("server.conf", base)
    mark = srv.mark()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"reload: %s is no longer a --reverse-group address; closed"
                 % re.escape(shared), t(10), since=mark)
    s.settimeout(t(8))
    t0 = time.monotonic()
    try:
        rest = s.recv(64)
    except socket.timeout:
        rest = None
    except ConnectionResetError:
        rest = b""  # the relay resets a connection it closes as idle
    took = time.monotonic() - t0
    s.close()
    print(f"     listener closed by the reload; its idle connection: "
          f"{'closed' if rest == b'' else 'still open'} after {took:.1f} s")
    check(rest == b"", f"the idle connection of the closed listener stayed open {took:.1f} s")
    srv.wait_log(r"limit reverse connections idle for --reverse-idle-timeout \(closed\) hit: "
                 r"reverse %s from 127\.0\.0\.1" % re.escape(shared), t(5), since=mark)
    check(srv.alive() and cli.alive(), "a daemon died")


if __name__ == "__main__":
    h.main([test_member_without_stream_room, test_idle_close_is_no_failure,
            test_reload_churn_with_open_connections,
            test_closed_listener_keeps_idle_bound], __doc__)
