"""Integration harness: runs the real wanmux daemons on loopback.

Finds the binaries in a CMake build directory, makes a temp dir with fresh
keys, starts and stops daemons as subprocesses (logs in the temp dir), runs
small Python target servers in threads and checks what came through with
SHA-256. Standard library only. Every wait has a timeout, scaled up for
sanitizer builds (see timeout_scale()).
"""

import argparse
import atexit
import ctypes
import hashlib
import itertools
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

MB = 1 << 20
# Log lines a peer can cause are throttled to one a second per kind
# (common/log.c); a test that must see the same kind of line again waits this
# long first.
LOG_THROTTLE_S = 1.1
# Exit code of a test that cannot run here (ctest SKIP_RETURN_CODE): a skip
# must show as a skip, not as a pass.
SKIP_RC = 77
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                          r"SUMMARY: (Address|Undefined|Leak)Sanitizer")

# Multiplier for every timeout; set by parse_args().
SCALE = 1.0


class TestFailure(Exception):
    """A check failed; the message says what was expected and what happened."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def t(seconds):
    """A timeout in seconds, scaled for slow (sanitizer) builds."""
    return seconds * SCALE


# --------------------------------------------------------------------------
# Command line and binaries

def parse_args(description, extra=None):
    """Parse --bindir and friends; extra(parser) may add options."""
    global SCALE
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bindir", required=True,
                   help="CMake build directory (holds client-side/ and server-side/)")
    p.add_argument("--keep", action="store_true", help="keep temp dirs and logs")
    p.add_argument("--timeout-scale", type=float, default=None,
                   help="multiply every timeout (default: 4 for sanitizer builds, else 1; "
                        "or $WM_TIMEOUT_SCALE)")
    p.add_argument("--only", default=None, help="run only tests whose name contains this")
    if extra:
        extra(p)
    args = p.parse_args()
    args.bindir = os.path.abspath(args.bindir)
    args.bins = Binaries(args.bindir)
    if args.timeout_scale is not None:
        SCALE = args.timeout_scale
    elif os.environ.get("WM_TIMEOUT_SCALE"):
        SCALE = float(os.environ["WM_TIMEOUT_SCALE"])
    elif args.bins.sanitized:
        SCALE = 4.0
    args.scale = SCALE
    return args


class Binaries:
    def __init__(self, bindir):
        self.client = os.path.join(bindir, "client-side", "wanmux-client")
        self.keygen = os.path.join(bindir, "client-side", "wanmux-keygen")
        self.server = os.path.join(bindir, "server-side", "wanmux-server")
        for b in (self.client, self.keygen, self.server):
            if not os.access(b, os.X_OK):
                sys.exit(f"wmharness: {b} not found or not executable; build first "
                         f"(cmake --build {bindir})")
        self.sanitized = False
        try:
            with open(os.path.join(bindir, "CMakeCache.txt")) as f:
                self.sanitized = re.search(r"^WM_SANITIZE:BOOL=(ON|1|TRUE|YES)",
                                           f.read(), re.M | re.I) is not None
        except OSError:
            pass


# --------------------------------------------------------------------------
# Processes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_all_daemons = []


def _die_with_parent():
    # If this test is killed (ctest timeout, ^C), take the daemon with it.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_all():
    for d in list(_all_daemons):
        d.kill()


atexit.register(_kill_all)


def _on_fatal_signal(sig, frame):
    _kill_all()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


for _s in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, _on_fatal_signal)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """A daemon we started; stderr (and stdout) go to a log file."""

    def __init__(self, name, argv, logpath, nofile=None):
        """nofile: (soft, hard) RLIMIT_NOFILE for the daemon, or None."""
        self.name = name
        self.argv = argv
        self.logpath = logpath
        self.rc = None
        self.stats_line = None

        def preexec():
            _die_with_parent()
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        with open(logpath, "ab") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, preexec_fn=preexec)
        self.pid = self.proc.pid
        _all_daemons.append(self)

    def __repr__(self):
        return f"{self.name}[{self.pid}]"

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def mark(self):
        """An offset into the log; wait_log(since=mark) only looks after it."""
        return os.path.getsize(self.logpath)

    def log_since(self, since=0):
        with open(self.logpath, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def count(self, regex, since=0):
        return len(re.findall(regex, self.log_since(since), re.M))

    def wait_log(self, regex, timeout, since=0, count=1):
        """Wait until regex has matched count times in the log after since;
        returns the last match. Fails if the daemon exits first."""
        deadline = time.monotonic() + timeout
        while True:
            matches = list(re.finditer(regex, self.log_since(since), re.M))
            if len(matches) >= count:
                return matches[count - 1]
            if not self.alive():
                # One more read: the line may have landed just before exit.
                matches = list(re.finditer(regex, self.log_since(since), re.M))
                if len(matches) >= count:
                    return matches[count - 1]
                raise TestFailure(f"{self} exited (rc {self.proc.returncode}) before "
                                  f"logging {regex!r} x{count}")
            if time.monotonic() > deadline:
                raise TestFailure(f"{self} did not log {regex!r} x{count} within "
                                  f"{timeout:.1f} s (got {len(matches)})")
            time.sleep(0.05)

    def summary(self):
        """The server's counters from its summary lines at SIGTERM (call after
        stop()): refused targets/tunnels/listens, limits, and the closes by
        kind. Refusal lines are throttled (LOG_THROTTLE_S), so counts come from
        here, not from counting lines."""
        text = self.log_text()
        out = {}
        m = re.search(r"refused so far: (\d+) targets, (\d+) tunnels, (\d+) listens, (\d+) "
                      r"over --max-unauth, (\d+) over --handshake-rate, (\d+) over "
                      r"--open-rate", text)
        if m:
            out.update(zip(("targets", "tunnels", "listens", "unauth", "handshake_rate",
                            "open_rate"), (int(x) for x in m.groups())))
        m = re.search(r"closed so far: (\d+) bad MACs, (\d+) failed handshakes, (\d+) "
                      r"handshake timeouts, (\d+) bad records, (\d+) protocol errors, "
                      r"(\d+) silent peers", text)
        if m:
            out.update(zip(("bad_mac", "bad_handshake", "handshake_timeout", "bad_record",
                            "protocol_error", "silent"), (int(x) for x in m.groups())))
        if not out:
            raise TestFailure(f"{self} logged no summary counters")
        return out

    def cpu(self):
        return cpu_seconds(self.pid)

    def stop(self, sig=signal.SIGTERM, timeout=None, expect_rc=0):
        """Send sig, wait for exit; checks the exit code and the log for
        sanitizer reports. Returns (rc, seconds it took)."""
        timeout = t(5) if timeout is None else timeout
        t0 = time.monotonic()
        if self.alive():
            self.proc.send_signal(sig)
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure(f"{self} did not exit within {timeout:.1f} s of signal {sig}")
        took = time.monotonic() - t0
        self._forget()
        m = re.search(r"^.*stats: .*$", self.log_text(), re.M)
        if m:
            self.stats_line = m.group(0)
        self.check_sanitizer()
        if expect_rc is not None:
            check(self.rc == expect_rc,
                  f"{self} exited with {self.rc} after signal {sig}, expected {expect_rc}")
        return self.rc, took

    def kill(self):
        """SIGKILL, no checks."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.rc = self.proc.returncode
        self._forget()

    def _forget(self):
        if self in _all_daemons:
            _all_daemons.remove(self)

    def check_sanitizer(self):
        m = SANITIZER_RE.search(self.log_text())
        check(m is None, f"{self}: sanitizer report in {self.logpath}: {m and m.group(0)}")

    def tail(self, n=40):
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:])


