#!/usr/bin/env python3
"""wanmux-keygen for operators: it creates missing parent directories with
mode 0700 (a fresh account has no ~/.wanmux), --pub FILE prints the public
key of an existing private key (like `wg pubkey`), and a daemon given a .pub
file as --key refuses it by name in one line instead of running with the
public key's bytes as another identity."""

import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import check, t  # noqa: E402

PUB_REFUSAL = "is a public key file; --key needs the private key"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keygen_makes_parent_dirs(env):
    # The README's first step on a fresh account: ~/.wanmux does not exist.
    home = env.path("home")
    os.mkdir(home, 0o755)
    key = os.path.join(home, ".wanmux", "client.key")
    rc, out, err = h.run_cmd([env.bins.keygen, key], env=dict(os.environ, HOME=home))
    check(rc == 0, f"wanmux-keygen {key}: exit {rc}, stderr {err.strip()!r}")
    check(mode(os.path.dirname(key)) == 0o700,
          f"~/.wanmux made with mode {oct(mode(os.path.dirname(key)))}, expected 0o700")
    check(mode(key) == 0o600 and os.path.exists(key + ".pub"), "key pair not written")
    check(mode(home) == 0o755, f"existing parent changed to {oct(mode(home))}")

    # Several levels, for a key pair and for a PSK.
    deep = env.path("a/b/c/server.key")
    rc, _, err = h.run_cmd([env.bins.keygen, deep])
    check(rc == 0, f"keygen {deep}: exit {rc}, {err.strip()!r}")
    for d in ("a", "a/b", "a/b/c"):
        check(mode(env.path(d)) == 0o700, f"{d} made with mode {oct(mode(env.path(d)))}")
    psk = env.path("p/q/psk")
    rc, _, err = h.run_cmd([env.bins.keygen, "--psk", psk])
    check(rc == 0 and mode(psk) == 0o600, f"keygen --psk {psk}: exit {rc}, {err.strip()!r}")
    check(mode(env.path("p")) == 0o700 and mode(env.path("p/q")) == 0o700,
          "PSK parent directories not 0700")

    # A parent that cannot be made is one line naming it, exit 1.
    blocker = env.write("file", "x\n", 0o644)
    rc, _, err = h.run_cmd([env.bins.keygen, os.path.join(blocker, "sub", "k")])
    check(rc == 1 and blocker in err and len(err.strip().splitlines()) == 1,
          f"keygen under a regular file: exit {rc}, {err.strip()!r}")


def test_keygen_pub(env):
    key, printed = env.keygen("k")
    rc, out, err = h.run_cmd([env.bins.keygen, "--pub", key])
    check(rc == 0, f"keygen --pub: exit {rc}, {err.strip()!r}")
    check(out.strip() == printed, f"--pub printed {out.strip()!r}, keygen printed {printed!r}")
    with open(key + ".pub") as f:
        check(f.read().strip() == printed, "FILE.pub differs from --pub")
    # The server's key too: what a client's --server-key must be.
    rc, out, _ = h.run_cmd([env.bins.keygen, "--pub", env.server_key])
    check(rc == 0 and out.strip() == env.server_pub, "--pub of the server key differs")

    cases = [
        ("missing file", [env.path("nothing")], env.path("nothing"), 1),
        ("a .pub file", [key + ".pub"], "public key", 1),
        ("no FILE", [], "--pub", 2),
    ]
    for what, args, needle, want in cases:
        rc, out, err = h.run_cmd([env.bins.keygen, "--pub"] + args)
        check(rc == want and needle in err and out == "",
              f"--pub {what}: exit {rc} (want {want}), stdout {out!r}, stderr {err.strip()!r}")
    os.chmod(key, 0o644)
    rc, out, err = h.run_cmd([env.bins.keygen, "--pub", key])
    check(rc == 1 and "chmod 600" in err and out == "",
          f"--pub of a key readable by others: exit {rc}, {err.strip()!r}")
    # A private key must not be written under a .pub name either.
    rc, _, err = h.run_cmd([env.bins.keygen, env.path("new.pub")])
    check(rc == 1 and not os.path.exists(env.path("new.pub")),
          f"keygen wrote a private key named .pub (exit {rc}, {err.strip()!r})")


def test_daemon_refuses_pub_as_key(env):
    """Before: a 0644 .pub got the advice 'run chmod 600', and after that the
    daemon ran with the public key's bytes as its private key."""
    auth = env.write("auth", env.client_pub + "\n", 0o644)
    pubcopy = env.path("copy.key.pub")
    with open(env.server_key + ".pub") as f:
        env.write("copy.key.pub", f.read(), 0o600)
    for keyfile in (env.server_key + ".pub", pubcopy):
        servers = [env.bins.server, "--listen", f"127.0.0.1:{h.free_port()}", "--key", keyfile,
                   "--authorized-keys", auth, "--allow", "127.0.0.1:9"]
        clients = [env.bins.client, "--server", f"127.0.0.1:{h.free_port()}", "--key", keyfile,
                   "--server-key", env.server_key + ".pub",
                   "--forward", f"{h.free_port()}:127.0.0.1:9"]
        for argv in (servers, clients):
            name = os.path.basename(argv[0])
            rc, out, err = h.run_cmd(argv, timeout=t(10))
            lines = [ln for ln in err.splitlines() if ln.strip()]
            check(rc == 1, f"{name} --key {keyfile} (mode {oct(mode(keyfile))}): exit {rc}, "
                           f"expected 1; stderr {err.strip()[:300]!r}")
            check(len(lines) == 1 and f"{keyfile} {PUB_REFUSAL}" in lines[0],
                  f"{name} --key {keyfile}: expected one line '{keyfile} {PUB_REFUSAL}', "
                  f"got {lines!r}")
            print(f"     {name}: {lines[0]}")


if __name__ == "__main__":
    h.main([test_keygen_makes_parent_dirs, test_keygen_pub, test_daemon_refuses_pub_as_key],
           __doc__)
