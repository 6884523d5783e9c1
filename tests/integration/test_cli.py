#!/usr/bin/env python3
"""Command-line behaviour of wanmux-client, wanmux-server and wanmux-keygen:
--help, usage errors (exit 2), runtime errors (exit 1) with messages that
name the culprit, config files with command-line precedence, keygen never
overwriting, and clean exit 0 on SIGTERM / SIGINT within 2 s."""

import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

STOP_LIMIT = 2.0  # seconds from SIGTERM to exit


def nonempty_lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def client_argv(env, server_port=None, extra=()):
    return [env.bins.client, "--server", f"127.0.0.1:{server_port or h.free_port()}",
            "--key", env.client_key, "--server-key", env.server_key + ".pub",
            "--forward", f"{h.free_port()}:127.0.0.1:9"] + list(extra)


def server_argv(env, extra=()):
    auth = env.write("auth", env.client_pub + "\n", 0o644)
    return [env.bins.server, "--listen", f"127.0.0.1:{h.free_port()}", "--key",
            env.server_key, "--authorized-keys", auth, "--allow", "127.0.0.1:9"] + list(extra)


def test_help(env):
    for b in (env.bins.client, env.bins.server, env.bins.keygen):
        name = os.path.basename(b)
        for opt in ("--help", "-h"):
            rc, out, err = h.run_cmd([b, opt])
            check(rc == 0, f"{name} {opt}: exit {rc}, expected 0 (stderr: {err.strip()})")
            check(re.search(r"usage|SYNOPSIS", out, re.I) and name in out,
                  f"{name} {opt}: no usage on stdout: {out[:200]!r}")
    for b in (env.bins.client, env.bins.server):
        rc, out, err = h.run_cmd([b, "--version"])
        check(rc == 0 and re.search(r"\d+\.\d+", out + err),
              f"{os.path.basename(b)} --version: rc {rc}, output {out + err!r}")


def test_usage_errors(env):
    cases = [
        ("client unknown option", [env.bins.client, "--frobnicate", "1"], "--frobnicate"),
        ("server unknown option", [env.bins.server, "--frobnicate"], "--frobnicate"),
        ("client unknown short option", [env.bins.client, "-Z"], "-Z"),
        ("client missing --key", [a for a in client_argv(env) if a != "--key"
                                  and a != env.client_key], "--key"),
        ("server missing --key", [a for a in server_argv(env) if a != "--key"
                                  and a != env.server_key], "--key"),
        ("client option without value", client_argv(env) + ["--tunnels"], "--tunnels"),
        ("client bad --tunnels", client_argv(env, extra=["--tunnels", "0"]), "tunnels"),
        ("client bad --compress", client_argv(env, extra=["--compress", "zstd"]), "compress"),
        ("client bad --forward", client_argv(env, extra=["--forward", "nonsense"]), "nonsense"),
        ("server bad --allow", server_argv(env, extra=["--allow", "300.1.2.3/99"]), "300.1.2.3"),
        ("keygen without file", [env.bins.keygen], "FILE"),
    ]
    for what, argv, needle in cases:
        rc, out, err = h.run_cmd(argv)
        check(rc == 2, f"{what}: exit {rc}, expected 2; stderr: {err.strip()!r}")
        lines = nonempty_lines(err)
        naming = [ln for ln in lines if needle.lower() in ln.lower()]
        check(naming, f"{what}: stderr does not name {needle!r}: {err.strip()!r}")
        if what.startswith("keygen"):
            continue
        # One line saying what is wrong, at most a "Try --help" hint after
        # it, not the whole manual.
        check(len(naming) == 1 and len(lines) <= 2 and lines[0] == naming[0],
              f"{what}: expected one line naming {needle!r} (plus at most a hint), "
              f"got {lines!r}")
        check(not re.search(r"SYNOPSIS|OPTIONS", err), f"{what}: usage dumped on stderr")


def test_key_permissions(env):
    os.chmod(env.client_key, 0o644)
    os.chmod(env.server_key, 0o644)
    for what, argv, path in [("client", client_argv(env), env.client_key),
                             ("server", server_argv(env), env.server_key)]:
        rc, out, err = h.run_cmd(argv)
        check(rc == 1, f"{what} with a 0644 key: exit {rc}, expected 1; stderr {err.strip()!r}")
        check(path in err or os.path.basename(path) in err,
              f"{what}: message does not name {path}: {err.strip()!r}")
        check(re.search(r"permission|mode|readable|0644|chmod", err, re.I),
              f"{what}: message does not mention permissions: {err.strip()!r}")
    os.chmod(env.client_key, 0o600)
    os.chmod(env.server_key, 0o600)
    missing = env.path("nonexistent.key")
    argv = client_argv(env)
    argv[argv.index(env.client_key)] = missing
    rc, out, err = h.run_cmd(argv)
    check(rc == 1 and missing in err, f"client with a missing key: rc {rc}, {err.strip()!r}")


