#!/usr/bin/env python3
"""What a stranger on the network, without a key, can make the daemons hold
or do (all on loopback, many 127.0.x.y sources):
- memory: a connection that has proven nothing (no valid MAC yet) costs the
  server a few KiB, not a compression context;
- the replay state file is written only for an authorized key's new
  handshake, never for a stranger's first messages;
- a reverse forward's port is public by design: idle connections there must
  not fill the tunnel's stream table and take the client's forwards down;
- an --admin port whose --admin-allow leaves the stranger out still takes a
  descriptor per connection until the request is read: under a low
  RLIMIT_NOFILE accept() fails with EMFILE while the connection stays
  queued, and evhttp's listener, which has no error callback, wakes again at
  once (a core at 100 % and libevent's own warning per try, unthrottled). It
  must rest like the other listeners (acceptor.h) and serve again once
  descriptors are free."""

import os
import re
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402
from test_attacks import Attacker  # noqa: E402
from test_attacks_handshake import fake_msg1, record_first_message  # noqa: E402
from test_replay import replay  # noqa: E402

NOFILE = 48          # descriptors the daemon gets after start (prlimit)
HOLD = 80            # connections the stranger opens: more than fit
WATCH_S = 3.0        # seconds the daemon is watched while out of descriptors
MAX_CPU = 0.4        # CPU seconds per second allowed while out (a spin is ~1)
MAX_LOG_GROWTH = 64 * 1024  # bytes of log in WATCH_S (a spin writes megabytes)


def starve(d):
    """Caps the running daemon at NOFILE descriptors (it raised its soft
    limit to the hard one at start; this lowers both)."""
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def hold_connections(port, n, first_source=20):
    """n connections to port from 127.0.first_source.1 onwards, one per
    source address (so no per-source share or rate refuses them)."""
    socks = []
    for i in range(n):
        s = socket.socket()
        s.bind((f"127.0.{first_source + i // 250}.{1 + i % 250}", 0))
        s.settimeout(t(5))
        s.connect(("127.0.0.1", port))  # the kernel completes it: backlog
        socks.append(s)
    return socks


def watch(d):
    """(CPU seconds per second, bytes of log) over WATCH_S."""
    mark, c0 = d.mark(), d.cpu()
    time.sleep(WATCH_S)
    return (d.cpu() - c0) / WATCH_S, d.mark() - mark


def check_rests(d, what, cpu, grew):
    print(f"     {what}: out of descriptors for {WATCH_S:.0f} s: {cpu:.2f} CPU s/s, "
          f"{grew} bytes of log")
    check(cpu < MAX_CPU, f"{what}: {cpu:.2f} CPU seconds per second while accept() fails "
                         f"with EMFILE (a listener that never rests)")
    check(grew < MAX_LOG_GROWTH, f"{what}: {grew} bytes of log in {WATCH_S:.0f} s while "
                                 f"accept() fails with EMFILE")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise h.TestFailure(f"no VmRSS for {pid}")


UNAUTH_HELD = 192             # of the default --max-unauth 256, one per source
MAX_KIB_PER_UNAUTH = 24       # zlib + LZ4 state made at accept: about 94 KiB


def test_unauthenticated_connection_costs_little_memory(env):
    """Connections from many sources, each sending 200 of the 256 bytes its
    length prefix announces and then waiting (inside --handshake-timeout)."""
    srv = env.start_server(allow=[], log_level="info", extra=["--state-dir", "none"])
    time.sleep(0.3)
    before = rss_kib(srv.pid)
    socks = hold_connections(srv.port, UNAUTH_HELD)
    for s in socks:
        s.sendall(b"\x01\x00" + b"x" * 200)
    time.sleep(1)
    check(srv.alive(), "the server died")
    grew = rss_kib(srv.pid) - before
    for s in socks:
        s.close()
    per = grew / UNAUTH_HELD
    print(f"     {UNAUTH_HELD} unauthenticated connections: server RSS +{grew} KiB, "
          f"{per:.1f} KiB each")
    check(per < MAX_KIB_PER_UNAUTH, f"each unauthenticated connection costs the server "
                                    f"{per:.1f} KiB (limit {MAX_KIB_PER_UNAUTH})")


