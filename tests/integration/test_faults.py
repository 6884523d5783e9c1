#!/usr/bin/env python3
"""Faults on loopback that need no root: what a session does when the server
goes away for good.

- server killed (SIGKILL) in the middle of an upload and a download and
  started again on the same port 2 s later: both local connections end
  within 15 s of the kill with a reset (the application sees an error, not
  a clean EOF that would pass a truncated download off as complete, and not
  a hang); new connections then carry data intact; a client with sessions
  logs that the server "does not know session";
- the server stopped (SIGSTOP) for longer than the dead-tunnel detection
  (30 s of silence) plus --resume-timeout 5: the streams stay open while the
  session waits for a tunnel, end with a reset once the resume timeout has
  passed, the client logs a line naming "resume-timeout", the server drops
  the target connections once it runs again (SIGCONT), and a new connection
  works. Nothing hangs.

A client that predates --resume-timeout (one session per tunnel) is run
without it, so the behavioural checks still decide.
"""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402

CHUNK = h.make_random(16 * 1024, seed=41)
PACE = 0.01  # one CHUNK per 10 ms each way: ~1.6 MB/s, light on a shared host
RESUME_TIMEOUT = 5
DEAD_AFTER = 30  # tunnel.c dead_after_ms: a silent tunnel is dead after 30 s