def parse_stats(line):
    """The client's 'stats: k=v ...' line as a dict of numbers."""
    check(line is not None, "client logged no stats line")
    out = {}
    for k, v in re.findall(r"(\w+)=([0-9.]+)", line.split("stats:", 1)[1]):
        out[k] = float(v) if "." in v else int(v)
    return out


def run_cmd(argv, timeout=None, env=None):
    """Run a command to completion: (rc, stdout, stderr)."""
    timeout = t(10) if timeout is None else timeout
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       env=env, preexec_fn=_die_with_parent)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    m = SANITIZER_RE.search(err)
    if m:
        raise TestFailure(f"{' '.join(argv)}: sanitizer report (exit {p.returncode}):\n"
                          + "\n".join(err.splitlines()[:40]))
    return p.returncode, out, err


# --------------------------------------------------------------------------
# Ports and sockets

_recent_ports = []


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (bind port 0), and not one this
    process handed out lately: the kernel may give the same port to two
    calls in a row when nothing has bound the first yet (two clients started
    without waiting, under valgrind, got the same forward port)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((host, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _recent_ports:
            break
    _recent_ports.append(port)
    del _recent_ports[:-256]
    return port


def connect(port, host="127.0.0.1", timeout=None):
    timeout = t(10) if timeout is None else timeout
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_all(sock, hasher=None, limit=None):
    """Read to EOF; returns bytes (or the count if hasher is given)."""
    chunks = []
    n = 0
    while True:
        b = sock.recv(256 * 1024)
        if not b:
            break
        n += len(b)
        if hasher is not None:
            hasher.update(b)
        else:
            chunks.append(b)
        if limit is not None and n > limit:
            raise TestFailure(f"received more than {limit} bytes")
    return n if hasher is not None else b"".join(chunks)


def send_all(sock, data, chunk=256 * 1024):
    mv = memoryview(data)
    for i in range(0, len(mv), chunk):
        sock.sendall(mv[i:i + chunk])


def sha(data):
    return hashlib.sha256(data).hexdigest()


def upload(port, data, timeout=None):
    """Send data, half-close, return the sink's reply (hex SHA-256)."""
    with connect(port, timeout=timeout) as s:
        send_all(s, data)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s, limit=1024).decode(errors="replace").strip()


def download(port, timeout=None):
    """Read to EOF: (byte count, hex SHA-256)."""
    with connect(port, timeout=timeout) as s:
        s.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        n = recv_all(s, hasher=h)
        return n, h.hexdigest()


def wait_closed(sock, timeout):
    """Wait until the peer closes sock (EOF or reset), draining data.
    Returns (seconds, how) or raises TestFailure."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure(f"connection still open after {timeout:.1f} s")
        sock.settimeout(min(left, 0.5))
        try:
            b = sock.recv(256 * 1024)
        except socket.timeout:
            continue
        except OSError as e:
            return time.monotonic() - t0, f"error: {e.strerror or e}"
        if not b:
            return time.monotonic() - t0, "EOF"


def parallel(fns, timeout):
    """Run callables in threads; returns their results in order, raises the
    first exception, or TestFailure if they do not finish in time."""
    results = [None] * len(fns)
    errors = [None] * len(fns)

    def run(i):
        try:
            results[i] = fns[i]()
        except BaseException as e:  # noqa: BLE001 - reported below
            e.where = traceback.format_exc(limit=-3)
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(fns))]
    for th in threads:
        th.start()
    deadline = time.monotonic() + timeout
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(th.is_alive() for th in threads)
    if stuck:
        raise TestFailure(f"{stuck} of {len(fns)} transfers not finished within {timeout:.1f} s")
    for i, e in enumerate(errors):
        if e is not None:
            if isinstance(e, TestFailure):
                raise e
            raise TestFailure(f"transfer {i} failed: {type(e).__name__}: {e}\n"
                              f"{getattr(e, 'where', '')}") from e
    return results


# --------------------------------------------------------------------------
# Test data

_WORDS = """the of and to a in is that for it as was with be by on not he this are or his
from at which but have an they you were her she there been one all we their has would when
if so no will more out up into do any your what some can only other time new about than may
these two very after first also made over such our most where between through even down
many before those should under being because while each people state world years still
during against without might again place around however small another general number
water system government company problem question report service program market network
office branch server client connection traffic packet latency bandwidth satellite window
morning evening river mountain village harbour garden library kitchen station journey
quickly slowly carefully suddenly quietly rarely always never often perhaps together
remember consider include continue describe explain develop provide receive understand
important different possible available particular national political economic public
local social certain several special strong simple early recent private natural common
""".split()
_LONG = """administration communication infrastructure responsibility international
environmental organisation transportation representative accommodation
photographic agricultural manufacturing archaeological pharmaceutical
""".split()


def make_text(size, seed=1):
    """English-like text: Zipf-weighted words grouped into common phrases,
    sentences and paragraphs, with numbers and punctuation; not one repeated
    line. Compresses about 3x with zlib -6, 2.6x with zlib -1."""
    rng = random.Random(seed)
    words = _WORDS + _LONG
    wcum = list(itertools.accumulate(
        [1.0 / (i + 1) ** 0.9 for i in range(len(_WORDS))] + [0.002] * len(_LONG)))
    phrases = [" ".join(rng.choices(words, cum_weights=wcum, k=rng.randint(2, 5)))
               for _ in range(2000)]
    pcum = list(itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(len(phrases))))
    pool = []
    for _ in range(40000):
        ps = rng.choices(phrases, cum_weights=pcum, k=rng.randint(2, 5))
        if rng.random() < 0.3:
            ps.insert(rng.randrange(1, len(ps)), str(rng.randint(2, 99999)))
        if rng.random() < 0.25:
            ps[rng.randrange(0, len(ps))] += ","
        s = " ".join(ps)
        pool.append(s[0].upper() + s[1:] + rng.choice(".....?!;"))
    parts = []
    total = 0
    while total < size:
        para = " ".join(rng.choices(pool, k=rng.randint(2, 9))) + "\n\n"
        parts.append(para)
        total += len(para)
    return "".join(parts).encode()[:size]


def make_random(size, seed=None):
    if seed is None:
        return os.urandom(size)
    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------
# Target servers (threads)

class TargetServer:
    """Listens on 127.0.0.1 (or host), counts accepts, runs handle() per
    connection in a thread. Errors in handlers are kept in .errors."""

    def __init__(self, host="127.0.0.1", port=0, family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self.errors = []
        self.results = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._conns = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                idx = self.accepts
                self.accepts += 1
                self._conns.append(c)
            c.settimeout(t(60))
            threading.Thread(target=self._run, args=(c, idx), daemon=True).start()

    def _run(self, c, idx):
        try:
            self.handle(c, idx)
        except Exception as e:  # noqa: BLE001 - kept for the test to check
            with self.lock:
                self.errors.append(f"conn {idx}: {type(e).__name__}: {e}")
        finally:
            try:
                c.close()
            except OSError:
                pass

    def handle(self, conn, idx):
        conn.close()

    def add_result(self, r):
        with self.lock:
            self.results.append(r)

    def wait_results(self, n, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.results) >= n:
                    return list(self.results)
            time.sleep(0.02)
        raise TestFailure(f"target on port {self.port}: {len(self.results)} of {n} "
                          f"results within {timeout:.1f} s; errors: {self.errors}")

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass
        self._thread.join(2)


class EchoServer(TargetServer):
    """Echoes everything; half-closes after EOF."""

    def handle(self, c, idx):
        n = 0
        while True:
            b = c.recv(256 * 1024)
            if not b:
                break
            n += len(b)
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
        self.add_result(n)


class SinkServer(TargetServer):
    """Reads to EOF, hashes, answers with the SHA-256 hex and a newline.
    results: (byte count, hex)."""

    def handle(self, c, idx):
        h = hashlib.sha256()
        n = recv_all(c, hasher=h)
        c.sendall((h.hexdigest() + "\n").encode())
        c.shutdown(socket.SHUT_WR)
        self.add_result((n, h.hexdigest()))


class SourceServer(TargetServer):
    """Sends data (bytes, or data(idx) -> bytes) then half-closes and waits
    for the peer to close. results: (idx, byte count, hex)."""

    def __init__(self, data, **kw):
        self.data = data
        super().__init__(**kw)

    def handle(self, c, idx):
        data = self.data(idx) if callable(self.data) else self.data
        send_all(c, data)
        c.shutdown(socket.SHUT_WR)
        self.add_result((idx, len(data), sha(data)))
        try:
            recv_all(c, hasher=hashlib.sha256())
        except OSError:
            pass


class FuncServer(TargetServer):
    """Runs fn(conn, idx, server) per connection."""

    def __init__(self, fn, **kw):
        self.fn = fn
        super().__init__(**kw)

    def handle(self, c, idx):
        self.fn(c, idx, self)


class RecorderServer(TargetServer):
    """Accepts, records, closes."""


class RefusingPort:
    """A port that refuses connections: bound, never listening, so nothing
    else takes it while the test runs."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]

    def stop(self):
        self.sock.close()


# --------------------------------------------------------------------------
# A test environment: temp dir, keys, daemons, targets

# SIGTERM drains open streams for up to --drain-timeout (30 s by default). A
# test that leaves a connection open when it stops the daemons should not
# wait that long: unless the test gives its own, daemons get this.
DRAIN_TIMEOUT = "2"


def _drain_default(extra):
    extra = list(extra)
    if not any(str(a).startswith("--drain-timeout") for a in extra):
        extra += ["--drain-timeout", DRAIN_TIMEOUT]
    return extra


class Env:
    def __init__(self, args, name):
        self.args = args
        self.bins = args.bins
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"wm-{name}-")
        self.daemons = []
        self.targets = []
        self.failed = False
        self.server_key, self.server_pub = self.keygen("server.key")
        self.client_key, self.client_pub = self.keygen("client.key")

    def path(self, name):
        return os.path.join(self.dir, name)

    def keygen(self, name, psk=False):
        """Make a key (or PSK) file; returns (path, public key or None)."""
        path = self.path(name)
        argv = [self.bins.keygen] + (["--psk"] if psk else []) + [path]
        rc, out, err = run_cmd(argv)
        check(rc == 0, f"{' '.join(argv)} failed with {rc}: {err.strip()}")
        return path, (None if psk else out.strip())

    def write(self, name, text, mode=0o600):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def target(self, server):
        self.targets.append(server)
        return server

    def start_server(self, allow, port=None, authorized=None, key=None, psk=None,
                     extra=(), wait=True, name="server", log_level="debug"):
        """Start wanmux-server; authorized: list of public keys (default: this
        env's client key). Waits for 'listening on' unless wait is False."""
        port = port or free_port()
        if authorized is None:
            authorized = [self.client_pub]
        auth = self.write(f"{name}.authorized",
                          "".join(f"{k} test key\n" for k in authorized), 0o644)
        argv = [self.bins.server, "--listen", f"127.0.0.1:{port}",
                "--key", key or self.server_key, "--authorized-keys", auth]
        for rule in allow:
            argv += ["--allow", rule]
        if psk:
            argv += ["--psk", psk]
        if log_level:
            argv += ["--log-level", log_level]
        argv += _drain_default(extra)
        d = Daemon(name, argv, self.path(f"{name}.log"))
        d.port = port
        self.daemons.append(d)
        if wait:
            d.wait_log(r"listening on 127\.0\.0\.1:%d" % port, t(10))
        return d

    def start_client(self, server_port, forwards, key=None, server_key=None, tunnels=None,
                     compress=None, psk=None, extra=(), wait=True, name="client",
                     log_level="debug"):
        """Start wanmux-client; forwards: list of (lport, host, port).
        Waits for all tunnels up unless wait is False. A --server in extra
        takes the place of 127.0.0.1:server_port (--server is repeatable:
        both would make two servers)."""
        server = [] if "--server" in extra else ["--server", f"127.0.0.1:{server_port}"]
        argv = [self.bins.client, *server,
                "--key", key or self.client_key,
                "--server-key", server_key or self.server_key + ".pub"]
        for lport, host, port in forwards:
            argv += ["--forward", f"{lport}:{host}:{port}"]
        if tunnels is not None:
            argv += ["--tunnels", str(tunnels)]
        if compress:
            argv += ["--compress", compress]
        if psk:
            argv += ["--psk", psk]
        if log_level:
            argv += ["--log-level", log_level]
        argv += _drain_default(extra)
        d = Daemon(name, argv, self.path(f"{name}.log"))
        d.tunnels = tunnels or 4
        self.daemons.append(d)
        if wait:
            d.wait_log(r"connected to ", t(10))
            d.wait_log(r"tunnel \d+ to \S+ up", t(10), count=d.tunnels)
            for lport, _, _ in forwards:
                d.wait_log(r"forwarding 127\.0\.0\.1:%d " % lport, t(5))
        return d

    def dump_logs(self, n=40):
        for d in self.daemons:
            print(f"---- last {n} lines of {d.name} log ({d.logpath}, pid {d.pid}, "
                  f"rc {d.proc.poll()}) ----")
            print(d.tail(n))
        for tg in self.targets:
            if getattr(tg, "errors", None):
                print(f"---- target on port {tg.port} errors: {tg.errors}")

    def finish(self):
        """Stop what is still running: SIGTERM, expect exit 0 and no
        sanitizer reports."""
        problems = []
        for d in self.daemons:
            try:
                if d.proc.poll() is None and d in _all_daemons:
                    d.stop()
                else:
                    d.check_sanitizer()
            except TestFailure as e:
                problems.append(str(e))
        if problems:
            raise TestFailure("; ".join(problems))

    def close(self):
        for d in self.daemons:
            d.kill()
        for tg in self.targets:
            tg.stop()
        if self.failed or self.args.keep:
            print(f"     (logs kept in {self.dir})")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Running tests