def test_port_in_use(env):
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        argv = server_argv(env)
        argv[argv.index("--listen") + 1] = f"127.0.0.1:{port}"
        rc, out, err = h.run_cmd(argv)
        check(rc == 1, f"server on a busy port: exit {rc}, expected 1; {err.strip()!r}")
        check(f"127.0.0.1:{port}" in err, f"server: message does not name "
              f"127.0.0.1:{port}: {err.strip()!r}")
        argv = client_argv(env)
        argv[argv.index("--forward") + 1] = f"{port}:127.0.0.1:9"
        rc, out, err = h.run_cmd(argv)
        check(rc == 1, f"client forward on a busy port: exit {rc}, expected 1; {err.strip()!r}")
        check(f"127.0.0.1:{port}" in err, f"client: message does not name "
              f"127.0.0.1:{port}: {err.strip()!r}")
    finally:
        busy.close()


def test_config_file(env):
    sink_a = env.target(h.SinkServer())
    sink_b = env.target(h.SinkServer())
    p_file, p_cmd = h.free_port(), h.free_port()
    auth = env.write("clients", f"# test clients\n{env.client_pub} cfg test\n", 0o644)
    scfg = env.write("server.conf", f"""# wanmux-server test config
listen 127.0.0.1:{p_file}
key {env.server_key}
authorized-keys {auth}
allow 127.0.0.1:{sink_a.port}
log-level debug
""", 0o644)
    # File only.
    srv = h.Daemon("server-cfg", [env.bins.server, "-c", scfg], env.path("server-cfg.log"))
    env.daemons.append(srv)
    srv.wait_log(r"listening on 127\.0\.0\.1:%d" % p_file, t(10))
    l_a = h.free_port()
    ccfg = env.write("client.conf", f"""# wanmux-client test config
server 127.0.0.1:{p_file}
key {env.client_key}
server-key {env.server_key}.pub
forward {l_a}:127.0.0.1:{sink_a.port}
tunnels 1
""", 0o644)
    cli = h.Daemon("client-cfg", [env.bins.client, "--config", ccfg],
                   env.path("client-cfg.log"))
    env.daemons.append(cli)
    cli.wait_log(r"tunnel 0 to \S+ up", t(10))
    data = h.make_text(1 << 20)
    check(h.upload(l_a, data, timeout=t(20)) == h.sha(data), "config-file pair: hash differs")
    cli.stop()
    st = h.parse_stats(cli.stats_line)
    check(st["tunnels"] == 1, f"config 'tunnels 1': stats tunnels={st['tunnels']}")
    srv.stop()

    # Command line over file: --listen moves the server, --allow replaces
    # the file's allow list, --tunnels overrides.
    srv = h.Daemon("server-cfg2", [env.bins.server, "-c", scfg, "--listen",
                                   f"127.0.0.1:{p_cmd}", "--allow",
                                   f"127.0.0.1:{sink_b.port}"], env.path("server-cfg2.log"))
    env.daemons.append(srv)
    srv.wait_log(r"listening on 127\.0\.0\.1:%d" % p_cmd, t(10))
    try:
        socket.create_connection(("127.0.0.1", p_file), timeout=2).close()
        raise h.TestFailure(f"server also listens on the config file's port {p_file}")
    except ConnectionRefusedError:
        pass
    l_a, l_b = h.free_port(), h.free_port()
    cli = h.Daemon("client-cfg2", [env.bins.client, "-c", ccfg, "--server",
                                   f"127.0.0.1:{p_cmd}", "--tunnels", "3", "--forward",
                                   f"{l_a}:127.0.0.1:{sink_a.port}", "--forward",
                                   f"{l_b}:127.0.0.1:{sink_b.port}", "--log-level", "debug"],
                   env.path("client-cfg2.log"))
    env.daemons.append(cli)
    cli.wait_log(r"tunnel \d+ to \S+ up", t(10), count=3)
    check(h.upload(l_b, data, timeout=t(20)) == h.sha(data), "overridden allow: hash differs")
    mark = srv.mark()
    try:
        with h.connect(l_a, timeout=t(5)) as s:
            s.sendall(b"x")
            h.wait_closed(s, 3)
    except ConnectionResetError:
        pass
    srv.wait_log(r"refused stream \d+ .* to 127\.0\.0\.1:%d" % sink_a.port, t(5), since=mark)
    cli.stop()
    st = h.parse_stats(cli.stats_line)
    check(st["tunnels"] == 3, f"--tunnels 3 over 'tunnels 1': stats tunnels={st['tunnels']}")

    bad = env.write("bad.conf", "listen 127.0.0.1:1\nfrobnicate yes\n", 0o644)
    rc, out, err = h.run_cmd([env.bins.server, "-c", bad])
    check(rc == 2 and "frobnicate" in err, f"bad config line: rc {rc}, {err.strip()!r}")