def test_stranger_never_writes_replay_state(env):
    """The state file is written (and fsynced) only for a handshake of an
    authorized key with a new timestamp. A stranger's first messages (an
    unknown key, valid-mac1 junk, a recorded real one replayed) must not
    touch it: no flood can make the server fsync per connection."""
    echo = env.target(h.EchoServer())
    state = env.path("state")
    os.mkdir(state, 0o700)
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"], log_level="info",
                           extra=["--state-dir", state])
    msg = record_first_message(env, srv, echo)
    path = os.path.join(state, "replay.state")
    st0 = os.stat(path)
    with open(path, "rb") as f:
        data0 = f.read()
    stranger_key, _ = env.keygen("stranger.key")
    atk = Attacker(env, srv, stranger_key)
    for _ in range(3):
        res = atk.run("handshake", expect_rc=3)
        check(res.startswith("refused"), f"an unknown key's handshake: {res}")
    for i in range(20):
        replay(srv.port, msg, t(5))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=t(5),
                                      source_address=(f"127.0.90.{i + 1}", 0)) as s:
            s.sendall(fake_msg1(env.server_pub))
    time.sleep(0.5)
    st1 = os.stat(path)
    with open(path, "rb") as f:
        data1 = f.read()
    print(f"     3 unknown-key handshakes, 20 replays, 20 valid-mac1 junk messages: "
          f"state file inode {st0.st_ino} -> {st1.st_ino}, {len(data0)} -> {len(data1)} bytes")
    check((st1.st_ino, st1.st_mtime_ns, data1) == (st0.st_ino, st0.st_mtime_ns, data0),
          "a stranger's first messages made the server rewrite its replay state")


REVERSE_HOLD = 1100  # more than --max-streams (1024) of the client's one tunnel


def echo_works(port):
    try:
        s = h.connect(port, timeout=t(5))
        s.sendall(b"still here")
        got = s.recv(64)
        s.close()
        return got == b"still here"
    except OSError:
        return False


def test_reverse_port_flood_keeps_client_forwards(env):
    """A reverse forward's port is public by design. A stranger holding idle
    connections there must not fill the stream table of the client's tunnel:
    the client's own forwards keep working (a listener carries at most a
    --reverse-max-connections, 256)."""
    echo = env.target(h.EchoServer())
    sp, lport = h.free_port(), h.free_port()
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}"], log_level="info",
                           extra=["--state-dir", "none", "--allow-listen", f"127.0.0.1:{sp}"])
    cli = h.start_frontend_client(env, srv.port, reverse=[f"{sp}:127.0.0.1:{echo.port}"],
                                  forwards=[(lport, "127.0.0.1", echo.port)], tunnels=1,
                                  log_level="info")
    srv.wait_log(r"reverse forward for client .*: listening on 127\.0\.0\.1:%d" % sp, t(10))
    check(echo_works(lport), "the client's forward does not work before the flood")
    socks = []
    for i in range(REVERSE_HOLD):
        s = socket.socket()
        s.bind((f"127.0.{100 + i // 250}.{1 + i % 250}", 0))
        s.settimeout(t(5))
        try:
            s.connect(("127.0.0.1", sp))
        except OSError:
            s.close()
            continue
        socks.append(s)
    time.sleep(1)
    works = echo_works(lport)
    open_now = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) != b"":
                open_now += 1
        except BlockingIOError:
            open_now += 1
        except OSError:
            pass
        s.close()
    print(f"     {REVERSE_HOLD} idle connections to the reverse port: {open_now} held; "
          f"the client's own forward {'works' if works else 'FAILS'}")
    check(works, f"with {open_now} idle connections on a reverse port the client's own "
                 f"forward fails (the tunnel's stream table is full)")
    check(open_now <= 1024 // 4, f"the reverse listener carries {open_now} connections")
    srv.stop()
    m = re.findall(r"(\d+) connections over --reverse-max-connections", srv.log_text())
    check(m and int(m[-1]) > 0, "the server did not count connections over the cap")


def test_admin_listener_rests_on_emfile(env):
    """A publicly bound --admin port whose --admin-allow leaves the stranger
    out: its connections still take descriptors until the request is read.
    evhttp's listener has no error callback of its own."""
    admin = h.free_port()
    srv = env.start_server(allow=[], log_level="info",
                           extra=["--state-dir", "none", "--admin", f"127.0.0.1:{admin}",
                                  "--admin-allow", "127.0.0.1/32"])
    srv.wait_log(r"admin interface on ", t(5))
    starve(srv)
    socks = hold_connections(admin, HOLD)
    time.sleep(0.3)
    cpu, grew = watch(srv)
    for s in socks:
        s.close()
    check_rests(srv, "server --admin", cpu, grew)
    # The operator's own scrape works again once the stranger is gone.
    deadline = time.monotonic() + t(10)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", admin), timeout=t(5))
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            got = h.recv_all(s)
            s.close()
            if got.startswith(b"HTTP/1.1 200") or got.startswith(b"HTTP/1.0 200"):
                break
        except OSError:
            pass
        check(time.monotonic() < deadline, "the admin port does not answer after EMFILE")
        time.sleep(0.2)


if __name__ == "__main__":
    h.main([test_unauthenticated_connection_costs_little_memory,
            test_stranger_never_writes_replay_state,
            test_reverse_port_flood_keeps_client_forwards,
            test_admin_listener_rests_on_emfile], __doc__)