def known_bug(description):
    """Mark a test that fails because of a daemon bug: it still runs and
    still fails (loudly, with the description); a pass is reported too, so
    the mark can be removed."""
    def deco(fn):
        fn.known_bug = description
        return fn
    return deco


def run_tests(tests, args):
    """Run each test(env) in its own Env; print PASS/FAIL lines and a
    summary; returns the process exit code."""
    passed = failed = 0
    print(f"wanmux integration: bindir {args.bindir}"
          f"{' (sanitizer build)' if args.bins.sanitized else ''}, timeout scale {SCALE:g}")
    for fn in tests:
        if args.only and args.only not in fn.__name__:
            continue
        env = Env(args, fn.__name__)
        t0 = time.monotonic()
        err = None
        try:
            fn(env)
            env.finish()
        except TestFailure as e:
            err = str(e)
        except Exception as e:  # noqa: BLE001 - any error fails the test
            err = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        took = time.monotonic() - t0
        bug = getattr(fn, "known_bug", None)
        if err is None:
            passed += 1
            print(f"PASS {fn.__name__} ({took:.1f} s)"
                  + (f"  [marked known_bug but passed: {bug}]" if bug else ""))
        else:
            failed += 1
            env.failed = True
            print(f"FAIL {fn.__name__} ({took:.1f} s): {err}")
            if bug:
                print(f"     KNOWN DAEMON BUG: {bug}")
            env.dump_logs()
        env.close()
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


