#!/usr/bin/env python3
"""Changing a running pair without dropping anything: SIGHUP re-reads the
config file and the files it names (a new --allow rule works at once while a
stream stays open; a broken config is refused whole, naming file and line, and
the old rules keep working; a key removed from authorized keys loses its
tunnels and its reverse listeners at once; client forwards added and removed). SIGTERM drains: GOAWAY, open
streams finish (SHA-256) and the daemon exits 0 after them; a second signal
stops at once; --drain-timeout cuts a stream that never ends. Assertions are
on data, exit codes and the daemons' counters, with generous time bounds."""

import hashlib
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

REFUSED = r"reload refused, the running configuration stays: "


def echo_round(sock, payload, hasher_out, hasher_in):
    """Send payload on an echo connection and read it back."""
    sock.sendall(payload)
    hasher_out.update(payload)
    got = 0
    while got < len(payload):
        b = sock.recv(len(payload) - got)
        check(b, "echo stream closed in the middle")
        hasher_in.update(b)
        got += len(b)


def try_upload(port, data):
    """The sink's reply, or "" when the stream was refused (reset, closed)."""
    try:
        return h.upload(port, data, timeout=t(10))
    except OSError:
        return ""


def hup(daemon, ok=True):
    """SIGHUP and wait for the outcome line; returns the log mark before it."""
    mark = daemon.mark()
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log(r"reloaded: " if ok else REFUSED, t(10), since=mark)
    return mark


def server_conf(env, rules, extra_lines=""):
    text = "# wanmux-server test config\n" + "".join(f"allow {r}\n" for r in rules)
    return env.write("server.conf", text + extra_lines)


def exit_counter(daemon, name):
    m = re.search(r"drain: (\d+) streams cut.*reloads: (\d+), (\d+) refused; (\d+) ",
                  daemon.log_text())
    check(m is not None, f"{daemon} logged no drain/reload summary")
    return int(m.group({"cut": 1, "reloads": 2, "refused": 3, "last": 4}[name]))


def test_hup_adds_allow_rule_stream_keeps_flowing(env):
    echo = env.target(h.EchoServer())
    sink = env.target(h.SinkServer())
    conf = server_conf(env, [f"127.0.0.1:{echo.port}"])
    srv = env.start_server(allow=[], extra=["-c", conf])
    l_echo, l_sink = h.free_port(), h.free_port()
    cli = env.start_client(srv.port, [(l_echo, "127.0.0.1", echo.port),
                                      (l_sink, "127.0.0.1", sink.port)])
    # Not allowed yet: refused.
    data = h.make_random(256 << 10, seed=3)
    check(try_upload(l_sink, data) == "",
          "the sink was reachable before its rule existed")
    check(sink.accepts == 0, f"sink accepted {sink.accepts} before its rule existed")
    out, back = hashlib.sha256(), hashlib.sha256()
    s = h.connect(l_echo, timeout=t(20))
    for i in range(8):
        echo_round(s, h.make_random(128 << 10, seed=100 + i), out, back)
    server_conf(env, [f"127.0.0.1:{echo.port}", f"127.0.0.1:{sink.port}"])
    hup(srv)
    # The open stream flows on across the reload ...
    for i in range(8):
        echo_round(s, h.make_random(128 << 10, seed=200 + i), out, back)
    s.shutdown(socket.SHUT_WR)
    check(h.recv_all(s) == b"", "echo sent more than it got")
    s.close()
    check(out.hexdigest() == back.hexdigest(), "echo stream across the reload: hash differs")
    # ... and the new rule works for a new stream.
    big = h.make_random(4 << 20, seed=4)
    check(h.upload(l_sink, big, timeout=t(20)) == h.sha(big),
          "upload to the newly allowed target: hash differs")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "the reload took a tunnel down")
    srv.stop()
    check(exit_counter(srv, "reloads") == 1 and exit_counter(srv, "refused") == 0,
          "server counters: expected 1 reload, 0 refused")


