#!/usr/bin/env python3
"""Installing wanmux: `cmake --install BINDIR --prefix /usr` into a DESTDIR
gives the programs (daemons in sbin, keygen in bin), man pages in the
sections their .TH lines claim, the systemd units with ExecStart paths that
exist in the tree, the sysusers.d entry for the wanmux user and the example
configs in /etc/wanmux; `systemd-analyze verify` accepts the installed units
without a single diagnostic; the installed example configs parse and run a
pair that carries data; and the daemons tell the service manager READY=1
once they listen and STOPPING=1 when a signal stops them (Type=notify).

Exits 77 (skipped) when systemd-analyze is missing and everything else
passed."""

import os
import re
import shutil
import signal
import socket
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

UNITDIR = "usr/lib/systemd/system"
UNITS = ("wanmux-server.service", "wanmux-client.service", "wanmux-client@.service")
EXPECTED = {
    # path under DESTDIR: must be executable
    "usr/sbin/wanmux-server": True,
    "usr/sbin/wanmux-client": True,
    "usr/bin/wanmux-keygen": True,
    "usr/share/man/man8/wanmux-server.8": False,
    "usr/share/man/man8/wanmux-client.8": False,
    "usr/share/man/man1/wanmux-keygen.1": False,
    "usr/lib/sysusers.d/wanmux.conf": False,
    "etc/wanmux/server.conf": False,
    "etc/wanmux/client.conf": False,
}
for _u in UNITS:
    EXPECTED[f"{UNITDIR}/{_u}"] = False

skipped = []  # reasons, for the exit status


def install(env):
    """Runs cmake --install into a fresh DESTDIR; returns its path."""
    dest = env.path("destdir")
    rc, out, err = h.run_cmd(["cmake", "--install", env.args.bindir, "--prefix", "/usr"],
                             env=dict(os.environ, DESTDIR=dest), timeout=t(120))
    check(rc == 0, f"cmake --install failed ({rc}): {(err or out).strip()[-800:]}")
    return dest


def unit_values(path, key):
    with open(path) as f:
        return re.findall(r"^%s=(.*)$" % re.escape(key), f.read(), re.M)


def test_install_tree(env):
    dest = install(env)
    missing = [p for p in EXPECTED if not os.path.isfile(os.path.join(dest, p))]
    check(not missing, f"not installed: {missing}")
    for p, exe in EXPECTED.items():
        m = stat.S_IMODE(os.stat(os.path.join(dest, p)).st_mode)
        check(bool(m & 0o111) == exe and m & 0o004,
              f"{p}: mode {oct(m)} ({'should' if exe else 'should not'} be executable, "
              f"world-readable)")
    for p in EXPECTED:
        if "/man/man" in p:
            with open(os.path.join(dest, p)) as f:
                th = re.search(r"^\.TH \S+ (\S+)", f.read(), re.M)
            section = p.rsplit(".", 1)[1]
            check(th and th.group(1) == section,
                  f"{p}: .TH says section {th and th.group(1)}, installed in man{section}")
    for u in UNITS:
        path = os.path.join(dest, UNITDIR, u)
        execs = unit_values(path, "ExecStart")
        check(len(execs) == 1, f"{u}: ExecStart lines {execs}")
        prog, _, args = execs[0].partition(" ")
        check(os.access(dest + prog, os.X_OK), f"{u}: ExecStart program {prog} not in the tree")
        conf = re.search(r"--config (\S+)", args)
        check(conf, f"{u}: ExecStart names no --config: {execs[0]}")
        want = "/etc/wanmux/client-%i.conf" if "@" in u else \
            "/etc/wanmux/" + u.split("-", 1)[1].replace(".service", ".conf")
        check(conf.group(1) == want, f"{u}: --config {conf.group(1)}, expected {want}")
        if "@" not in u:
            check(os.path.isfile(dest + conf.group(1)), f"{u}: {conf.group(1)} not installed")
        for key, val in (("Type", "notify"), ("User", "wanmux"), ("ProtectSystem", "strict"),
                         ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                         ("ProtectHome", "yes"), ("StateDirectory", "wanmux"),
                         ("ConfigurationDirectory", "wanmux"), ("CapabilityBoundingSet", "")):
            check(unit_values(path, key) == [val],
                  f"{u}: {key}={unit_values(path, key)}, expected [{val!r}]")
    with open(os.path.join(dest, "usr/lib/sysusers.d/wanmux.conf")) as f:
        users = [ln.split() for ln in f if ln.strip() and not ln.startswith("#")]
    check(any(u[:2] == ["u", "wanmux"] for u in users), f"sysusers: no 'u wanmux' line: {users}")
    print(f"     {sum(len(fs) for _, _, fs in os.walk(dest))} files installed under DESTDIR")


