#!/usr/bin/env python3
"""The server's allow list: a target outside it is refused before any
connection is made (the local connection closes promptly, the target never
sees an accept, the server logs client key and target); loopback is not
covered by broad rules; a hostname rule works for that name; a target that
refuses closes the local connection promptly. A refusal costs the stream,
not the tunnel."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

PROMPT = 3.0  # seconds: "closed promptly"


def closes_promptly(lport, what, payload=b"GET / HTTP/1.0\r\n\r\n"):
    try:
        s = h.connect(lport, timeout=t(5))
    except ConnectionResetError:
        # Accepted and reset before connect() returned: as prompt as it gets.
        print(f"     {what}: local connection reset during connect")
        return 0.0
    try:
        s.sendall(payload)
    except OSError:
        pass  # already reset: fine
    took, how = h.wait_closed(s, PROMPT)
    s.close()
    print(f"     {what}: local connection closed after {took * 1000:.0f} ms ({how})")
    return took


def refusal_re(env, target):
    # The server may add the key's comment from authorized keys: "KEY (comment)".
    return (r"refused stream (\d+) from client %s(?: \([^)]*\))? to %s: (.*)$"
            % (re.escape(env.client_pub), re.escape(target)))


def test_target_not_allowed(env):
    recorder = env.target(h.RecorderServer())
    sink = env.target(h.SinkServer())
    # A rule for another port on the same host, and a broad rule that must
    # not cover loopback.
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}", "0.0.0.0/0",
                                  f"127.0.0.1:{recorder.port + 1 if recorder.port < 65535 else 1}"])
    l_bad, l_ok = h.free_port(), h.free_port()
    cli = env.start_client(srv.port, [(l_bad, "127.0.0.1", recorder.port),
                                      (l_ok, "127.0.0.1", sink.port)])
    for i in range(3):
        time.sleep(h.LOG_THROTTLE_S)  # one refusal line a second
        mark = srv.mark()
        closes_promptly(l_bad, f"not allowed #{i}")
        m = srv.wait_log(refusal_re(env, f"127.0.0.1:{recorder.port}"), t(5), since=mark)
        print(f"     server: {m.group(0)}")
    # Many at once, interleaved with an allowed transfer on the same tunnels.
    data = h.make_random(2 << 20)
    jobs = [lambda: closes_promptly(l_bad, "concurrent") for _ in range(8)]
    jobs.append(lambda: h.upload(l_ok, data, timeout=t(20)))
    res = h.parallel(jobs, timeout=t(20))
    check(res[-1] == h.sha(data), "allowed upload next to refused streams: hash differs")
    time.sleep(0.5)
    check(recorder.accepts == 0,
          f"the refused target's listener saw {recorder.accepts} connections")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a refusal took a tunnel down")
    srv.stop()
    refused = srv.summary()["targets"]
    check(refused == 11, f"expected 11 refused targets in the server's summary, got {refused}")


def test_hostname_rule(env):
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"localhost:{sink.port}"])
    l_name, l_addr = h.free_port(), h.free_port()
    env.start_client(srv.port, [(l_name, "localhost", sink.port),
                                (l_addr, "127.0.0.1", sink.port)])
    data = h.make_text(3 << 20, seed=5)
    reply = h.upload(l_name, data, timeout=t(20))
    check(reply == h.sha(data), f"via localhost:{sink.port}: sink hash {reply}, "
          f"expected {h.sha(data)}")
    check(sink.accepts == 1, f"sink accepts {sink.accepts}")
    # The rule names localhost: asking for the address itself is another
    # target, and a loopback one, so it is refused.
    mark = srv.mark()
    closes_promptly(l_addr, "127.0.0.1 with only a localhost rule")
    srv.wait_log(refusal_re(env, f"127.0.0.1:{sink.port}"), t(5), since=mark)
    time.sleep(0.3)
    check(sink.accepts == 1, f"sink accepts {sink.accepts} after the refused stream")


def test_localhost_names_resolved_locally(env):
    """RFC 6761: a name under .localhost is loopback, answered by the server
    itself (never sent to DNS, where it would not resolve or, worse, would
    resolve to whatever a resolver says). A CIDR rule for the port that does
    not cover loopback still refuses it."""
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"*.localhost:{sink.port}", f"198.18.0.0/15:{sink.port + 1}"])
    l_sub, l_other = h.free_port(), h.free_port()
    env.start_client(srv.port, [(l_sub, "App.Localhost.", sink.port),
                                (l_other, "x.localhost", sink.port + 1)])
    data = h.make_random(1 << 20, seed=12)
    reply = h.upload(l_sub, data, timeout=t(20))
    check(reply == h.sha(data), f"via App.Localhost.:{sink.port}: sink hash {reply}")
    m = srv.wait_log(r"connected to App\.Localhost\.:%d \((127\.0\.0\.1|\[::1\]):%d\)"
                     % (sink.port, sink.port), t(5))
    print(f"     server: {m.group(0)}")
    mark = srv.mark()
    closes_promptly(l_other, "x.localhost under a CIDR rule")
    m = srv.wait_log(r"refused stream \d+ .* to x\.localhost:%d.*: no rule permits"
                     % (sink.port + 1), t(5), since=mark)
    print(f"     server: {m.group(0)}")
    check(srv.count(r"host unknown|not known|nodename") == 0,
          "a localhost name went to a resolver")


def test_target_refuses(env):
    closed = env.target(h.RefusingPort())
    sink = env.target(h.SinkServer())
    srv = env.start_server(allow=[f"127.0.0.1:{closed.port}", f"127.0.0.1:{sink.port}"])
    l_closed, l_ok = h.free_port(), h.free_port()
    cli = env.start_client(srv.port, [(l_closed, "127.0.0.1", closed.port),
                                      (l_ok, "127.0.0.1", sink.port)])
    for i in range(3):
        time.sleep(h.LOG_THROTTLE_S)  # one line a second per kind
        mark = srv.mark()
        closes_promptly(l_closed, f"target refuses #{i}")
        srv.wait_log(r"stream \d+ from client %s.*127\.0\.0\.1:%d.*[Rr]efused"
                     % (re.escape(env.client_pub), closed.port), t(5), since=mark)
    data = h.make_random(1 << 20)
    check(h.upload(l_ok, data, timeout=t(20)) == h.sha(data),
          "upload after refused targets: hash differs")
    check(cli.count(r"tunnel \d+ to \S+ down") == 0, "a refused target took a tunnel down")


if __name__ == "__main__":
    h.main([test_target_not_allowed, test_hostname_rule, test_localhost_names_resolved_locally,
            test_target_refuses], __doc__)