def test_hup_broken_config_refused_old_kept(env):
    sink = env.target(h.SinkServer())
    other = env.target(h.SinkServer())
    conf = server_conf(env, [f"127.0.0.1:{sink.port}"])
    srv = env.start_server(allow=[], extra=["-c", conf])
    l_sink, l_other = h.free_port(), h.free_port()
    env.start_client(srv.port, [(l_sink, "127.0.0.1", sink.port),
                                (l_other, "127.0.0.1", other.port)])
    cases = [
        # line 3 has a bad rule; the good new rule on line 2 must not apply either
        (f"allow 127.0.0.1:{other.port}\nallow 10.0.0.0/99\n", r"server\.conf:3: --allow"),
        (f"allow 127.0.0.1:{other.port}\nno-such-option 1\n", r"server\.conf:3: unknown option"),
        (f"allow 127.0.0.1:{other.port}\nmax-unauth lots\n", r"server\.conf:3: bad --max-unauth"),
    ]
    for i, (lines, where) in enumerate(cases):
        with open(conf, "w") as f:
            f.write(f"allow 127.0.0.1:{sink.port}\n" + lines)
        mark = hup(srv, ok=False)
        line = srv.wait_log(REFUSED + r".*$", t(5), since=mark).group(0)
        print(f"     server: {line.split(': ', 1)[1]}")
        check(re.search(re.escape(env.dir) + r"/" + where, line),
              f"refusal does not name the file and line ({where}): {line}")
        check(srv.count(REFUSED, since=mark) == 1, "more than one refusal line")
        data = h.make_random(1 << 20, seed=10 + i)
        check(h.upload(l_sink, data, timeout=t(20)) == h.sha(data),
              f"case {i}: the old rule stopped working")
        check(try_upload(l_other, data) == "",
              f"case {i}: a rule of the refused config was applied")
    check(other.accepts == 0, f"the target of the refused rule saw {other.accepts} accepts")
    # A broken file the config names (authorized keys) is refused too.
    server_conf(env, [f"127.0.0.1:{sink.port}"])
    auth = env.path("server.authorized")
    with open(auth, "a") as f:
        f.write("this-is-not-a-key\n")
    mark = hup(srv, ok=False)
    line = srv.wait_log(REFUSED + r".*$", t(5), since=mark).group(0)
    check(re.search(re.escape(auth) + r":2:", line), f"refusal does not name {auth}:2: {line}")
    data = h.make_random(1 << 20, seed=20)
    check(h.upload(l_sink, data, timeout=t(20)) == h.sha(data),
          "after a broken authorized-keys file: the old config stopped working")
    srv.stop()
    check(exit_counter(srv, "reloads") == 4 and exit_counter(srv, "refused") == 4,
          "server counters: expected 4 reloads, 4 refused")


def test_hup_removed_key_loses_tunnels(env):
    sink = env.target(h.SinkServer())
    k2, pub2 = env.keygen("client2.key")
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"],
                           authorized=[env.client_pub, pub2])
    l1, l2 = h.free_port(), h.free_port()
    c1 = env.start_client(srv.port, [(l1, "127.0.0.1", sink.port)], tunnels=2)
    c2 = env.start_client(srv.port, [(l2, "127.0.0.1", sink.port)], tunnels=2,
                          key=k2, name="client2")
    env.write("server.authorized", f"{pub2} only the second\n", 0o644)
    mark1 = c1.mark()
    hup(srv)
    c1.wait_log(r"tunnel \d+ to \S+ down", t(10), since=mark1, count=2)
    srv.wait_log(r"client key %s is not in the authorized keys" % re.escape(env.client_pub),
                 t(20))
    data = h.make_random(2 << 20, seed=30)
    check(h.upload(l2, data, timeout=t(20)) == h.sha(data), "the remaining key: hash differs")
    check(c2.count(r"tunnel \d+ to \S+ down") == 0, "the remaining key lost a tunnel")
    check(srv.count(r"reload: client %s.* is no longer authorized" % re.escape(env.client_pub))
          == 2, "server did not close both tunnels of the removed key")
    srv.stop()
    check(exit_counter(srv, "last") == 2,
          f"tunnels closed as no longer authorized: {exit_counter(srv, 'last')}, expected 2")


