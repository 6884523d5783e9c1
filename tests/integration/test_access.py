#!/usr/bin/env python3
"""Access per client key: options in the server's authorized-keys file.

- allow="RULE": a key with allow= options reaches only those targets, not
  the server's --allow rules (which still serve keys without options).
- allow-listen="RULE": likewise for reverse listeners (--allow-listen).
- from="CIDR,...": the key may connect only from those addresses; a tunnel
  from elsewhere is closed without an answer, counted and logged through the
  throttled limit line. The daemon client cannot pick its source address,
  so wm_attack (the real handshake, real key) connects from 127.0.0.2 with
  --bind, next to a real client connecting from 127.0.0.1.
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

PROMPT = 3.0  # seconds: a refused stream closes its local connection this fast


def attack_tool(env):
    for rel in ("tests/integration/wm_attack", "wm_attack"):
        p = os.path.join(env.args.bindir, rel)
        if os.access(p, os.X_OK):
            return p
    raise h.TestFailure(f"wm_attack not built in {env.args.bindir}")


def wm_attack(env, srv, key, cmd, *args):
    """Runs wm_attack; returns (exit code, its 'result:' line)."""
    argv = [attack_tool(env), cmd, "--server", f"127.0.0.1:{srv.port}", "--server-key",
            env.server_key + ".pub", "--key", key, "--wait", str(int(t(5)))] + list(args)
    rc, out, err = h.run_cmd(argv, timeout=t(30))
    m = re.search(r"^result: (.*)$", out, re.M)
    check(m is not None, f"wm_attack {cmd}: no result line (rc {rc}): {out!r} {err!r}")
    return rc, m.group(1)


def refused_quickly(lport, what):
    """The local connection to a refused forward closes within PROMPT."""
    try:
        s = h.connect(lport, timeout=t(5))
    except ConnectionResetError:
        return
    try:
        s.sendall(b"hello\n")
    except OSError:
        pass
    took, how = h.wait_closed(s, t(PROMPT))
    s.close()
    print(f"     {what}: local connection closed after {took * 1000:.0f} ms ({how})")


def test_key_allow_replaces_global_rules(env):
    t1 = env.target(h.SinkServer())
    t2 = env.target(h.SinkServer())
    key_b, pub_b = env.keygen("b.key")
    pub_a = env.client_pub
    # The global rules permit both targets; key A's own rules only target 1
    # (by address and by name).
    srv = env.start_server(
        allow=[f"127.0.0.1:{t1.port}", f"127.0.0.1:{t2.port}", f"localhost:{t2.port}"],
        authorized=[f'allow="127.0.0.1:{t1.port}",allow="localhost:{t1.port}" {pub_a}',
                    pub_b])
    la1, la2, la3, la4 = (h.free_port() for _ in range(4))
    lb1, lb2 = h.free_port(), h.free_port()
    env.start_client(srv.port, [(la1, "127.0.0.1", t1.port), (la2, "127.0.0.1", t2.port),
                                (la3, "localhost", t2.port), (la4, "localhost", t1.port)],
                     name="client_a")
    env.start_client(srv.port, [(lb1, "127.0.0.1", t1.port), (lb2, "127.0.0.1", t2.port)],
                     key=key_b, name="client_b")
    data = h.make_text(1 << 20, seed=3)
    check(h.upload(la1, data, timeout=t(20)) == h.sha(data), "key A to target 1: hash differs")
    check(h.upload(la4, data, timeout=t(20)) == h.sha(data),
          "key A to target 1 by name: hash differs")
    print("     key A (allow= target 1) reaches target 1 by address and by name")
    accepts_before = t2.accepts
    for lport, what, target in ((la2, "address", f"127.0.0.1:{t2.port}"),
                                (la3, "name", f"localhost:{t2.port}")):
        mark = srv.mark()
        refused_quickly(lport, f"key A to target 2 by {what}")
        m = srv.wait_log(r"refused stream \d+ from client %s.* to %s.*: (.*)$"
                         % (re.escape(pub_a), re.escape(target)), t(5), since=mark)
        print(f"     server: ...{m.group(0)[-90:]}")
        check("allow= option of its key" in m.group(0) or "no rule permits" in m.group(0),
              f"refusal line does not say which rules: {m.group(0)!r}")
    time.sleep(0.3)
    check(t2.accepts == accepts_before,
          f"target 2 saw {t2.accepts - accepts_before} connections from key A")
    for lport, what in ((lb1, "target 1"), (lb2, "target 2")):
        check(h.upload(lport, data, timeout=t(20)) == h.sha(data),
              f"key B (no options) to {what}: hash differs")
    print("     key B (no options) reaches both through the global --allow rules")


def test_key_allow_listen_replaces_global_rules(env):
    origin = env.target(h.EchoServer())
    key_b, pub_b = env.keygen("b.key")
    pub_a = env.client_pub
    sp1, sp2 = h.free_port(), h.free_port()
    while sp2 == sp1:
        sp2 = h.free_port()
    srv = env.start_server(allow=[], extra=["--allow-listen", f"127.0.0.1:{sp2}"],
                           authorized=[f'allow-listen="127.0.0.1:{sp1}" {pub_a}', pub_b])
    cli_a = h.start_frontend_client(env, srv.port, name="client_a",
                                    reverse=[f"{sp1}:127.0.0.1:{origin.port}",
                                             f"{sp2}:127.0.0.1:{origin.port}"])
    cli_a.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp1, t(10))
    cli_a.wait_log(r"reverse forward 127\.0\.0\.1:%d refused by the server" % sp2, t(10))
    srv.wait_log(r"asked to listen on 127\.0\.0\.1:%d: no allow-listen= option of its key"
                 % sp2, t(5))
    print("     key A (allow-listen= port 1): port 1 listens, port 2 (global rule) refused")
    cli_b = h.start_frontend_client(env, srv.port, name="client_b", key=key_b,
                                    reverse=[f"{sp1}:127.0.0.1:{origin.port}",
                                             f"{sp2}:127.0.0.1:{origin.port}"])
    cli_b.wait_log(r"reverse forward: server listens on 127\.0\.0\.1:%d" % sp2, t(10))
    cli_b.wait_log(r"reverse forward 127\.0\.0\.1:%d refused by the server" % sp1, t(10))
    print("     key B (no options): port 2 (global --allow-listen) listens, port 1 refused")
    for sp in (sp1, sp2):
        with h.connect(sp) as s:
            s.sendall(b"ping\n")
            s.shutdown(socket.SHUT_WR)
            check(h.recv_all(s, limit=100) == b"ping\n", f"echo through reverse {sp} differs")


def test_key_from(env):
    sink = env.target(h.SinkServer())
    key_c, pub_c = env.keygen("c.key")  # from 127.0.0.2 only
    key_d, pub_d = env.keygen("d.key")  # from 127.0.0.1 only
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"],
                           authorized=[f'from="127.0.0.2/32" {pub_c}',
                                       f'from="198.18.0.0/15,127.0.0.1" {pub_d}'])
    # Key D from 127.0.0.1: accepted, a stream goes through.
    ld = h.free_port()
    env.start_client(srv.port, [(ld, "127.0.0.1", sink.port)], key=key_d, name="client_d")
    data = h.make_random(256 << 10, seed=1)
    check(h.upload(ld, data, timeout=t(20)) == h.sha(data), "key D from 127.0.0.1: differs")
    print("     key D (from=198.18.0.0/15,127.0.0.1) from 127.0.0.1: tunnels up, upload intact")

    # Key C from 127.0.0.1 with the real client: every tunnel refused unanswered.
    lc = h.free_port()
    mark = srv.mark()
    cli_c = env.start_client(srv.port, [(lc, "127.0.0.1", sink.port)], key=key_c,
                             name="client_c", wait=False)
    m = srv.wait_log(r"limit client key source address \(from=\) hit: client %s.* from "
                     r"127\.0\.0\.1:\d+ \((?:.*, )?(\d+) in all\)" % re.escape(pub_c), t(10), since=mark)
    print(f"     server: ...{m.group(0)[-100:]}")
    cli_c.wait_log(r"server closed the connection during the handshake", t(10))
    time.sleep(1.5)  # the client retries: the log stays at a line a second
    text = srv.log_since(mark)
    check(not re.search(r"tunnel from \S+ up: client %s" % re.escape(pub_c), text),
          "a tunnel of key C from 127.0.0.1 came up")
    check(cli_c.count(r"tunnel \d+ to \S+ up") == 0, "client C reports a tunnel up")
    cli_c.stop()

    # Key C with wm_attack: from 127.0.0.1 refused, from 127.0.0.2 up and a stream opens.
    rc, res = wm_attack(env, srv, key_c, "handshake", "--bind", "127.0.0.1")
    check(rc == 3 and res.startswith("refused"),
          f"key C from 127.0.0.1 (wm_attack): rc {rc}, {res!r}; expected refused")
    rc, res = wm_attack(env, srv, key_c, "flood", "--bind", "127.0.0.2", "--target",
                        f"127.0.0.1:{sink.port}", "--count", "1")
    check(re.search(r"\bok=1\b", res) is not None,
          f"key C from 127.0.0.2 (wm_attack flood of 1 stream): {res!r}; expected ok=1")
    srv.wait_log(r"tunnel from 127\.0\.0\.2:\d+ up: client %s" % re.escape(pub_c), t(5))
    print(f"     key C (from=127.0.0.2/32): from 127.0.0.1 refused, from 127.0.0.2 {res}")
    refused = int(re.findall(r"\((?:.*, )?(\d+) in all\)", srv.log_text())[-1])
    srv.stop()
    m = re.search(r"(\d+) tunnels from outside their key's from=", srv.log_text())
    check(m is not None and int(m.group(1)) >= refused >= 2,
          f"shutdown summary: {m and m.group(0)!r}; expected at least {refused} from= refusals")
    print(f"     shutdown summary: {m.group(0)}")


if __name__ == "__main__":
    h.main([test_key_allow_replaces_global_rules, test_key_allow_listen_replaces_global_rules,
            test_key_from], __doc__.splitlines()[0])
