#!/usr/bin/env python3
"""--check-config on wanmux-server and wanmux-client: a good configuration
(command line and config file, key files, authorized keys with options,
allow rules, PSK, credentials) prints 'configuration ok' on stdout and exits
0 without binding (the listen port is held by the test) or resolving (names
under .invalid); each bad one (bad option value, unknown option, missing key
file, key mode 0644, bad allow rule, bad authorized-keys line, bad config
line, ...) exits 2 with exactly one stderr line naming the problem and
nothing on stdout."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check  # noqa: E402


def held_port():
    """A listening socket the test keeps: a daemon that bound it would fail."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


def run_check(argv):
    rc, out, err = h.run_cmd(argv + ["--check-config"])
    return rc, out, [ln for ln in err.splitlines() if ln.strip()]


def expect_ok(what, argv):
    rc, out, err = run_check(argv)
    check(rc == 0 and out == "configuration ok\n",
          f"{what}: rc {rc}, stdout {out!r}, stderr {err!r}; expected 'configuration ok', 0")
    print(f"     ok   {what}")


def expect_bad(what, argv, needle):
    rc, out, err = run_check(argv)
    check(rc == 2, f"{what}: exit {rc}, expected 2; stderr {err!r}")
    check(out == "", f"{what}: stdout {out!r}, expected nothing")
    check(len(err) == 1 and needle in err[0],
          f"{what}: expected one stderr line naming {needle!r}, got {err!r}")
    print(f"     bad  {what}: {err[0]}")


def server_files(env):
    auth = env.write("auth", f'allow="10.1.0.0/16:443",from="198.18.0.0/24" {env.client_pub} '
                             f"branch\n", 0o644)
    psk, _ = env.keygen("psk", psk=True)
    return auth, psk


def test_server_check_config(env):
    auth, psk = server_files(env)
    hold, port = held_port()
    try:
        conf = env.write("server.conf", f"listen 127.0.0.1:{port}\nlisten [::1]:{port}\n"
                                        f"key {env.server_key}\nauthorized-keys {auth}\n"
                                        f"allow 10.0.0.0/8:443\nallow db.example.invalid:5432\n"
                                        f"allow-listen 127.0.0.1:8000-8099\npsk {psk}\n")
        base = [env.bins.server, "-c", conf]
        expect_ok("server config file (port held by the test)", base)
        expect_ok("server --listen by name, not resolved",
                  base + ["--listen", "wanmux.example.invalid:7700"])
        # The same config really would not start: the port is taken.
        rc, _, err = h.run_cmd(base)
        check(rc == 1 and f"127.0.0.1:{port}" in err,
              f"a real start on the held port: rc {rc}, {err!r}; expected 1 naming the port")
    finally:
        hold.close()

    bad_auth = env.write("bad_auth", f"{env.client_pub} ok\npermitopen=\"1.2.3.4:22\" "
                                     f"{env.client_pub}\n", 0o644)
    bad_conf = env.write("bad.conf", "listen 127.0.0.1:7700\nfrobnicate 3\n")
    loose = env.path("loose.key")
    with open(env.server_key) as src, open(loose, "w") as dst:
        dst.write(src.read())
    os.chmod(loose, 0o644)
    loose_psk = env.write("loose.psk", "a shared secret, long enough\n", 0o644)

    def argv(*extra, key=None, authk=auth):
        return [env.bins.server, "--listen", "127.0.0.1:7700", "--key", key or env.server_key,
                "--authorized-keys", authk, "--allow", "10.0.0.0/8"] + list(extra)

    expect_ok("server command line", argv())
    state = env.path("state")
    os.mkdir(state, 0o700)
    expect_ok("server --state-dir (nothing written to it)", argv("--state-dir", state))
    check(os.listdir(state) == [], f"--check-config wrote into --state-dir: {os.listdir(state)}")
    expect_bad("missing --state-dir", argv("--state-dir", env.path("nostate")), "nostate")
    expect_bad("bad option value", argv("--max-streams", "0"), "--max-streams")
    expect_bad("unknown option", argv("--frobnicate"), "--frobnicate")
    expect_bad("bad --listen", argv("--listen", "127.0.0.1:99999"), "--listen")
    expect_bad("bad --admin", argv("--admin", "nonsense:port"), "admin")
    expect_bad("missing key file", argv(key=env.path("missing.key")), "missing.key")
    expect_bad("key mode 0644", argv(key=loose), "loose.key")
    expect_bad("bad allow rule", argv("--allow", "10.0.0.0/99"), "10.0.0.0/99")
    expect_bad("bad allow-listen rule", argv("--allow-listen", "300.0.0.1"), "300.0.0.1")
    expect_bad("bad authorized-keys line", argv(authk=bad_auth), "bad_auth:2:")
    expect_bad("missing authorized keys", argv(authk=env.path("nobody")), "nobody")
    expect_bad("PSK mode 0644", argv("--psk", loose_psk), "loose.psk")
    expect_bad("bad config file line", argv("-c", bad_conf), "bad.conf:2")
    expect_bad("missing --key", [a for a in argv() if a not in ("--key", env.server_key)],
               "--key")


def test_client_check_config(env):
    creds = env.write("creds", "alice:correct horse battery\n", 0o600)
    loose_creds = env.write("loose_creds", "alice:correct horse battery\n", 0o644)
    hold, port = held_port()
    try:
        conf = env.write("client.conf",
                         f"server wanmux.example.invalid:7700\nkey {env.client_key}\n"
                         f"server-key {env.server_key}.pub\n"
                         f"forward {port}:intranet.example.invalid:443\n"
                         f"socks 127.0.0.1:{h.free_port()}\nsocks-auth {creds}\n")
        expect_ok("client config file (names not resolved, forward port held)",
                  [env.bins.client, "-c", conf])
    finally:
        hold.close()

    loose = env.path("loose.key")
    with open(env.client_key) as src, open(loose, "w") as dst:
        dst.write(src.read())
    os.chmod(loose, 0o644)

    def argv(*extra, key=None):
        return [env.bins.client, "--server", "127.0.0.1:7700", "--key", key or env.client_key,
                "--server-key", env.server_key + ".pub", "--socks", "1080"] + list(extra)

    expect_ok("client command line", argv())
    expect_bad("bad option value", argv("--tunnels", "0"), "--tunnels")
    expect_bad("bad --forward", argv("--forward", "nonsense"), "nonsense")
    expect_bad("missing key file", argv(key=env.path("missing.key")), "missing.key")
    expect_bad("key mode 0644", argv(key=loose), "loose.key")
    expect_bad("bad server key", argv("--server-key", "not-a-key"), "not-a-key")
    expect_bad("credentials mode 0644", argv("--socks-auth", loose_creds), "loose_creds")
    expect_bad("two listeners on one address", argv("--http-proxy", "127.0.0.1:1080"),
               "127.0.0.1:1080")
    expect_bad("bad --source-allow", argv("--source-allow", "branch.invalid"), "branch.invalid")


if __name__ == "__main__":
    h.main([test_server_check_config, test_client_check_config], __doc__.splitlines()[0])
