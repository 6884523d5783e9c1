#!/usr/bin/env python3
"""Attacks on the client's queues and listeners (security issue points 2, 4
and 13), against the real daemons on loopback:

- a SOCKS client that sends greeting and CONNECT together and resets
  (SO_LINGER 0) while no tunnel is up: its relay closes while it waits in
  the pending queue. The queue must forget it; the old code kept a pointer
  to the freed relay and used it when the 15 s wait ran out or when a
  tunnel came up (use-after-free: the ASan build reports it, a release
  build may crash or hang);
- file-descriptor exhaustion (EMFILE) on a listener: the daemon must back
  off instead of spinning on accept() and logging a line per try;
- reverse listeners: a second key cannot take over a listener while its
  owner reconnects, and a reverse listener caps its connections.
"""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

SOCKS_GREETING = b"\x05\x01\x00"


def socks_connect_request(host, port):
    return b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack(">H", port)


def reset_after_request(port, target_port):
    """Greeting and CONNECT in one write, then close with RST before the
    client's method reply can be written."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(t(5))
    s.connect(("127.0.0.1", port))
    s.sendall(SOCKS_GREETING + socks_connect_request("127.0.0.1", target_port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def socks_echo(port, target_port, payload=b"ping through socks\n"):
    """A full SOCKS5 CONNECT through the client; returns what the echo sent back."""
    with h.connect(port, timeout=t(20)) as s:
        s.sendall(SOCKS_GREETING)
        check(s.recv(2) == b"\x05\x00", "SOCKS method reply")
        s.sendall(socks_connect_request("127.0.0.1", target_port))
        rep = b""
        while len(rep) < 10:
            b = s.recv(10 - len(rep))
            check(b, "client closed before the CONNECT reply")
            rep += b
        check(rep[1] == 0, f"CONNECT refused: reply code {rep[1]}")
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = s.recv(4096)
            if not b:
                break
            got += b
        return got


def client_alive(cli, what):
    check(cli.alive(), f"client died {what} (rc {cli.proc.returncode}): {cli.tail(15)}")
    cli.check_sanitizer()


def test_pending_reset_then_timeout(env):
    """Point 2, timer path: no server at all; resets wait in the queue;
    after CLIENT_PENDING_TIMEOUT_S (15 s) the queue times out what is left."""
    echo = env.target(h.EchoServer())
    dead = h.free_port()  # nothing listens there: every tunnel attempt fails
    socks = h.free_port()
    cli = h.start_frontend_client(env, dead, socks=socks, wait=False, tunnels=1)
    cli.wait_log(r"SOCKS5 proxy on 127\.0\.0\.1:%d" % socks, t(10))
    for _ in range(20):
        reset_after_request(socks, echo.port)
    # One well-behaved client waits in the queue too: it must get its
    # SOCKS failure reply when the wait runs out, not a crash.
    s = h.connect(socks, timeout=t(30))
    s.sendall(SOCKS_GREETING + socks_connect_request("127.0.0.1", echo.port))
    check(s.recv(2) == b"\x05\x00", "SOCKS method reply")
    mark = cli.mark()
    cli.wait_log(r"no tunnel to the server for 15 s; closing", t(25), since=mark)
    rep = s.recv(10)
    s.close()
    check(len(rep) >= 2 and rep[1] != 0,
          f"waiting SOCKS client got {rep!r}, expected a failure reply")
    time.sleep(0.5)
    client_alive(cli, "after the pending queue timed out")
    # A reset that arrives before the method reply is written closes the
    # relay while it waits (the case that used freed memory); one that
    # arrives after it goes unnoticed (reading is paused) and times out
    # with the rest. How many of each depends on timing.
    n = cli.count(r"no tunnel to the server for 15 s; closing", since=mark)
    check(1 <= n <= 21, f"{n} queued connections timed out, expected 1 to 21")
    print(f"     {21 - n} of 20 reset SOCKS requests left the queue when they closed; "
          f"{n} timed out cleanly")


def test_pending_reset_then_tunnel_up(env):
    """Point 2, drain path: resets wait while the server is down, then the
    server comes up and the queue drains into the new tunnel."""
    echo = env.target(h.EchoServer())
    sport = h.free_port()
    socks = h.free_port()
    cli = h.start_frontend_client(env, sport, socks=socks, wait=False, tunnels=1)
    cli.wait_log(r"SOCKS5 proxy on 127\.0\.0\.1:%d" % socks, t(10))
    for _ in range(20):
        reset_after_request(socks, echo.port)
    time.sleep(0.3)
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"], port=sport)
    cli.wait_log(r"tunnel \d+ to \S+ up", t(40))
    time.sleep(0.5)
    client_alive(cli, "when the tunnel came up and the queue drained")
    got = socks_echo(socks, echo.port)
    check(got == b"ping through socks\n", f"echo through SOCKS after the drain: {got!r}")
    client_alive(cli, "after the drain")
    srv.check_sanitizer()
    print("     20 reset SOCKS requests waited; the drain survived and SOCKS works after")


# --------------------------------------------------------------------------
# Point 4: file-descriptor exhaustion on a listener

def nofile_limits(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise h.TestFailure("no 'Max open files' in /proc/PID/limits")


def hold_connections(port, n, many_sources=False):
    """Open up to n connections (kept open); stops early on error. With
    many_sources each comes from its own loopback address (127.0.0.2 and
    up), so that the server's per-source share of --max-unauth does not
    refuse them before descriptors run out."""
    socks = []
    for i in range(n):
        src = (f"127.0.0.{2 + i % 250}", 0) if many_sources else None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=t(2),
                                         source_address=src)
        except OSError:
            break
        socks.append(s)
    return socks


def measure_flood(d, seconds):
    """CPU seconds and log lines the daemon spends in seconds of EMFILE."""
    mark = d.mark()
    cpu0 = d.cpu()
    time.sleep(seconds)
    cpu = d.cpu() - cpu0
    lines = d.log_since(mark).count("\n")
    return cpu, lines


def check_backoff(d, cpu, lines, seconds, what):
    print(f"     {what}: {cpu / seconds:.2f} CPU s/s, {lines / seconds:.0f} log lines/s "
          f"while out of descriptors")
    # A spinning accept loop costs a whole core and ~1M lines/s; the backoff
    # costs a few accept() calls a second and one line a second.
    check(cpu < 0.4 * seconds, f"{what}: {cpu:.2f} CPU s in {seconds} s of EMFILE (busy loop)")
    check(lines <= 3 * seconds + 5, f"{what}: {lines} log lines in {seconds} s of EMFILE")
    client_alive(d, "while out of descriptors")


def test_emfile_client_listener_backs_off(env):
    echo = env.target(h.EchoServer())
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"])
    lport = h.free_port()
    argv = [env.bins.client, "--server", f"127.0.0.1:{srv.port}", "--key", env.client_key,
            "--server-key", env.server_key + ".pub", "--tunnels", "1",
            "--forward", f"{lport}:127.0.0.1:{echo.port}", "--log-level", "info"]
    cli = h.Daemon("client", argv, env.path("client.log"), nofile=(48, 48))
    env.daemons.append(cli)
    cli.wait_log(r"tunnel \d+ to \S+ up", t(10))
    held = hold_connections(lport, 60)  # more than fit: the rest wait in the backlog
    cli.wait_log(r"accept( on 127\.0\.0\.1:%d)?: Too many open files" % lport, t(10))
    secs = 3
    cpu, lines = measure_flood(cli, secs)
    check_backoff(cli, cpu, lines, secs, "client")
    for s in held:
        s.close()
    # Descriptors are free again: the listener takes connections again.
    deadline = time.monotonic() + t(10)
    while True:
        try:
            with h.connect(lport, timeout=t(3)) as s:
                s.sendall(b"back\n")
                if s.recv(16) == b"back\n":
                    break
        except OSError:
            pass
        check(time.monotonic() < deadline, "client listener did not recover after EMFILE")
        time.sleep(0.2)
    print("     client listener serves again once descriptors are free")
    check(cli.count(r"open-file limit \(48\) is below") == 1,
          "client did not warn that --max-connections does not fit in RLIMIT_NOFILE")


def test_emfile_server_listener_backs_off(env):
    port = h.free_port()
    auth = env.write("server.authorized", f"{env.client_pub} test key\n", 0o644)
    argv = [env.bins.server, "--listen", f"127.0.0.1:{port}", "--key", env.server_key,
            "--authorized-keys", auth, "--allow", "127.0.0.1:9", "--log-level", "info",
            "--handshake-rate", "100000", "--handshake-timeout", "60s"]
    srv = h.Daemon("server", argv, env.path("server.log"), nofile=(40, 160))
    env.daemons.append(srv)
    srv.wait_log(r"listening on 127\.0\.0\.1:%d" % port, t(10))
    # Unauthenticated connections each hold a descriptor (handshake timeout 60 s).
    held = hold_connections(port, 200, many_sources=True)
    srv.wait_log(r"accept( on 127\.0\.0\.1:%d)?: Too many open files" % port, t(10))
    secs = 3
    cpu, lines = measure_flood(srv, secs)
    check_backoff(srv, cpu, lines, secs, "server")
    for s in held:
        s.close()
    mark = srv.mark()
    cli = env.start_client(port, [(h.free_port(), "127.0.0.1", 9)], tunnels=1, wait=False)
    cli.wait_log(r"tunnel \d+ to \S+ up", t(15))
    check(srv.count(r"tunnel from .* up", since=mark) >= 1, "server did not log the tunnel")
    print("     server accepts a tunnel again once descriptors are free")
    soft, hard = nofile_limits(srv.pid)
    check(soft == hard == 160, f"server RLIMIT_NOFILE {soft}/{hard}, expected the soft "
          f"limit raised to the hard one (160/160)")
    check(srv.count(r"open-file limit \(160\) is below") == 1,
          "server did not warn that --max-unauth/--max-tunnels/--max-streams do not fit")


# --------------------------------------------------------------------------
# Point 13: reverse listeners

def wait_listening(port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=t(3)).close()
            return
        except OSError as e:
            check(time.monotonic() < deadline, f"nothing listens on {port} ({e})")
            time.sleep(0.1)


def test_reverse_listener_reserved_for_its_key(env):
    """Key A holds a reverse listener; A's tunnels go. Within --reverse-grace
    key B asking for it is refused, and A gets it back when it returns; once
    the grace period is over the address is free."""
    echo = env.target(h.EchoServer())
    key_b, pub_b = env.keygen("client_b.key")
    sp = h.free_port()
    grace = 3
    srv = env.start_server(allow=[], authorized=[env.client_pub, pub_b],
                           extra=["--allow-listen", f"127.0.0.1:{sp}",
                                  "--reverse-grace", f"{grace}s"])
    spec = [f"{sp}:127.0.0.1:{echo.port}"]
    listens = r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp
    a = h.start_frontend_client(env, srv.port, reverse=spec, tunnels=1, name="client_a")
    a.wait_log(listens, t(10))
    a.stop()
    srv.wait_log(r"tunnel from .* down", t(5))
    b = h.start_frontend_client(env, srv.port, reverse=spec, tunnels=1, key=key_b,
                                name="client_b")
    b.wait_log(r"reverse forward 127\.0\.0\.1:%d refused by the server|%s" % (sp, listens),
               t(10))
    check(b.count(listens) == 0, "key B took over key A's reverse listener while A "
          "reconnects")
    check(srv.count(r"its session ended; 127\.0\.0\.1:%d kept for this key" % sp) == 1,
          "server did not log the grace period")
    srv.wait_log(r"limit reverse listeners held by another key hit: client \S+ .*asked to "
                 r"listen on 127\.0\.0\.1:%d, which client .* reconnects to" % sp, t(5))
    b.stop()
    a2 = h.start_frontend_client(env, srv.port, reverse=spec, tunnels=1, name="client_a2")
    a2.wait_log(listens, t(10))
    srv.wait_log(r"reverse forward for client .*: back on 127\.0\.0\.1:%d" % sp, t(5))
    with h.connect(sp) as s:
        s.sendall(b"owner back\n")
        check(s.recv(64) == b"owner back\n", "echo through the reverse listener after the "
              "owner came back")
    a2.stop()
    srv.wait_log(r"no session came back within %d s; closed 127\.0\.0\.1:%d" % (grace, sp),
                 t(grace + 5))
    b2 = h.start_frontend_client(env, srv.port, reverse=spec, tunnels=1, key=key_b,
                                 name="client_b2")
    b2.wait_log(listens, t(10))
    print(f"     another key was refused during the {grace} s grace period, the owner got "
          f"the listener back; after the grace period the address was free")


def test_reverse_listener_caps_connections(env):
    """--reverse-max-connections: connections over the cap are closed at once,
    those under it work; a closed connection frees its place."""
    echo = env.target(h.EchoServer())
    sp = h.free_port()
    cap = 3
    srv = env.start_server(allow=[], extra=["--allow-listen", f"127.0.0.1:{sp}",
                                            "--reverse-max-connections", str(cap)])
    cli = h.start_frontend_client(env, srv.port, reverse=[f"{sp}:127.0.0.1:{echo.port}"],
                                  tunnels=1)
    cli.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp, t(10))
    held = []
    for i in range(cap):
        s = h.connect(sp)
        s.sendall(b"conn %d\n" % i)
        check(s.recv(64) == b"conn %d\n" % i, f"connection {i} under the cap does not echo")
        held.append(s)
    over = h.connect(sp)
    took, how = h.wait_closed(over, t(5))
    over.close()
    srv.wait_log(r"limit connections per reverse listener \(--reverse-max-connections\) hit",
                 t(5))
    held.pop().close()
    time.sleep(0.3)
    with h.connect(sp) as s:
        s.sendall(b"again\n")
        check(s.recv(64) == b"again\n", "a place freed under the cap does not serve")
    for s in held:
        s.close()
    srv.stop()
    m = srv.wait_log(r"reverse forwards so far: .* (\d+) connections over "
                     r"--reverse-max-connections", t(1))
    check(int(m.group(1)) == 1, f"server counted {m.group(1)} connections over the cap, "
          f"expected 1")
    print(f"     connection {cap + 1} closed after {took:.2f} s ({how}); a freed place "
          f"serves again")


def test_reverse_connection_open_timeout(env):
    """--reverse-open-timeout: a connection the client does not answer (its
    target never completes the TCP handshake) is reset by the server."""
    # A target whose accept queue is full: further SYNs are dropped and the
    # client's connect hangs (its own connect timeout is 10 s).
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    bport = blackhole.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", bport))
            except BlockingIOError:
                pass
            fillers.append(f)
        time.sleep(0.2)
        sp = h.free_port()
        srv = env.start_server(allow=[], extra=["--allow-listen", f"127.0.0.1:{sp}",
                                                "--reverse-open-timeout", "1s"])
        cli = h.start_frontend_client(env, srv.port, reverse=[f"{sp}:127.0.0.1:{bport}"],
                                      tunnels=1)
        cli.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp, t(10))
        s = h.connect(sp)
        s.sendall(b"anyone there?\n")
        took, how = h.wait_closed(s, t(15))
        s.close()
        # Without the timeout the connection waits for the client's own
        # connect timeout (10 s) or forever for a client that never answers.
        check(took < 6, f"unanswered reverse connection closed after {took:.1f} s, "
              f"expected about 1 s (--reverse-open-timeout)")
        srv.wait_log(r"limit reverse connections the client did not answer", t(5))
        print(f"     unanswered reverse connection closed after {took:.2f} s ({how})")
    finally:
        for f in fillers:
            f.close()
        blackhole.close()


def test_reverse_connection_idle_timeout(env):
    """--reverse-idle-timeout: an answered reverse connection that carries
    nothing either way is closed; one that keeps talking stays open."""
    echo = env.target(h.EchoServer())
    sp = h.free_port()
    srv = env.start_server(allow=[], extra=["--allow-listen", f"127.0.0.1:{sp}",
                                            "--reverse-idle-timeout", "1s"])
    cli = h.start_frontend_client(env, srv.port, reverse=[f"{sp}:127.0.0.1:{echo.port}"],
                                  tunnels=1)
    cli.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp, t(10))
    idle = h.connect(sp)
    busy = h.connect(sp)
    for s in (idle, busy):
        s.sendall(b"hello\n")
        check(h.recv_exact(s, 6) == b"hello\n", "no echo through the reverse forward")
    # The busy one talks every 0.3 s for 4 s: it must outlive the idle one.
    start = time.monotonic()
    idle.setblocking(False)
    idle_closed = None
    while time.monotonic() - start < 4:
        busy.sendall(b"ping\n")
        check(h.recv_exact(busy, 5) == b"ping\n", "the busy reverse connection lost its echo")
        if idle_closed is None:
            try:
                if idle.recv(1) == b"":
                    idle_closed = time.monotonic() - start
            except BlockingIOError:
                pass
            except ConnectionError:
                idle_closed = time.monotonic() - start
        time.sleep(0.3)
    check(idle_closed is not None, "the idle reverse connection is still open after 4 s "
          "(--reverse-idle-timeout 1s)")
    check(idle_closed >= 0.9, f"the idle connection closed after {idle_closed:.2f} s, "
          "before its timeout")
    srv.wait_log(r"limit reverse connections idle for --reverse-idle-timeout", t(5))
    idle.close()
    busy.close()
    print(f"     idle reverse connection closed after {idle_closed:.2f} s; "
          f"the busy one still echoes after 4 s")


TESTS = [
    test_pending_reset_then_timeout,
    test_pending_reset_then_tunnel_up,
    test_emfile_client_listener_backs_off,
    test_emfile_server_listener_backs_off,
    test_reverse_listener_reserved_for_its_key,
    test_reverse_listener_caps_connections,
    test_reverse_connection_open_timeout,
    test_reverse_connection_idle_timeout,
]

if __name__ == "__main__":
    h.main(TESTS, __doc__)
