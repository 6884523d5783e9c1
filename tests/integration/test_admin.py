#!/usr/bin/env python3
"""The admin interface (--admin, --admin-allow) and the access log, on a real
pair: /metrics after real traffic, checked with promtool and against the bytes
sent; /status parsed while a stream is open; 403 for a source outside
--admin-allow; the access lines of a finished stream with exact byte counts on
both daemons; the status page rendered by headless Chromium, whose script must
have filled in the tunnel rows from /status (and a screenshot of it).

promtool (Debian package prometheus) and chromium are needed for two of the
checks; without them the rest runs and the file exits 77 saying what was
skipped."""

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmharness as h  # noqa: E402
from wmharness import MB, check, t  # noqa: E402

SKIPPED = []
SCREENSHOT = None  # --screenshot PATH: also copy the page's PNG there


def http_get(port, path, host="127.0.0.1", source=None, timeout=None):
    """GET http://host:port/path from source (an address to bind, or None):
    (status, content type, body bytes)."""
    timeout = t(10) if timeout is None else timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = h.recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    ctype = ""
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-type":
            ctype = v.strip()
        if k.strip().lower() == "transfer-encoding" and "chunked" in v:
            body = dechunk(body)
    return status, ctype, body


def dechunk(b):
    out = b""
    while b:
        size, _, rest = b.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out += rest[:n]
        b = rest[n + 2:]
    return out


def scrape(port):
    status, ctype, body = http_get(port, "/metrics")
    check(status == 200, f"/metrics on {port}: HTTP {status}")
    check(ctype.startswith("text/plain; version=0.0.4"), f"/metrics content type {ctype!r}")
    return body.decode()


def status_json(port):
    status, ctype, body = http_get(port, "/status")
    check(status == 200, f"/status on {port}: HTTP {status}")
    check(ctype == "application/json", f"/status content type {ctype!r}")
    return json.loads(body)


