#!/usr/bin/env python3
"""--tunnel-rcvbuf on both daemons: with a size, every tunnel socket (the
client's connected ones and the server's accepted ones, which inherit the
listener's buffer) has that SO_RCVBUF (doubled by the kernel), still after a
bulk transfer (a fixed buffer stays fixed); with auto, the kernel's receive
autotuning stays on and grows the buffer of the receiving side. Read with
ss -tm (skmem rb) on loopback; a process that may not fix a buffer this
large (no CAP_NET_ADMIN, net.core.rmem_max smaller) must keep autotuning and
say so once in its log."""

import os
import re
import shutil
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402

SIZE = 4 * MB
DATA = h.make_random(32 * MB, seed=21)


def can_fix(size):
    """Whether this process may have a fixed receive buffer of size bytes."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE
        return True
    except OSError:
        pass
    finally:
        s.close()
    try:
        with open("/proc/sys/net/core/rmem_max") as f:
            return int(f.read()) >= size
    except (OSError, ValueError):
        return False


def default_rcvbuf():
    with open("/proc/sys/net/ipv4/tcp_rmem") as f:
        return int(f.read().split()[1])


def tunnel_rcvbufs(port):
    """skmem rb of each established TCP socket to or from 127.0.0.1:port:
    {"client": [...], "server": [...]}."""
    rc, out, err = h.run_cmd(["ss", "-tmnHO", "state", "established",
                              f"( sport = :{port} or dport = :{port} )"], timeout=10)
    check(rc == 0, f"ss failed: {err.strip()}")
    got = {"client": [], "server": []}
    for line in out.splitlines():
        fields = line.split()
        m = re.search(r"skmem:\([^)]*\brb(\d+)", line)
        if len(fields) < 4 or m is None:
            continue
        local = fields[2]
        side = "server" if local.endswith(f":{port}") else "client"
        got[side].append(int(m.group(1)))
    return got


def pair(env, opt):
    source = env.target(h.SourceServer(DATA))
    srv = env.start_server(allow=[f"127.0.0.1:{source.port}"],
                           extra=["--tunnel-rcvbuf", opt])
    lport = h.free_port()
    cl = env.start_client(srv.port, [(lport, "127.0.0.1", source.port)], tunnels=2,
                          extra=["--tunnel-rcvbuf", opt])
    return srv, cl, lport


def download(lport):
    n, digest = h.download(lport, timeout=t(60))
    check((n, digest) == (len(DATA), h.sha(DATA)),
          f"downloaded {n} bytes {digest}, expected {len(DATA)} {h.sha(DATA)}")


def test_tunnel_rcvbuf_fixed_on_both_ends(env):
    srv, cl, lport = pair(env, "4M")
    before = tunnel_rcvbufs(srv.port)
    check(len(before["client"]) == 2 and len(before["server"]) == 2,
          f"expected 2 tunnel sockets on each side, ss shows {before}")
    download(lport)
    after = tunnel_rcvbufs(srv.port)
    if not can_fix(SIZE):
        print("     (no CAP_NET_ADMIN and net.core.rmem_max < 4M: autotuning expected)")
        check(all(rb != 2 * SIZE for side in before.values() for rb in side),
              f"a capped fixed buffer was set: {before}")
        for d in (srv, cl):
            check(d.count(r"keeping the kernel's autotuning") == 1,
                  f"{d.name} did not say once that it keeps autotuning")
        return
    for when, got in (("before", before), ("after the transfer", after)):
        for side, rbs in got.items():
            check(rbs and all(rb == 2 * SIZE for rb in rbs),
                  f"{side} tunnel sockets {when}: rb {rbs}, expected {2 * SIZE} each")


def test_tunnel_rcvbuf_auto_keeps_autotuning(env):
    srv, cl, lport = pair(env, "auto")
    start = default_rcvbuf()
    before = tunnel_rcvbufs(srv.port)
    check(len(before["client"]) == 2 and len(before["server"]) == 2,
          f"expected 2 tunnel sockets on each side, ss shows {before}")
    check(all(rb <= 2 * start for side in before.values() for rb in side),
          f"auto set a buffer: {before} (tcp_rmem default {start})")
    download(lport)
    after = tunnel_rcvbufs(srv.port)
    # The client's sockets received 32 MB: autotuning grew at least one.
    check(max(after["client"]) > start,
          f"client tunnel rb {after['client']} did not grow past {start}: autotuning off?")


if __name__ == "__main__":
    if shutil.which("ss") is None:
        print("SKIP: ss (iproute2) is not installed")
        sys.exit(77)
    h.main([test_tunnel_rcvbuf_fixed_on_both_ends, test_tunnel_rcvbuf_auto_keeps_autotuning],
           __doc__)