def test_keygen_no_overwrite(env):
    path = env.path("k")
    rc, out, err = h.run_cmd([env.bins.keygen, path])
    check(rc == 0, f"keygen: rc {rc} {err}")
    check(os.stat(path).st_mode & 0o777 == 0o600, f"key mode {oct(os.stat(path).st_mode)}")
    pub = out.strip()
    with open(path + ".pub") as f:
        check(f.read().split()[0] == pub, "FILE.pub differs from the printed key")
    before = open(path, "rb").read(), open(path + ".pub", "rb").read()
    rc, out, err = h.run_cmd([env.bins.keygen, path])
    check(rc != 0, "keygen overwrote an existing key (exit 0)")
    check(path in err or "exist" in err.lower(), f"keygen refusal message: {err.strip()!r}")
    after = open(path, "rb").read(), open(path + ".pub", "rb").read()
    check(before == after, "existing key files changed")
    # Only FILE.pub exists: must not be clobbered either.
    other = env.path("k2")
    open(other + ".pub", "w").write("precious\n")
    rc, out, err = h.run_cmd([env.bins.keygen, other])
    check(rc != 0 and open(other + ".pub").read() == "precious\n",
          f"keygen overwrote an existing FILE.pub (rc {rc})")
    # PSK files too.
    psk = env.path("psk")
    rc, _, err = h.run_cmd([env.bins.keygen, "--psk", psk])
    check(rc == 0 and os.stat(psk).st_mode & 0o777 == 0o600, f"keygen --psk: rc {rc} {err}")
    before = open(psk, "rb").read()
    rc, _, _ = h.run_cmd([env.bins.keygen, "--psk", psk])
    check(rc != 0 and open(psk, "rb").read() == before, "keygen --psk overwrote a PSK")


def test_signals_exit_zero(env):
    # An endless download never drains: a short --drain-timeout bounds the wait.
    drain = ["--drain-timeout", "500ms"]

    def endless(c, idx, server):
        chunk = b"z" * 65536
        try:
            while True:
                c.sendall(chunk)
        except OSError:
            pass

    src = env.target(h.FuncServer(endless))
    for sig in (signal.SIGTERM, signal.SIGINT):
        name = signal.Signals(sig).name
        srv = env.start_server(allow=[f"127.0.0.1:{src.port}"], name=f"server-{name}",
                               extra=drain)
        lport = h.free_port()
        cli = env.start_client(srv.port, [(lport, "127.0.0.1", src.port)],
                               name=f"client-{name}", extra=drain)
        # Busy: a download in progress and an idle connection.
        busy = h.connect(lport, timeout=t(10))
        busy.recv(65536)
        idle = h.connect(lport, timeout=t(10))
        rc, took = cli.stop(sig, timeout=t(10))
        print(f"     client exit {rc} {took:.2f} s after {name}")
        check(took < STOP_LIMIT, f"client took {took:.2f} s to exit after {name}")
        check(cli.stats_line is not None, f"client logged no stats line after {name}")
        rc, took = srv.stop(sig, timeout=t(10))
        print(f"     server exit {rc} {took:.2f} s after {name}")
        check(took < STOP_LIMIT, f"server took {took:.2f} s to exit after {name}")
        busy.close()
        idle.close()
    # Idle pair: server first this time, client keeps retrying and still stops.
    srv = env.start_server(allow=[f"127.0.0.1:{src.port}"], name="server-idle")
    cli = env.start_client(srv.port, [(h.free_port(), "127.0.0.1", src.port)],
                           name="client-idle")
    rc, took = srv.stop()
    check(took < STOP_LIMIT, f"idle server took {took:.2f} s")
    time.sleep(0.5)
    rc, took = cli.stop()
    check(took < STOP_LIMIT, f"client without server took {took:.2f} s")


if __name__ == "__main__":
    h.main([test_help, test_usage_errors, test_key_permissions, test_port_in_use,
            test_config_file, test_keygen_no_overwrite, test_signals_exit_zero], __doc__)