def test_hup_removed_key_frees_its_reverse_listener(env):
    """A reverse listener is reserved for its key for --reverse-grace (60 s)
    after the key's last tunnel; a key a reload removed cannot come back, so
    its listener must close with its tunnels, not hold the port a minute."""
    origin = env.target(h.SinkServer())
    k2, pub2 = env.keygen("client2.key")
    sp = h.free_port()
    srv = env.start_server(allow=[], authorized=[env.client_pub, pub2],
                           extra=["--allow-listen", f"127.0.0.1:{sp}"])
    cli = h.start_frontend_client(env, srv.port, reverse=[f"{sp}:127.0.0.1:{origin.port}"])
    srv.wait_log(r"reverse forward for client .*: listening on 127\.0\.0\.1:%d" % sp, t(10))
    h.connect(sp, timeout=t(5)).close()
    env.write("server.authorized", f"{pub2} only the second\n", 0o644)
    t0 = time.monotonic()
    hup(srv)
    closed = None
    while time.monotonic() - t0 < t(10):
        try:
            h.connect(sp, timeout=t(2)).close()
        except ConnectionRefusedError:
            closed = time.monotonic() - t0
            break
        time.sleep(0.1)
    check(closed is not None, f"127.0.0.1:{sp} still listening 10 s after the reload "
          "removed its key (held for --reverse-grace)")
    check(srv.count(r"key no longer authorized; closed 127\.0\.0\.1:%d" % sp) == 1,
          "the server did not log why it closed the listener")
    check(srv.count(r"kept for this key for") == 0,
          "the removed key's listener went into its grace period")
    print(f"     reverse listener of the removed key closed {closed:.2f} s after SIGHUP "
          "(--reverse-grace 60 s)")
    cli.stop()
    srv.stop()


def test_hup_key_allow_option_changes(env):
    """A key's allow= options replace the global rules; a reload swaps the rule
    sets under tunnels whose streams are open (and checks in flight)."""
    echo = env.target(h.EchoServer())
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"],
                           authorized=[f'allow="127.0.0.1:{echo.port}" {env.client_pub}'])
    l_echo, l_sink = h.free_port(), h.free_port()
    env.start_client(srv.port, [(l_echo, "127.0.0.1", echo.port),
                                (l_sink, "127.0.0.1", sink.port)], tunnels=2)
    data = h.make_random(256 << 10, seed=60)
    check(try_upload(l_sink, data) == "", "the key reached a target outside its allow=")
    out, back = hashlib.sha256(), hashlib.sha256()
    s = h.connect(l_echo, timeout=t(20))
    echo_round(s, h.make_random(128 << 10, seed=61), out, back)
    env.write("server.authorized",
              f'allow="127.0.0.1:{echo.port}",allow="127.0.0.1:{sink.port}" {env.client_pub}\n',
              0o644)
    for i in range(3):  # a few swaps while the stream is open
        hup(srv)
        echo_round(s, h.make_random(128 << 10, seed=62 + i), out, back)
    s.shutdown(socket.SHUT_WR)
    check(h.recv_all(s) == b"", "echo sent more than it got")
    s.close()
    check(out.hexdigest() == back.hexdigest(), "echo stream across the reloads: hash differs")
    check(h.upload(l_sink, data, timeout=t(20)) == h.sha(data),
          "the key's new allow= option does not reach its target")
    check(sink.accepts == 1, f"sink accepts {sink.accepts}, expected 1")


def test_hup_client_forward_added_removed(env):
    echo = env.target(h.EchoServer())
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"127.0.0.1:{echo.port}", f"127.0.0.1:{sink.port}"])
    l_old, l_new, l_kept = h.free_port(), h.free_port(), h.free_port()
    conf = env.write("client.conf", f"forward {l_old}:127.0.0.1:{echo.port}\n"
                                    f"forward {l_kept}:127.0.0.1:{sink.port}\n")
    cli = env.start_client(srv.port, [], extra=["-c", conf])
    cli.wait_log(r"forwarding 127\.0\.0\.1:%d " % l_old, t(5))
    out, back = hashlib.sha256(), hashlib.sha256()
    s = h.connect(l_old, timeout=t(20))
    echo_round(s, h.make_random(256 << 10, seed=40), out, back)
    env.write("client.conf", f"forward {l_new}:127.0.0.1:{sink.port}\n"
                             f"forward {l_kept}:127.0.0.1:{sink.port}\n")
    mark = hup(cli)
    cli.wait_log(r"forwarding 127\.0\.0\.1:%d to" % l_new, t(5), since=mark)
    # Removed: no longer listening, but its connection runs on.
    try:
        h.connect(l_old, timeout=t(2)).close()
        check(False, "the removed forward still accepts connections")
    except ConnectionRefusedError:
        pass
    echo_round(s, h.make_random(256 << 10, seed=41), out, back)
    s.shutdown(socket.SHUT_WR)
    check(h.recv_all(s) == b"", "echo sent more than it got")
    s.close()
    check(out.hexdigest() == back.hexdigest(), "connection of the removed forward: hash differs")
    # Added and kept forwards work.
    for port in (l_new, l_kept):
        data = h.make_random(1 << 20)
        check(h.upload(port, data, timeout=t(20)) == h.sha(data),
              f"forward {port} after the reload: hash differs")
    check(cli.count(r"forwarding 127\.0\.0\.1:%d " % l_kept) == 1,
          "the kept forward was re-bound")
    # A forward that cannot bind refuses the whole reload.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    env.write("client.conf", f"forward {busy.getsockname()[1]}:127.0.0.1:{sink.port}\n")
    hup(cli, ok=False)
    busy.close()
    data = h.make_random(1 << 20)
    check(h.upload(l_new, data, timeout=t(20)) == h.sha(data),
          "after a refused reload: the running forward stopped")
    cli.stop()
    check(exit_counter(cli, "reloads") == 2 and exit_counter(cli, "refused") == 1,
          "client counters: expected 2 reloads, 1 refused")