class Ends:
    """When and how each end of a test stream finished."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bytes = 0
        self.ended = None  # monotonic time
        self.how = None

    def add(self, n):
        with self.lock:
            self.bytes += n

    def end(self, how):
        with self.lock:
            if self.ended is None:
                self.ended = time.monotonic()
                self.how = how


def paced_source(c, idx, server):
    """Target: sends CHUNK every PACE seconds until the peer goes away."""
    c.settimeout(t(300))
    ends = server.ends[idx]
    try:
        while True:
            c.sendall(CHUNK)
            ends.add(len(CHUNK))
            time.sleep(PACE)
    except OSError as e:
        ends.end(f"error: {e.strerror or e}")


def endless_sink(c, idx, server):
    """Target: reads until EOF or error."""
    c.settimeout(t(300))
    ends = server.ends[idx]
    try:
        while True:
            b = c.recv(256 * 1024)
            if not b:
                ends.end("EOF")
                return
            ends.add(len(b))
    except OSError as e:
        ends.end(f"error: {e.strerror or e}")


def local_reader(sock, ends):
    """The application reading a download until it ends."""
    sock.settimeout(t(300))
    try:
        while True:
            b = sock.recv(256 * 1024)
            if not b:
                ends.end("EOF")
                return
            ends.add(len(b))
    except OSError as e:
        ends.end(f"error: {e.strerror or e}")


def local_writer(sock, ends):
    """The application sending an upload (paced) until it is refused."""
    sock.settimeout(t(300))
    try:
        while True:
            sock.sendall(CHUNK)
            ends.add(len(CHUNK))
            time.sleep(PACE)
    except OSError as e:
        ends.end(f"error: {e.strerror or e}")


def wait_until(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def setup(env, resume_opts):
    """Targets, server, client with 4 tunnels, and a running download and
    upload. Returns (srv, cli, ports, (down_end, up_end), (src, drain))."""
    src = env.target(h.FuncServer(paced_source))
    src.ends = [Ends() for _ in range(16)]
    drain = env.target(h.FuncServer(endless_sink))
    drain.ends = [Ends() for _ in range(16)]
    sink = env.target(h.SinkServer())
    source = env.target(h.SourceServer(lambda i: h.make_text(2 * MB, seed=50 + i)))
    allow = [f"127.0.0.1:{p}" for p in (src.port, drain.port, sink.port, source.port)]
    srv = env.start_server(allow=allow, extra=resume_opts)
    srv.allow = allow
    ports = [h.free_port() for _ in range(4)]
    cli = env.start_client(srv.port, [(ports[0], "127.0.0.1", src.port),
                                      (ports[1], "127.0.0.1", drain.port),
                                      (ports[2], "127.0.0.1", sink.port),
                                      (ports[3], "127.0.0.1", source.port)],
                           tunnels=4, extra=resume_opts)
    down_sock = h.connect(ports[0], timeout=t(10))
    up_sock = h.connect(ports[1], timeout=t(10))
    down_end, up_end = Ends(), Ends()
    for fn, s, e in ((local_reader, down_sock, down_end), (local_writer, up_sock, up_end)):
        threading.Thread(target=fn, args=(s, e), daemon=True).start()
    check(wait_until(lambda: down_end.bytes >= 1 * MB and drain.ends[0].bytes >= 1 * MB,
                     t(20)),
          f"transfers did not get going: {down_end.bytes} bytes down, "
          f"{drain.ends[0].bytes} up")
    return srv, cli, ports, (down_sock, up_sock), (down_end, up_end), (src, drain, source)


def new_streams_work(ports, source, what):
    """A fresh upload and download through the pair: intact."""
    data = h.make_random(2 * MB, seed=44)
    jobs = [lambda: h.upload(ports[2], data, timeout=t(30)),
            lambda: h.download(ports[3], timeout=t(30))]
    up, down = h.parallel(jobs, timeout=t(40))
    check(up == h.sha(data), f"{what}: upload hash {up}, expected {h.sha(data)}")
    idx, n, dg = source.results[-1]
    check(down == (n, dg), f"{what}: download got {down}, source sent {(n, dg)}")


def resume_opts(env):
    if h.supports_option(env.bins.client, "--resume-timeout"):
        return ["--resume-timeout", str(RESUME_TIMEOUT)]
    return []


def test_server_killed_and_restarted_streams_reset(env):
    sessions = h.supports_option(env.bins.client, "--resume-timeout")
    srv, cli, ports, socks, (down_end, up_end), (src, drain, source) = setup(env, [])
    mark = cli.mark()
    killed = time.monotonic()
    srv.kill()  # SIGKILL
    time.sleep(2.0)
    srv2 = env.start_server(allow=srv.allow, port=srv.port, name="server-restarted")
    ok = wait_until(lambda: down_end.ended is not None and up_end.ended is not None, t(15) + 1)
    for name, e in (("download", down_end), ("upload", up_end)):
        check(e.ended is not None,
              f"{name}: local connection still open {time.monotonic() - killed:.1f} s after "
              f"the server was killed (restarted 2 s after the kill)")
        print(f"     {name}: local connection ended {e.ended - killed:.2f} s after kill -9 "
              f"({e.how})")
    check(ok, "not both local connections ended")
    limit = 15 * min(h.SCALE, 2)
    for name, e in (("download", down_end), ("upload", up_end)):
        check(e.ended - killed <= limit,
              f"{name} ended {e.ended - killed:.1f} s after the kill, limit {limit:.0f} s")
        # A clean EOF would let an application take a cut download for a
        # whole one: the end must be an error (reset) for the application.
        check(e.how.startswith("error"), f"{name}: the application saw {e.how}, not a reset")
    for s in socks:
        s.close()
    cli.wait_log(r"tunnel \d+ to \S+ up", t(20), since=mark, count=4)
    srv2.wait_log(r"tunnel from \S+ up", t(5), count=4)
    new_streams_work(ports, source, "after the restart")
    if sessions:
        check(cli.count(r"does not know session", since=mark) > 0,
              "client logged no line saying the server does not know the session")
    else:
        print("     (client without --resume-timeout: no session check)")


def test_outage_longer_than_resume_timeout_resets(env):
    opts = resume_opts(env)
    if not opts:
        print("     client has no --resume-timeout: running with the defaults")
    srv, cli, ports, socks, (down_end, up_end), (src, drain, source) = setup(env, opts)
    mark = cli.mark()
    srv_mark = srv.mark()
    os.kill(srv.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # Tunnels are declared dead after DEAD_AFTER s of silence; the
        # session then waits RESUME_TIMEOUT s for one to come back.
        cli.wait_log(r"tunnel \d+ to \S+ down", t(DEAD_AFTER + 15), since=mark)
        first_down = time.monotonic()
        print(f"     first tunnel down {first_down - stopped:.1f} s after SIGSTOP")
        bound = t(RESUME_TIMEOUT + 20)
        wait_until(lambda: down_end.ended is not None and up_end.ended is not None, bound)
        for name, e in (("download", down_end), ("upload", up_end)):
            check(e.ended is not None,
                  f"{name}: local connection still open {time.monotonic() - first_down:.1f} s "
                  f"after the tunnels went down (resume timeout {RESUME_TIMEOUT} s)")
            print(f"     {name}: ended {e.ended - first_down:.2f} s after the first tunnel "
                  f"went down ({e.how})")
        all_down = cli.wait_log(r"tunnel \d+ to \S+ down", t(5), since=mark, count=4)
        check(all_down is not None, "not all tunnels went down")
        for name, e in (("download", down_end), ("upload", up_end)):
            check(e.how.startswith("error"), f"{name}: the application saw {e.how}, not a reset")
            # The session waited for a tunnel before giving up on the stream.
            check(e.ended - first_down >= RESUME_TIMEOUT - 1,
                  f"{name}: reset {e.ended - first_down:.1f} s after the tunnels went down, "
                  f"before the {RESUME_TIMEOUT} s resume timeout was up")
        check(cli.count(r"resume-timeout", since=mark) > 0,
              "client logged no line naming the resume-timeout")
    finally:
        os.kill(srv.pid, signal.SIGCONT)
    resumed = time.monotonic()
    # The server, running again, finds its tunnels gone and, after its own
    # resume timeout, drops the target connections.
    check(wait_until(lambda: src.ends[0].ended is not None and drain.ends[0].ended is not None,
                     t(RESUME_TIMEOUT + 20)),
          f"server still holds the target connections {time.monotonic() - resumed:.1f} s "
          f"after SIGCONT (source ended: {src.ends[0].how}, sink ended: {drain.ends[0].how})")
    print(f"     targets closed by the server {src.ends[0].ended - resumed:.2f} s / "
          f"{drain.ends[0].ended - resumed:.2f} s after SIGCONT")
    if opts:
        srv.wait_log(r"resume-timeout", t(5), since=srv_mark)
    for s in socks:
        s.close()
    cli.wait_log(r"tunnel \d+ to \S+ up", t(40), since=mark, count=4)
    new_streams_work(ports, source, "after the outage")


if __name__ == "__main__":
    h.main([test_server_killed_and_restarted_streams_reset,
            test_outage_longer_than_resume_timeout_resets], __doc__)