def test_units_verify(env):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skipped.append("systemd-analyze not found (apt-get install systemd)")
        print(f"     SKIPPED: {skipped[-1]}")
        return
    dest = install(env)
    # verify checks that ExecStart exists on this host, so the copies point
    # into DESTDIR (test_install_tree checks the real paths); man pages are
    # found through MANPATH. A template is verified through an instance.
    vdir = env.path("verify")
    os.mkdir(vdir)
    names = []
    for u in UNITS:
        with open(os.path.join(dest, UNITDIR, u)) as f:
            text = f.read()
        text = re.sub(r"^ExecStart=(/\S+)", lambda m: "ExecStart=" + dest + m.group(1), text,
                      flags=re.M)
        name = u.replace("@.", "@branch1.")
        with open(os.path.join(vdir, name), "w") as f:
            f.write(text)
        names.append(os.path.join(vdir, name))
    # verify runs man(1) for each Documentation=man: link; without man-db
    # that check cannot run, and only that check is left out.
    man = [] if shutil.which("man") else ["--man=no"]
    if man:
        print("     man not installed: verify --man=no (apt-get install man-db)")
    rc, out, err = h.run_cmd([analyze, "verify"] + man + names, timeout=t(60),
                             env=dict(os.environ, MANPATH=os.path.join(dest, "usr/share/man")))
    # Unknown keys and bad values are only warnings (exit 0): any output fails.
    check(rc == 0 and not (out + err).strip(),
          f"systemd-analyze verify: exit {rc}, output:\n{(out + err).strip()}")
    print(f"     systemd-analyze verify: {len(names)} units, exit 0, no diagnostics")


def test_installed_examples_run(env):
    """The example configs parse; with the site-specific values given on the
    command line the pair carries data."""
    dest = install(env)
    sink = env.target(h.SinkServer())
    port = h.free_port()
    srv = env.start_server(allow=[f"127.0.0.1:{sink.port}"], port=port,
                           extra=["--config", os.path.join(dest, "etc/wanmux/server.conf")])
    lport = h.free_port()
    cli = env.start_client(srv.port, [(lport, "127.0.0.1", sink.port)], tunnels=2,
                           extra=["--config", os.path.join(dest, "etc/wanmux/client.conf")])
    data = h.make_text(1 << 20)
    check(h.upload(lport, data, timeout=t(20)) == h.sha(data),
          "data through the pair started from the example configs differs")
    for conf, prog in (("server.conf", env.bins.server), ("client.conf", env.bins.client)):
        bad = env.write("bad-" + conf, open(os.path.join(dest, "etc/wanmux", conf)).read()
                        + "frobnicate yes\n", 0o644)
        rc, _, err = h.run_cmd([prog, "--config", bad])
        check(rc == 2 and "frobnicate" in err,
              f"a bad line after the example {conf}: exit {rc}, {err.strip()!r}")
    cli.stop()
    srv.stop()


def built_with_systemd(bindir):
    try:
        with open(os.path.join(bindir, "CMakeCache.txt")) as f:
            return re.search(r"^WM_HAVE_SYSTEMD:INTERNAL=ON$", f.read(), re.M) is not None
    except OSError:
        return False


def start_notified(env, name, start):
    """Starts a daemon with NOTIFY_SOCKET set to our datagram socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = env.path(name + ".notify")
    sock.bind(path)
    sock.settimeout(t(10))
    old = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = path
    try:
        d = start()
    finally:
        if old is None:
            del os.environ["NOTIFY_SOCKET"]
        else:
            os.environ["NOTIFY_SOCKET"] = old
    return d, sock


def receive(sock, what, d):
    try:
        msg = sock.recv(4096).decode()
    except socket.timeout:
        raise h.TestFailure(f"{d}: no {what} notification within {sock.gettimeout():.0f} s")
    return msg


def test_sd_notify(env):
    if not built_with_systemd(env.args.bindir):
        skipped.append("build without libsystemd (apt-get install libsystemd-dev)")
        print(f"     SKIPPED: {skipped[-1]}")
        return
    sink = env.target(h.SinkServer())
    srv, ssock = start_notified(env, "server", lambda: env.start_server(
        allow=[f"127.0.0.1:{sink.port}"], wait=False))
    msg = receive(ssock, "READY=1", srv)
    check(msg.splitlines() == ["READY=1"], f"server's first notification: {msg!r}")
    # READY means listening: the log line is there and the port takes a connection.
    check(srv.count(r"listening on 127\.0\.0\.1:%d" % srv.port) == 1,
          "server sent READY=1 before logging 'listening on'")
    h.connect(srv.port, timeout=t(5)).close()

    lport = h.free_port()
    cli, csock = start_notified(env, "client", lambda: env.start_client(
        srv.port, [(lport, "127.0.0.1", sink.port)], tunnels=1, wait=False))
    msg = receive(csock, "READY=1", cli)
    check(msg.splitlines() == ["READY=1"], f"client's first notification: {msg!r}")
    h.connect(lport, timeout=t(5)).close()

    for d, sock in ((cli, csock), (srv, ssock)):
        d.proc.send_signal(signal.SIGTERM)
        msg = receive(sock, "STOPPING=1", d)
        check(msg.splitlines() == ["STOPPING=1"], f"{d}: after SIGTERM: {msg!r}")
        d.stop()
        sock.close()
    print("     server and client: READY=1 once listening, STOPPING=1 on SIGTERM")


def main():
    args = h.parse_args(__doc__)
    try:
        rc = h.run_tests([test_install_tree, test_units_verify, test_installed_examples_run,
                          test_sd_notify], args)
    finally:
        h._kill_all()
    if rc == 0 and skipped:
        print(f"SKIPPED in part: {'; '.join(skipped)}")
        sys.exit(77)
    sys.exit(rc)


if __name__ == "__main__":
    main()