def slow_source(size, chunk=128 << 10, pause=0.01):
    """A target that sends size bytes in paced chunks, then closes: a transfer
    that is still running when the test signals the daemon."""
    data = h.make_random(size, seed=50)

    def fn(c, idx, server):
        mv = memoryview(data)
        for i in range(0, size, chunk):
            c.sendall(mv[i:i + chunk])
            time.sleep(pause)
        c.shutdown(socket.SHUT_WR)
        server.add_result(idx)
    return data, fn


def test_sigterm_drains_large_transfer(env):
    data, fn = slow_source(64 << 20)
    src = env.target(h.FuncServer(fn))
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"127.0.0.1:{src.port}"], extra=["--drain-timeout", "120"])
    lport, lport_sink = h.free_port(), h.free_port()
    cli = env.start_client(srv.port, [(lport, "127.0.0.1", src.port),
                                      (lport_sink, "127.0.0.1", sink.port)], tunnels=2)
    result = {}
    started = threading.Event()

    def fetch():
        with h.connect(lport, timeout=t(60)) as s:
            s.shutdown(socket.SHUT_WR)
            hs = hashlib.sha256()
            n = 0
            while True:
                b = s.recv(256 << 10)
                if not b:
                    break
                n += len(b)
                hs.update(b)
                if n >= (4 << 20):
                    started.set()
            result["n"], result["sha"] = n, hs.hexdigest()
            result["done"] = time.monotonic()

    th = threading.Thread(target=fetch, daemon=True)
    th.start()
    check(started.wait(t(30)), "the transfer did not start")
    srv.proc.send_signal(signal.SIGTERM)
    srv.wait_log(r"draining: no longer accepting, GOAWAY sent on 1 sessions", t(5))
    check(not result.get("done"), "the transfer finished before SIGTERM: make it longer")
    # The client moves new work elsewhere: GOAWAY seen on its session.
    cli.wait_log(r"server sent GOAWAY", t(10))
    # A new server takes the port (the draining one no longer listens): the
    # client's replacement tunnels reach it, and a new connection goes there,
    # not to a draining tunnel.
    srv2 = env.start_server(allow=[f"127.0.0.1:{sink.port}"], port=srv.port, name="server2")
    cli.wait_log(r"tunnel \d+ to \S+ up", t(20), count=4)
    up = h.make_random(2 << 20, seed=51)
    check(h.upload(lport_sink, up, timeout=t(30)) == h.sha(up),
          "new connection during the drain: hash differs")
    check(srv.alive(), "the draining server exited with the transfer still running")
    check(srv2.count(r"127\.0\.0\.1:%d" % sink.port) > 0,
          "the new connection did not go to the new server")
    check(srv.count(r"127\.0\.0\.1:%d" % sink.port) == 0,
          "the new connection was opened on a draining tunnel")
    th.join(t(120))
    check(not th.is_alive(), "the transfer did not finish after SIGTERM")
    check(result["n"] == len(data) and result["sha"] == h.sha(data),
          f"transfer across the drain: {result['n']} of {len(data)} bytes, hash "
          f"{'matches' if result['sha'] == h.sha(data) else 'differs'}")
    rc, took = srv.stop(timeout=t(30))
    ended = time.monotonic()
    print(f"     transfer of {len(data) >> 20} MB finished during the drain; server exit {rc}")
    check(exit_counter(srv, "cut") == 0, "the drain cut streams")
    check(ended >= result["done"], "server exited before the transfer finished")