def main(tests, description):
    args = parse_args(description)
    try:
        rc = run_tests(tests, args)
    finally:
        _kill_all()
    sys.exit(rc)


# --------------------------------------------------------------------------
# Front ends: SOCKS5, HTTP proxy, transparent and reverse forwards
# (used by test_socks, test_httpproxy, test_transparent, test_reverse)

def start_frontend_client(env, server_port, socks=None, http=None, transparent=None,
                          reverse=(), extra=(), wait=True, name="client", **kw):
    """Start wanmux-client with front ends instead of (or besides) forwards:
    socks/http/transparent are ports (or "ADDR:PORT" strings), reverse a list
    of --reverse specs. Waits for the tunnels and each front end's 'on
    ADDR:PORT' line unless wait is False. kw goes to Env.start_client."""
    argv = []
    waits = []
    for opt, what, val in (("--socks", "SOCKS5 proxy", socks),
                           ("--http-proxy", "HTTP proxy", http),
                           ("--transparent", "transparent proxy", transparent)):
        if val is None:
            continue
        argv += [opt, str(val)]
        spec = str(val)
        addr, port = (spec.rsplit(":", 1) if ":" in spec else ("127.0.0.1", spec))
        waits.append(r"%s on %s:%s" % (what, re.escape(addr.strip("[]")), port))
    for spec in reverse:
        argv += ["--reverse", spec]
    argv += list(extra)
    d = env.start_client(server_port, kw.pop("forwards", []), extra=argv, wait=wait,
                         name=name, **kw)
    if wait:
        for rx in waits:
            d.wait_log(rx, t(5))
    return d