def metric(text, name, **labels):
    """The value of one sample of name with exactly these labels."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        check(m is not None, f"unparseable sample line {line!r}")
        if m.group(1) != name:
            continue
        got = ",".join(sorted(re.findall(r'[a-zA-Z_]\w*="(?:[^"\\]|\\.)*"', m.group(3) or "")))
        if got == want:
            return float(m.group(4))
    raise h.TestFailure(f"no sample {name}{{{want}}} in the scrape")


def promtool_check(text, who):
    promtool = shutil.which("promtool")
    if promtool is None:
        if not any("promtool" in s for s in SKIPPED):
            SKIPPED.append("promtool (Debian package prometheus) not installed: "
                           "scrapes not checked with promtool check metrics")
        return
    p = h.subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=t(30))
    out = (p.stdout + p.stderr).decode(errors="replace").strip()
    check(p.returncode == 0, f"promtool check metrics on the {who}'s scrape failed: {out}")


def start_pair(env, targets, tunnels=2, client_admin=None, server_admin=None, extra_srv=(),
               extra_cli=()):
    """Server and client with --admin on loopback ports; targets: target
    servers to forward to (one local port each). Returns (srv, cli, lports)."""
    srv_admin = server_admin or h.free_port()
    cli_admin = client_admin or h.free_port()
    srv = env.start_server(allow=[f"127.0.0.1:{tg.port}" for tg in targets],
                           extra=["--admin", str(srv_admin), *extra_srv], log_level="info")
    srv.admin = srv_admin
    lports = [h.free_port() for _ in targets]
    cli = env.start_client(srv.port, [(lp, "127.0.0.1", tg.port) for lp, tg in zip(lports, targets)],
                           tunnels=tunnels, extra=["--admin", f"127.0.0.1:{cli_admin}", *extra_cli],
                           log_level="info")
    cli.admin = cli_admin
    srv.wait_log(r"admin interface on http://127\.0\.0\.1:%d/" % srv_admin, t(5))
    cli.wait_log(r"admin interface on http://127\.0\.0\.1:%d/" % cli_admin, t(5))
    return srv, cli, lports


def test_metrics_after_traffic(env):
    up_bytes = 3 * MB + 12345
    down_bytes = 2 * MB + 777
    text = h.make_text(up_bytes)
    sink = env.target(h.SinkServer())
    source = env.target(h.SourceServer(h.make_random(down_bytes)))
    srv, cli, (l_sink, l_src) = start_pair(env, [sink, source], tunnels=2)
    check(h.upload(l_sink, text, timeout=t(30)) == h.sha(text), "upload hash differs")
    n, _ = h.download(l_src, timeout=t(30))
    check(n == down_bytes, f"downloaded {n} bytes, expected {down_bytes}")
    sink.wait_results(1, t(10))

    for d, who in ((cli, "client"), (srv, "server")):
        # The access line is written as the stream closes: wait for both.
        d.wait_log(r"frontend=\S+ .*result=ok", t(10), count=2)
        m = scrape(d.admin)
        promtool_check(m, who)
        for line in m.splitlines():
            if not line.startswith("#") and line.strip():
                check(line.startswith("wanmux_"), f"{who}: metric without wanmux_ prefix: {line}")
        check(re.search(r"^# HELP wanmux_bytes_total .+$", m, re.M) is not None, "HELP line")
        check(re.search(r"^# TYPE wanmux_bytes_total counter$", m, re.M) is not None, "TYPE line")
        check(metric(m, "wanmux_tunnels", state="up") == 2, f"{who}: tunnels up != 2")
        app_up = metric(m, "wanmux_bytes_total", direction="up", layer="app")
        app_down = metric(m, "wanmux_bytes_total", direction="down", layer="app")
        wire_up = metric(m, "wanmux_bytes_total", direction="up", layer="wire")
        check(app_up >= up_bytes, f"{who}: app bytes up {app_up} < {up_bytes} sent")
        check(app_down >= down_bytes, f"{who}: app bytes down {app_down} < {down_bytes}")
        # Text compresses: fewer bytes on the wire than the application sent.
        check(0 < wire_up < app_up, f"{who}: wire up {wire_up} vs app up {app_up}")
        ratio = metric(m, "wanmux_compression_ratio", direction="up")
        check(0 < ratio < 0.9, f"{who}: compression ratio up {ratio}, text should compress")
        for tunnel in {re.search(r'tunnel="([^"]+)"', ln).group(1)
                       for ln in m.splitlines() if ln.startswith("wanmux_tunnel_cwnd_segments")}:
            check(metric(m, "wanmux_tunnel_cwnd_segments", tunnel=tunnel) > 0, "cwnd > 0")
        check(len(re.findall(r"^wanmux_tunnel_rtt_seconds\{", m, re.M)) == 2,
              f"{who}: expected RTT for 2 tunnels")
        check(metric(m, "wanmux_handshake_failures_total", kind="bad_mac") == 0, "no bad MACs")
        print(f"     {who}: app up {app_up:.0f} down {app_down:.0f}, wire up {wire_up:.0f}, "
              f"ratio up {ratio:.3f}")
    mc, ms = scrape(cli.admin), scrape(srv.admin)
    check(metric(mc, "wanmux_streams_opened_total", frontend="forward") == 2,
          "client: 2 forward streams opened")
    check(metric(mc, "wanmux_streams_open", frontend="forward") == 0, "client: none open")
    check(metric(ms, "wanmux_streams_opened_total", frontend="tunnel") == 2,
          "server: 2 streams opened by the client")
    check(metric(ms, "wanmux_streams_closed_total", result="ok") == 2, "server: 2 closed ok")
    check(metric(ms, "wanmux_refusals_total", reason="target") == 0, "no refusals yet")
    with open(env.path("client.metrics"), "w") as f:
        f.write(mc)
    with open(env.path("server.metrics"), "w") as f:
        f.write(ms)


def test_status_while_streaming_and_access_log(env):
    sink = env.target(h.SinkServer())
    srv, cli, (l_sink,) = start_pair(env, [sink], tunnels=2)
    first = b"x" * 100000
    rest = os.urandom(1234567)
    s = h.connect(l_sink, timeout=t(20))
    local = "%s:%d" % s.getsockname()
    h.send_all(s, first)
    # Poll until both daemons show the stream with every byte sent so far.
    deadline = time.monotonic() + t(10)
    while True:
        sc, ss = status_json(cli.admin), status_json(srv.admin)
        cs = [x for x in sc["streams"] if x["src"] == local]
        svs = [x for x in ss["streams"] if x["frontend"] == "tunnel"]
        if cs and svs and cs[0]["up"] == len(first) and svs[0]["up"] == len(first):
            break
        check(time.monotonic() < deadline, f"stream not in /status: client {sc['streams']} "
              f"server {ss['streams']}")
        time.sleep(0.1)
    check(sc["daemon"] == "wanmux-client" and ss["daemon"] == "wanmux-server", "daemon names")
    check(len(sc["tunnels"]) == 2 and all(x["state"] == "up" for x in sc["tunnels"]),
          f"client tunnels {sc['tunnels']}")
    check(all(x["peer"] == f"127.0.0.1:{srv.port}" for x in sc["tunnels"]),
          "client tunnels' peer is the server")
    check(len(ss["tunnels"]) == 2 and all(x["state"] == "up" for x in ss["tunnels"]),
          f"server tunnels {ss['tunnels']}")
    check(all(x["rtt_ms"] >= 0 and x["cwnd"] > 0 for x in sc["tunnels"]), "RTT and cwnd")
    # One client, one session id: both daemons show one session of 2 tunnels
    # carrying the open stream, under the same id.
    for side, st in (("client", sc), ("server", ss)):
        check(len(st["sessions"]) == 1 and st["sessions"][0]["tunnels"] == 2 and
              st["sessions"][0]["streams"] == 1, f"{side} sessions {st['sessions']}")
    check(sc["sessions"][0]["session"] == ss["sessions"][0]["session"] and
          len(sc["sessions"][0]["session"]) == 16, "the session id agrees on both sides")
    check(cs[0]["frontend"] == "forward" and cs[0]["target"] == f"127.0.0.1:{sink.port}",
          f"client stream row {cs[0]}")
    check(cs[0]["state"] == "open", f"client stream state {cs[0]['state']}")
    check(svs[0]["addr"] == f"127.0.0.1:{sink.port}", f"server stream row {svs[0]}")
    check(sc["streams_open"] == 1 and ss["streams_open"] == 1, "one stream open each side")
    names = {x["option"] for x in ss["limits"]}
    check({"--max-unauth", "--max-streams", "--max-buffer"} <= names, f"server limits {names}")
    check(any(x["option"] == "--max-connections" and x["used"] == 1 for x in sc["limits"]),
          f"client limits {sc['limits']}")

    h.send_all(s, rest)
    s.shutdown(socket.SHUT_WR)
    reply = h.recv_all(s)
    s.close()
    total = len(first) + len(rest)
    check(len(reply) == 65, f"sink reply {reply!r}")
    pat = (r"client=(\S+) src=(\S+) frontend=(\w+) target=(\S+) addr=(\S+) up=(\d+) "
           r"down=(\d+) wire_up=(\d+) wire_down=(\d+) ms=(\d+) result=(\w+)")
    lc = cli.wait_log(r"^.* info: " + pat + "$", t(10))
    ls = srv.wait_log(r"^.* info: " + pat + "$", t(10))
    print(f"     client: {lc.group(0).split(' info: ')[1]}")
    print(f"     server: {ls.group(0).split(' info: ')[1]}")
    ckey = env.client_pub[:8]
    check(lc.groups()[:5] == (ckey, local, "forward", f"127.0.0.1:{sink.port}",
                              f"127.0.0.1:{srv.port}"), f"client access line {lc.group(0)}")
    check(int(lc.group(6)) == total and int(lc.group(7)) == 65,
          f"client access line up/down {lc.group(6)}/{lc.group(7)}, expected {total}/65")
    check(lc.group(11) == "ok", "client result=ok")
    check(ls.group(1) == ckey and ls.group(3) == "tunnel" and
          ls.group(5) == f"127.0.0.1:{sink.port}", f"server access line {ls.group(0)}")
    check(int(ls.group(6)) == total and int(ls.group(7)) == 65,
          f"server access line up/down {ls.group(6)}/{ls.group(7)}, expected {total}/65")
    # 1.2 MB of random bytes do not compress: the estimate is near the
    # application bytes, and never far above them.
    wire_up = int(ls.group(8))
    check(total * 0.5 < wire_up < total * 1.1, f"server wire_up {wire_up} for {total}")
    check(ls.group(11) == "ok", "server result=ok")


def test_refused_stream_access_line(env):
    # One target refuses the connection; one name no --allow rule permits
    # (refused before any DNS query): both still get access lines.
    refusing = h.RefusingPort()
    env.targets.append(refusing)
    l_blocked = h.free_port()
    srv, cli, (lp,) = start_pair(env, [refusing], tunnels=1,
                                 extra_cli=["--forward", f"{l_blocked}:blocked.invalid:80"])
    for port in (lp, l_blocked):
        try:
            s = h.connect(port)
        except ConnectionResetError:
            # The client's reset can arrive before connect() with a timeout
            # has checked the socket: refused promptly all the same.
            continue
        h.wait_closed(s, t(10))
        s.close()
    ls = srv.wait_log(r"frontend=tunnel target=127\.0\.0\.1:%d addr=\S+ up=0 down=0 .* "
                      r"result=(\w+)" % refusing.port, t(10))
    check(ls.group(1) == "refused", f"server: connection refused gives result={ls.group(1)}")
    ls = srv.wait_log(r"frontend=tunnel target=blocked\.invalid:80 addr=- up=0 down=0 .* "
                      r"result=(\w+)", t(10))
    check(ls.group(1) == "refused", f"server: not allowed gives result={ls.group(1)}")
    lc = cli.wait_log(r"frontend=forward target=blocked\.invalid:80 .* result=(\w+)", t(10))
    check(lc.group(1) == "refused", f"client: result={lc.group(1)}")
    check(cli.count(r"frontend=forward .* result=refused") == 2, "client: 2 refused lines")
    ms = scrape(srv.admin)
    check(metric(ms, "wanmux_streams_closed_total", result="refused") == 1,
          "the refused connection counted (the name never had a relay)")
    check(metric(ms, "wanmux_refusals_total", reason="target") == 1, "one refused target")


def test_admin_allow_403(env):
    # Bound on 127.0.0.2, only 127.0.0.3 may use it: a request from 127.0.0.1
    # must get 403 and be counted; one from 127.0.0.3 gets the page.
    port = h.free_port("127.0.0.2")
    srv = env.start_server(allow=[], extra=["--admin", f"127.0.0.2:{port}",
                                            "--admin-allow", "127.0.0.3/32"], log_level="info")
    srv.wait_log(r"admin interface on http://127\.0\.0\.2:%d/" % port, t(5))
    status, _, body = http_get(port, "/metrics", host="127.0.0.2", source="127.0.0.1")
    check(status == 403, f"from 127.0.0.1: HTTP {status}, expected 403")
    status, _, _ = http_get(port, "/", host="127.0.0.2", source="127.0.0.1")
    check(status == 403, f"page from 127.0.0.1: HTTP {status}, expected 403")
    status, _, body = http_get(port, "/metrics", host="127.0.0.2", source="127.0.0.3")
    check(status == 200, f"from 127.0.0.3: HTTP {status}, expected 200")
    check(metric(body.decode(), "wanmux_admin_denied_total") == 2, "2 denied requests counted")
    status, _, _ = http_get(port, "/nothing", host="127.0.0.2", source="127.0.0.3")
    check(status == 404, f"unknown path: HTTP {status}")
    srv.wait_log(r"limit admin requests from sources outside --admin-allow hit: 127\.0\.0\.1",
                 t(5))
    # Default (no --admin-allow): loopback only, and the options are checked.
    rc, _, err = h.run_cmd([env.bins.server, "--listen", "127.0.0.1:1", "--key", env.server_key,
                            "--authorized-keys", env.server_key + ".pub",
                            "--admin", "1", "--admin-allow", "example.com"])
    check(rc == 2 and "bad --admin-allow 'example.com'" in err, f"bad --admin-allow: {rc} {err}")
    rc, _, err = h.run_cmd([env.bins.client, "--server", "127.0.0.1:1", "--key", env.client_key,
                            "--server-key", env.server_key + ".pub", "--forward", "1:a:1",
                            "--admin-allow", "10.0.0.0/8"])
    check(rc == 2 and "--admin-allow needs --admin" in err, f"allow without admin: {rc} {err}")


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def chromium(args, timeout):
    exe = find_chromium()
    profile = tempfile.mkdtemp(prefix="wm-chromium-")
    try:
        p = h.subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-dev-shm-usage", "--no-first-run",
                              "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                             capture_output=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return p


def test_status_page_in_chromium(env):
    if find_chromium() is None:
        SKIPPED.append("chromium not installed: status page not rendered")
        return
    # Traffic while the page runs, paced at both ends so the chart has two
    # curves and the tables two streams: a text upload and a download.
    stop = threading.Event()
    data = h.make_text(256 * 1024)

    def paced_source(c, idx, server):
        end = time.monotonic() + t(25)
        try:
            while not stop.is_set() and time.monotonic() < end:
                c.sendall(data[:96 * 1024])
                time.sleep(0.05)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    sink = env.target(h.SinkServer())
    source = env.target(h.FuncServer(paced_source))
    srv, cli, (l_sink, l_src) = start_pair(env, [sink, source], tunnels=4)

    def paced_upload():
        with h.connect(l_sink, timeout=t(60)) as s:
            end = time.monotonic() + t(25)
            while not stop.is_set() and time.monotonic() < end:
                s.sendall(data)
                time.sleep(0.05)
            s.shutdown(socket.SHUT_WR)
            h.recv_all(s)

    def slow_download():
        with h.connect(l_src, timeout=t(60)) as s:
            end = time.monotonic() + t(25)
            while not stop.is_set() and time.monotonic() < end:
                if not s.recv(256 * 1024):
                    break

    threads = [threading.Thread(target=f, daemon=True) for f in (paced_upload, slow_download)]
    for th in threads:
        th.start()
    try:
        # The daemon samples its totals once a second for the chart.
        time.sleep(t(8))
        url = f"http://127.0.0.1:{cli.admin}/"
        p = chromium(["--virtual-time-budget=6000", "--dump-dom", url], t(90))
        dom = p.stdout.decode(errors="replace")
        check(p.returncode == 0 and "<html" in dom,
              f"chromium --dump-dom failed ({p.returncode}): {p.stderr.decode()[-800:]}")
        rows = re.findall(r'<tr class="tunnel">(.*?)</tr>', dom, re.S)
        check(len(rows) == 4, f"page shows {len(rows)} tunnel rows, expected 4 (from /status)")
        check(all(f"127.0.0.1:{srv.port}" in r and ">up<" in r for r in rows),
              "every tunnel row names the server and is up")
        check(len(re.findall(r'<tr class="stream">', dom)) >= 1, "page lists the open streams")
        check(re.search(r'id="t-tunnels">4 / 4<', dom) is not None, "tile says 4 / 4 tunnels")
        shot = env.path("status-page.png")
        p = chromium([f"--screenshot={shot}", "--window-size=1280,900",
                      "--virtual-time-budget=5000", url], t(90))
        check(p.returncode == 0 and os.path.exists(shot),
              f"chromium --screenshot failed ({p.returncode}): {p.stderr.decode()[-800:]}")
        with open(shot, "rb") as f:
            png = f.read()
        check(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000, "a real PNG")
        if SCREENSHOT:
            shutil.copyfile(shot, SCREENSHOT)
            print(f"     screenshot copied to {SCREENSHOT}")
        # The server's page works the same way.
        p = chromium(["--virtual-time-budget=3000", "--dump-dom",
                      f"http://127.0.0.1:{srv.admin}/"], t(90))
        dom = p.stdout.decode(errors="replace")
        check(len(re.findall(r'<tr class="tunnel">', dom)) == 4, "server page: 4 tunnel rows")
    finally:
        stop.set()
        for th in threads:
            th.join(t(30))


def test_placed_bytes_per_tunnel(env):
    """Sessions across tunnels: four bulk uploads at once over a client with
    4 tunnels; tunnel_placed_data_bytes_total (what the session placed on
    each tunnel) adds up to what was sent, and every upload arrives intact.
    (Where the streams land is placement's choice: each keeps to the tunnel
    it started on.)"""
    size = 12 * MB
    datas = [h.make_random(size, seed=71 + i) for i in range(4)]
    sink = env.target(h.SinkServer())
    srv, cli, (l_sink,) = start_pair(env, [sink], tunnels=4)
    jobs = [lambda d=d: h.upload(l_sink, d, timeout=t(60)) for d in datas]
    res = h.parallel(jobs, timeout=t(90))
    check(res == [h.sha(d) for d in datas], "upload hashes differ")
    m = scrape(cli.admin)
    placed = [float(v) for v in re.findall(
        r'^wanmux_tunnel_placed_data_bytes_total\{tunnel="\d+"\} (\S+)$', m, re.M)]
    check(len(placed) == 4, f"placement of 4 tunnels in the scrape, got {placed}")
    print(f"     placed per tunnel (MiB): {[round(p / MB, 1) for p in placed]}")
    check(sum(placed) >= 4 * size, f"placements add up to {sum(placed)}, sent {4 * size}")
    check(sum(placed) < 4 * size + 4 * MB,
          f"placements add up to {sum(placed)}: more than sent ({4 * size}) plus resends")


def main():
    global SCREENSHOT
    args = h.parse_args(__doc__, extra=lambda p: p.add_argument(
        "--screenshot", default=None, help="copy the status page PNG here"))
    SCREENSHOT = args.screenshot
    tests = [test_metrics_after_traffic, test_status_while_streaming_and_access_log,
             test_refused_stream_access_line, test_admin_allow_403, test_status_page_in_chromium,
             test_placed_bytes_per_tunnel]
    try:
        rc = h.run_tests(tests, args)
    finally:
        h._kill_all()
    if rc == 0 and SKIPPED:
        for s in SKIPPED:
            print(f"SKIP: {s}")
        sys.exit(77)
    sys.exit(rc)


if __name__ == "__main__":
    main()