def endless_target(env):
    def endless(c, idx, server):
        chunk = b"e" * 65536
        try:
            while True:
                c.sendall(chunk)
                time.sleep(0.005)
        except OSError:
            pass
    return env.target(h.FuncServer(endless))


def test_second_sigterm_stops_at_once(env):
    src = endless_target(env)
    srv = env.start_server(allow=[f"127.0.0.1:{src.port}"], extra=["--drain-timeout", "30"])
    lport = h.free_port()
    env.start_client(srv.port, [(lport, "127.0.0.1", src.port)], tunnels=1)
    s = h.connect(lport, timeout=t(10))
    check(len(s.recv(65536)) > 0, "no data from the endless target")
    srv.proc.send_signal(signal.SIGTERM)
    srv.wait_log(r"draining: .* for 1 open streams", t(5))
    time.sleep(0.5)
    check(srv.alive(), "server exited on the first signal with a stream open")
    rc, took = srv.stop(signal.SIGTERM, timeout=t(10))
    print(f"     second SIGTERM: server exit {rc} after {took:.2f} s")
    check(took < 10, f"the second signal took {took:.1f} s (drain timeout is 30 s)")
    check(exit_counter(srv, "cut") == 1, f"streams cut: {exit_counter(srv, 'cut')}, expected 1")
    h.wait_closed(s, t(10))
    s.close()


def test_drain_timeout_cuts_endless_stream(env):
    src = endless_target(env)
    srv = env.start_server(allow=[f"127.0.0.1:{src.port}"], extra=["--drain-timeout", "2"])
    lport = h.free_port()
    cli = env.start_client(srv.port, [(lport, "127.0.0.1", src.port)], tunnels=1)
    s = h.connect(lport, timeout=t(10))
    check(len(s.recv(65536)) > 0, "no data from the endless target")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    srv.wait_log(r"--drain-timeout passed: cutting 1 open streams", t(20))
    rc, _ = srv.stop(timeout=t(10))
    took = time.monotonic() - t0
    print(f"     drain timeout 2 s: server exit {rc} {took:.2f} s after SIGTERM")
    check(took >= 1.5, f"server exited {took:.2f} s after SIGTERM, before --drain-timeout 2")
    check(exit_counter(srv, "cut") == 1, f"streams cut: {exit_counter(srv, 'cut')}, expected 1")
    h.wait_closed(s, t(10))
    s.close()
    # The client side: the same on its own drain.
    srv2 = env.start_server(allow=[f"127.0.0.1:{src.port}"], name="server2")
    lport2 = h.free_port()
    cli2 = env.start_client(srv2.port, [(lport2, "127.0.0.1", src.port)], tunnels=1,
                            name="client2", extra=["--drain-timeout", "1"])
    s = h.connect(lport2, timeout=t(10))
    check(len(s.recv(65536)) > 0, "no data from the endless target")
    cli2.proc.send_signal(signal.SIGTERM)
    cli2.wait_log(r"draining: listeners closed, GOAWAY sent on 1 sessions", t(5))
    try:
        h.connect(lport2, timeout=t(2)).close()
        check(False, "the draining client still accepts connections")
    except ConnectionRefusedError:
        pass
    rc, _ = cli2.stop(timeout=t(15))
    check(exit_counter(cli2, "cut") == 1,
          f"client streams cut: {exit_counter(cli2, 'cut')}, expected 1")
    s.close()
    cli.stop()


if __name__ == "__main__":
    h.main([test_hup_adds_allow_rule_stream_keeps_flowing,
            test_hup_broken_config_refused_old_kept,
            test_hup_removed_key_loses_tunnels,
            test_hup_removed_key_frees_its_reverse_listener,
            test_hup_key_allow_option_changes,
            test_hup_client_forward_added_removed,
            test_sigterm_drains_large_transfer,
            test_second_sigterm_stops_at_once,
            test_drain_timeout_cuts_endless_stream], __doc__)