class HttpOrigin(TargetServer):
    """A tiny HTTP/1.x origin: reads one request head, records it in .heads
    (bytes, up to and including the blank line), answers GET /NAME with
    files[NAME] (bytes) or 404, always with Connection: close."""

    def __init__(self, files=None, **kw):
        self.files = dict(files or {})
        self.heads = []
        super().__init__(**kw)

    def handle(self, c, idx):
        head = b""
        while b"\r\n\r\n" not in head:
            b = c.recv(65536)
            if not b:
                break
            head += b
            if len(head) > 1 << 20:
                raise TestFailure("origin: request head over 1 MiB")
        head = head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        with self.lock:
            self.heads.append(head)
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        path = parts[1].decode(errors="replace") if len(parts) >= 2 else "/"
        body = self.files.get(path.lstrip("/"))
        status = b"200 OK" if body is not None else b"404 Not Found"
        if body is None:
            body = b"not found\n"
        c.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: " + str(len(body)).encode() +
                  b"\r\nConnection: close\r\n\r\n")
        send_all(c, body)
        c.shutdown(socket.SHUT_WR)
        self.add_result((path, len(body)))
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass


def have_ipv6_loopback():
    """(True, "") if [::1] can be bound, else (False, why)."""
    if not socket.has_ipv6:
        return False, "Python has no IPv6 support"
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
    except OSError as e:
        return False, f"cannot bind [::1]: {e.strerror or e}"
    return True, ""


def need_program(name):
    """Path of a program, or a TestFailure saying which package to install."""
    p = shutil.which(name)
    check(p is not None, f"{name} not found in PATH (install it: apt-get install {name})")
    return p


def curl(env, args, timeout=None, out=None):
    """Run curl -sS with args (a list); returns (rc, body bytes, stderr text).
    With out, the body goes to that file and body is its SHA-256 hex."""
    exe = need_program("curl")
    timeout = t(30) if timeout is None else timeout
    argv = [exe, "-sS", "--max-time", str(int(timeout)), "--noproxy", ""] + list(args)
    if out:
        argv += ["-o", out]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout + 5, env={"PATH": os.environ.get("PATH", ""),
                                                     "HOME": env.dir},
                           preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"{' '.join(argv)}: still running after {timeout + 5:.0f} s")
    body = p.stdout
    if out and p.returncode == 0:
        hsh = hashlib.sha256()
        with open(out, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                hsh.update(chunk)
        body = hsh.hexdigest()
    return p.returncode, body, p.stderr.decode(errors="replace")


# SOCKS5 constants (RFC 1928)
SOCKS5_CONNECT, SOCKS5_BIND, SOCKS5_UDP = 1, 2, 3
SOCKS5_IPV4, SOCKS5_DOMAIN, SOCKS5_IPV6 = 1, 3, 4


def socks5_greet(sock, methods=(0,)):
    """Send a greeting; returns the chosen method byte (0xFF: none acceptable).
    Raises TestFailure on a short or malformed answer."""
    sock.sendall(bytes([5, len(methods)]) + bytes(methods))
    ans = recv_exact(sock, 2)
    check(ans[0] == 5, f"SOCKS5 method answer version {ans[0]}, expected 5")
    return ans[1]


def socks5_userpass(sock, user, password):
    """RFC 1929 sub-negotiation; returns the status byte (0 = success)."""
    u, p = user.encode(), password.encode()
    sock.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
    ans = recv_exact(sock, 2)
    check(ans[0] == 1, f"RFC 1929 answer version {ans[0]}, expected 1")
    return ans[1]


def socks5_request_bytes(cmd, atyp, addr, port):
    if atyp == SOCKS5_IPV4:
        a = socket.inet_pton(socket.AF_INET, addr)
    elif atyp == SOCKS5_IPV6:
        a = socket.inet_pton(socket.AF_INET6, addr)
    elif atyp == SOCKS5_DOMAIN:
        a = bytes([len(addr.encode())]) + addr.encode()
    else:
        a = addr if isinstance(addr, bytes) else b""
    return bytes([5, cmd, 0, atyp]) + a + port.to_bytes(2, "big")


def socks5_read_reply(sock):
    """Read a SOCKS5 reply; returns the REP byte."""
    head = recv_exact(sock, 4)
    check(head[0] == 5, f"SOCKS5 reply version {head[0]}, expected 5")
    atyp = head[3]
    if atyp == SOCKS5_IPV4:
        recv_exact(sock, 4 + 2)
    elif atyp == SOCKS5_IPV6:
        recv_exact(sock, 16 + 2)
    elif atyp == SOCKS5_DOMAIN:
        n = recv_exact(sock, 1)[0]
        recv_exact(sock, n + 2)
    else:
        raise TestFailure(f"SOCKS5 reply with address type {atyp}")
    return head[1]


def socks5_connect(port, cmd, atyp, addr, dport, auth=None, timeout=None):
    """Full SOCKS5 exchange with the proxy on 127.0.0.1:port; returns
    (REP, socket). auth: (user, password) or None."""
    s = connect(port, timeout=timeout or t(15))
    try:
        if auth:
            m = socks5_greet(s, (2,))
            check(m == 2, f"SOCKS5: asked for username/password, server chose {m:#x}")
            st = socks5_userpass(s, *auth)
            check(st == 0, f"SOCKS5: credentials rejected (status {st})")
        else:
            m = socks5_greet(s, (0,))
            check(m == 0, f"SOCKS5: asked for no authentication, server chose {m:#x}")
        s.sendall(socks5_request_bytes(cmd, atyp, addr, dport))
        return socks5_read_reply(s), s
    except BaseException:
        s.close()
        raise


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        check(b, f"connection closed after {len(buf)} of {n} expected bytes")
        buf += b
    return buf


def make_tls_cert(env, cn="localhost"):
    """A throwaway self-signed certificate: (cert path, key path)."""
    exe = need_program("openssl")
    cert, key = env.path("tls.crt"), env.path("tls.key")
    rc, _, err = run_cmd([exe, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                          "-subj", f"/CN={cn}", "-days", "1", "-keyout", key, "-out", cert],
                         timeout=t(30))
    check(rc == 0, f"openssl req failed ({rc}): {err.strip()[-300:]}")
    return cert, key


def http_exchange(port, data, timeout=None, host="127.0.0.1"):
    """Send data to a proxy, read to EOF (or reset); returns (status code or
    None, whole answer bytes)."""
    s = connect(port, host=host, timeout=timeout or t(15))
    try:
        try:
            send_all(s, data)
        except OSError:
            pass  # the proxy may answer and close before reading it all
        buf = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                buf += b
        except ConnectionResetError:
            pass
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", buf)
    return (int(m.group(1)) if m else None), buf


# --------------------------------------------------------------------------
# Valgrind (opt-in): WM_VALGRIND=1 runs every wanmux daemon under memcheck.
# Timeouts are scaled by VALGRIND_SCALE (unless --timeout-scale or
# $WM_TIMEOUT_SCALE say otherwise); a daemon whose valgrind log reports an
# error or a definite/indirect leak fails its test when it is stopped
# (valgrind also exits with VALGRIND_RC, which stop() rejects). Daemons
# killed with SIGKILL are not checked: memcheck writes no report then.

VALGRIND = os.environ.get("WM_VALGRIND", "") not in ("", "0")
VALGRIND_SCALE = 10.0
VALGRIND_RC = 99
VALGRIND_ERRORS_RE = re.compile(r"ERROR SUMMARY: ([1-9]\d*) errors")
VALGRIND_LEAK_RE = re.compile(r"(definitely|indirectly) lost: ([1-9][\d,]*) bytes")


def valgrind_argv(argv, logpath):
    """argv wrapped in memcheck, its report in logpath."""
    exe = shutil.which("valgrind")
    if exe is None:
        raise TestFailure("WM_VALGRIND is set but valgrind is not installed "
                          "(apt-get install valgrind)")
    return [exe, "--quiet", f"--error-exitcode={VALGRIND_RC}", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect", "--track-fds=no", "--num-callers=30",
            f"--log-file={logpath}"] + list(argv)


def valgrind_report_problem(path):
    """None, or the first lines of a valgrind report that shows errors."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    if VALGRIND_ERRORS_RE.search(text) or VALGRIND_LEAK_RE.search(text) or \
            re.search(r"^==\d+== (Invalid|Conditional|Syscall param|Mismatched|"
                      r"Source and destination)", text, re.M):
        return "\n".join(text.splitlines()[:60])
    return None


_plain_parse_args = parse_args
_plain_daemon_init = Daemon.__init__
_plain_check_sanitizer = Daemon.check_sanitizer


def _valgrind_parse_args(description, extra=None):
    global SCALE
    args = _plain_parse_args(description, extra)
    if args.bins.sanitized:
        sys.exit("wmharness: WM_VALGRIND needs a build without WM_SANITIZE")
    if args.timeout_scale is None and not os.environ.get("WM_TIMEOUT_SCALE"):
        SCALE = VALGRIND_SCALE
        args.scale = SCALE
    args.valgrind = True
    return args


def _valgrind_daemon_init(self, name, argv, logpath):
    self.valgrind_log = None
    if os.path.basename(argv[0]).startswith("wanmux-"):
        self.valgrind_log = logpath + ".valgrind"
        argv = valgrind_argv(argv, self.valgrind_log)
    _plain_daemon_init(self, name, argv, logpath)


def _valgrind_check_sanitizer(self):
    _plain_check_sanitizer(self)
    if self.valgrind_log is not None and self.proc.poll() is not None:
        problem = valgrind_report_problem(self.valgrind_log)
        check(problem is None, f"{self}: valgrind reports errors ({self.valgrind_log}):\n"
                               f"{problem}")
        check(self.proc.returncode != VALGRIND_RC,
              f"{self}: valgrind exit code {VALGRIND_RC} (errors); see {self.valgrind_log}")


if VALGRIND:
    parse_args = _valgrind_parse_args
    Daemon.__init__ = _valgrind_daemon_init
    Daemon.check_sanitizer = _valgrind_check_sanitizer


# --------------------------------------------------------------------------
# Faults (used by test_faults, test_faults_kill, test_faults_lab): killing
# TCP connections with `ss -K`, paced streams that record the longest pause,
# and the netem lab (netem/lab.sh) with a namespace prefix of its own.

def supports_option(binary, option):
    """True if `binary --help` mentions option (e.g. --resume-timeout): lets a
    test run its behavioural part against a build that predates the option."""
    try:
        p = subprocess.run([binary, "--help"], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=t(10))
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option in (p.stdout + p.stderr).decode(errors="replace")


def ss_kill(filt, netns=None):
    """Destroy the established TCP sockets matching the ss filter filt (a
    list of ss filter words, e.g. ["dport", "=", "7700"]) with `ss -K`, in
    netns (a namespace name) or here. Returns the local:peer pairs killed."""
    argv = ["ss", "-K", "-tnH", "state", "established"] + list(filt)
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    rc, out, err = run_cmd(argv, timeout=t(10))
    check(rc == 0, f"{' '.join(argv)} failed ({rc}): {err.strip()}")
    return [tuple(line.split()[-2:]) for line in out.splitlines() if line.strip()]


def ss_list(filt, netns=None):
    """The established TCP sockets matching filt: list of (local, peer)."""
    argv = ["ss", "-tnH", "state", "established"] + list(filt)
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    rc, out, err = run_cmd(argv, timeout=t(10))
    check(rc == 0, f"{' '.join(argv)} failed ({rc}): {err.strip()}")
    return [tuple(line.split()[-2:]) for line in out.splitlines() if line.strip()]


def ss_kill_works():
    """None if `ss -K` can destroy a socket here (root, CONFIG_INET_DIAG_DESTROY),
    else why not. Probes with a loopback pair of its own."""
    if shutil.which("ss") is None:
        return "ss not found (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "not root (ss -K needs CAP_NET_ADMIN)"
    lst = socket.socket()
    try:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        port = lst.getsockname()[1]
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        a, _ = lst.accept()
        try:
            ss_kill(["dst", "127.0.0.1", "dport", "=", str(port)])
            c.settimeout(2)
            try:
                c.recv(1)
                return "ss -K did not destroy the socket (kernel without INET_DIAG_DESTROY?)"
            except socket.timeout:
                return "ss -K did not destroy the socket (kernel without INET_DIAG_DESTROY?)"
            except OSError:
                return None
        finally:
            c.close()
            a.close()
    except TestFailure as e:
        return str(e)
    finally:
        lst.close()


class Paced:
    """A stream of deterministic data sent in chunks at a steady pace, and
    the receiving end that hashes it and records the longest pause between
    two reads. Both ends are plain functions taking a socket, so either may
    run in a target server thread or in the test."""

    def __init__(self, seed, chunk=4096, interval=0.02, seconds=10.0):
        self.chunk = chunk
        self.interval = interval
        self.count = max(1, int(seconds / interval))
        self.data = make_random(self.chunk * self.count, seed=seed)
        self.digest = sha(self.data)
        self.sent = 0
        self.received = 0
        self.max_gap = 0.0
        self.max_gap_at = None  # monotonic time the longest pause ended
        self.pauses = []  # (monotonic time it ended, seconds) of pauses over 0.1 s
        self.result = None  # (bytes, hex) at the receiver

    def send(self, sock):
        """Send all chunks at the pace (catching up after a stall, not
        bursting past it), then half-close."""
        t0 = time.monotonic()
        mv = memoryview(self.data)
        for i in range(self.count):
            wait = t0 + i * self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sock.sendall(mv[i * self.chunk:(i + 1) * self.chunk])
            self.sent += self.chunk
        sock.shutdown(socket.SHUT_WR)

    def receive(self, sock):
        """Read to EOF; returns (bytes, hex SHA-256) and keeps the longest
        pause between reads (from the first byte on)."""
        hs = hashlib.sha256()
        last = None
        while True:
            b = sock.recv(256 * 1024)
            now = time.monotonic()
            if not b:
                break
            if last is not None and now - last > 0.1:
                self.pauses.append((now, now - last))
            if last is not None and now - last > self.max_gap:
                self.max_gap = now - last
                self.max_gap_at = now
            last = now
            self.received += len(b)
            hs.update(b)
        self.result = (self.received, hs.hexdigest())
        return self.result


def lab_prefix(letter, n=None):
    """A namespace prefix of 5 characters for netem/lab.sh: letter, the pid in
    base 36 (3 digits) and '-', so concurrent runs (release and ASan suites,
    a benchmark lab) do not collide. linkem needs PREFIX + 'datacenter' to
    stay under IFNAMSIZ (16)."""
    n = os.getpid() if n is None else n
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    for _ in range(3):
        s = digits[n % 36] + s
        n //= 36
    return f"{letter}{s}-"


class NetNs:
    """Context manager: the calling thread enters a named network namespace
    (sockets created inside stay in it) and goes back on exit."""

    CLONE_NEWNET = 0x40000000

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, self.CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns {self.name}: {os.strerror(e)}")
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        if _libc.setns(self.orig, self.CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns back: {os.strerror(e)}")
        os.close(self.orig)


class Lab:
    """netem/lab.sh with its own namespace prefix and state dir:
    namespaces PREFIX+'branch' (198.18.0.1) and PREFIX+'datacenter'
    (198.18.0.2)."""

    SCRIPT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "..", "..", "netem", "lab.sh"))
    BRANCH_ADDR, DC_ADDR = "198.18.0.1", "198.18.0.2"

    def __init__(self, bindir, letter):
        self.bindir = bindir
        self.prefix = lab_prefix(letter)
        self.run_dir = f"/run/wmx-lab-{letter}-{os.getpid()}"
        self.branch = self.prefix + "branch"
        self.dc = self.prefix + "datacenter"

    def env(self):
        env = dict(os.environ, WMX_LAB_PREFIX=self.prefix, WMX_LAB_RUN=self.run_dir)
        linkem = os.path.join(self.bindir, "netem", "linkem")
        if os.access(linkem, os.X_OK):
            env["WMX_LINKEM"] = linkem
        return env

    def cannot_run(self):
        """Why namespaces cannot be built here, or None."""
        if os.geteuid() != 0:
            return "not root (the lab needs network namespaces and TUN devices)"
        if not os.path.exists("/dev/net/tun"):
            return "no /dev/net/tun"
        if not os.path.exists(self.SCRIPT):
            return f"{self.SCRIPT} not found"
        probe = self.prefix + "probe"
        p = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
        if p.returncode != 0:
            return f"`ip netns add` fails: {p.stderr.decode(errors='replace').strip()}"
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return None

    def sh(self, *cmd, timeout=60, ok=True):
        p = subprocess.run(["bash", self.SCRIPT, *cmd], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, env=self.env())
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        if ok:
            check(p.returncode == 0, f"lab.sh {' '.join(cmd)} failed ({p.returncode}): "
                                     f"{out.strip()}")
        return out

    def up(self, *scenario):
        self.sh("down", ok=False)
        return self.sh("up", *scenario)

    def down(self):
        self.sh("down", ok=False)

    def ns_run(self, ns, argv, ok=True, stdin=None):
        """Run argv in namespace ns: (rc, output)."""
        p = subprocess.run(["ip", "netns", "exec", ns] + list(argv), capture_output=True,
                           input=stdin.encode() if stdin is not None else None,
                           timeout=t(20))
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        if ok:
            check(p.returncode == 0, f"in {ns}: {' '.join(argv)} failed ({p.returncode}): "
                                     f"{out.strip()}")
        return p.returncode, out

    def counters(self):
        """linkem's per-direction counters: {'a2b': {...}, 'b2a': {...}}."""
        out = self.sh("status")
        res = {}
        for m in re.finditer(r"linkem: (a2b|b2a) (.*)", out):
            res[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        return res
