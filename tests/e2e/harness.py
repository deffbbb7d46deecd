"""Shared helpers for sluice's end-to-end tests.

Everything runs on 127.0.0.1 with ephemeral ports. Every process a test starts is registered
with the test case and killed in its clean-up, even when the test fails; on failure the logs
of all of them are printed.

Run a file as: SLUICE_BIN=/abs/build/sluice /usr/bin/python3 test_X.py -v
"""
import atexit
import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
SLUICE_BIN = os.environ.get("SLUICE_BIN") or os.path.join(HERE, "..", "..", "build", "sluice")
NGINX_BIN = "/usr/sbin/nginx"
CURL_BIN = "/usr/bin/curl"
LOOPBACK = "127.0.0.1"

MiB = 1024 * 1024

# Never let a proxy variable send curl (or anything else) off the loopback.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.lower().endswith("_proxy") and not k.startswith("SLUICE_")}


def free_port():
    """A port that was free a moment ago, for peers that cannot bind port 0 and report it nor
    share a port (nginx, Prometheus): another process may take it before the peer binds it, so
    their start-up retries with another port. Everything else uses reserve_port()."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


_RESERVED = []  # the reserving sockets, open until this test process exits


@atexit.register
def _release_reserved():
    for s in _RESERVED:
        s.close()


def reserve_port(port=0):
    """A loopback port that no other process can take while this test process runs: a socket
    bound to it with SO_REUSEPORT, never listening, holds it. Connecting to it is refused until
    a peer that also sets SO_REUSEPORT listens there: sluice's listeners and upstream_app.py
    do, so a test can give them the port later (a restart on the same port, a fixed address in
    a configuration file). With port, reserves a port such a peer already listens on, so that
    it stays held after the peer is killed. e2e files run in parallel (ctest -j): a port that
    was merely free a moment ago could be taken by another file's peers in between."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((LOOPBACK, port))
    _RESERVED.append(s)
    return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns something true, which is returned; raises an
    AssertionError naming `what` after timeout seconds. Deadlines are generous: they only bound
    how long a failing test takes, the condition is what is tested."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.1f s" % (what, timeout))
        time.sleep(interval)


def proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def tcp_sockets(remote_port):
    """States of the IPv4 TCP sockets on this host connected to 127.0.0.1:remote_port, from
    /proc/net/tcp ('ESTABLISHED', 'CLOSE_WAIT', ...)."""
    names = {"01": "ESTABLISHED", "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
             "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
             "0A": "LISTEN", "0B": "CLOSING"}
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            rem_ip, rem_port = p[2].split(":")
            if rem_ip == "0100007F" and int(rem_port, 16) == remote_port:
                out.append(names.get(p[3], p[3]))
    return out


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------------------------
# Processes


def _die_with_parent():
    """In the child before exec: SIGTERM it when the test process dies (even by SIGKILL, e.g.
    a ctest timeout), so no peer outlives the test run."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Proc:
    """A child process whose stdout and stderr lines are collected by background threads."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        self.argv = list(argv)
        self.lines = []  # (stream, line) in arrival order
        self._cond = threading.Condition()
        # Its own process group, so that clean-up can reach children it forks (nginx workers).
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env if env is not None else CLEAN_ENV,
                                     cwd=cwd or HERE, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        self.pid = self.proc.pid
        self._threads = [threading.Thread(target=self._pump, args=(s, n), daemon=True)
                         for s, n in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))]
        for t in self._threads:
            t.start()

    def _pump(self, stream, tag):
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append((tag, raw.decode("utf-8", "replace").rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern, timeout=10.0, stream=None):
        """Waits for a line matching the regex; returns the match. Fails if the process exits."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self.lines):
                    tag, line = self.lines[seen]
                    seen += 1
                    if stream in (None, tag):
                        m = rx.search(line)
                        if m:
                            return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.lines)
                                 and not any(t.is_alive() for t in self._threads)):
                    raise AssertionError("%s: no line matching %r within %.1fs (exit %r)\n%s" % (
                        self.name, pattern, timeout, self.proc.poll(), self.log()))
                self._cond.wait(min(left, 0.1))

    def expect_line(self, pattern, timeout=10.0, stream=None):
        """wait_line during start-up: the process is killed if the line never comes."""
        try:
            return self.wait_line(pattern, timeout, stream)
        except BaseException:
            self.kill()
            raise

    def text(self, stream=None):
        with self._cond:
            return "\n".join(l for t, l in self.lines if stream in (None, t))

    def log(self):
        return "---- %s (pid %d): %s\n%s\n----" % (self.name, self.pid, " ".join(self.argv),
                                                  self.text())

    def alive(self):
        return self.proc.poll() is None

    def terminate(self, timeout=10.0):
        """SIGTERM, wait; returns the exit code (SIGKILL and None if it did not stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        self._close_pipes()
        return self.proc.returncode

    def _close_pipes(self):
        for t, f in zip(self._threads, (self.proc.stdout, self.proc.stderr)):
            t.join(2)
            if not t.is_alive():  # closing under a blocked reader would block too
                try:
                    f.close()
                except Exception:
                    pass

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._kill_group()
        self._close_pipes()

    def _kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the group this Proc created, nothing else
        except (ProcessLookupError, PermissionError):
            pass


# The first listener's port; further listeners follow it, comma-separated.
LISTEN_RX = (r"sluice: listening on 127\.0\.0\.1:(\d+)(?:, \S+)* \((\d+) workers?\), "
             r"upstream (.*), admin [^\s\"]*:(\d+)")


class Sluice(Proc):
    def __init__(self, args=(), env_extra=None, defaults=True, upstream=None, workers=1,
                 subcommand=None, wrapper=()):
        argv = list(wrapper) + [SLUICE_BIN]  # wrapper: e.g. ["prlimit", "--nofile=64:64"]
        if subcommand:
            argv.append(subcommand)
        if defaults:
            argv += ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
            # Tests stop sluice with SIGTERM, which starts a drain: without a delay it is quick.
            # Tests of the drain pass their own.
            if subcommand in (None, "demo") and "--drain-delay" not in args:
                argv += ["--drain-delay", "0s"]
        if workers is not None:
            argv += ["--workers", str(workers)]
        if upstream is not None:
            argv += ["--upstream", "127.0.0.1:%d" % upstream]
        argv += list(args)
        env = dict(CLEAN_ENV)
        env.update(env_extra or {})
        super().__init__("sluice", argv, env=env)
        m = self.expect_line(LISTEN_RX, timeout=10, stream="err")
        self.port = int(m.group(1))
        self.workers = int(m.group(2))
        self.upstream = m.group(3)
        self.admin_port = int(m.group(4))

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def memory(self):
        return proc_status(self.pid)


class AioUpstream(Proc):
    """upstream_app.py (aiohttp) in a subprocess; with unix=PATH on a Unix-domain socket there
    (port is then None), with args passed on as they are (e.g. TLS)."""

    def __init__(self, keepalive_timeout=None, idle_close=None, name=None, host=None, port=0,
                 unix=None, args=()):
        argv = [PYTHON, os.path.join(HERE, "upstream_app.py"), "--port", str(port)]
        if unix is not None:
            argv += ["--unix", unix]
        argv += list(args)
        if name is not None:
            argv += ["--name", name]
        if host is not None:
            argv += ["--host", host]
        if keepalive_timeout is not None:
            argv += ["--keepalive-timeout", str(keepalive_timeout)]
        if idle_close is not None:
            argv += ["--idle-close", str(idle_close)]
        super().__init__("aiohttp-upstream", argv)
        self.unix = unix
        if unix is not None:
            self.expect_line(r"^UNIX ", stream="out")
            self.port = None
        else:
            self.port = int(self.expect_line(r"^PORT (\d+)", stream="out").group(1))

    def stats(self):
        if self.unix is not None:
            cp = curl("--unix-socket", self.unix, "http://localhost/stats", timeout=15)
            return json.loads(cp.stdout)
        return json.loads(direct_get(self.port, "/stats").body)


class FaultUpstream(Proc):
    """fault_upstream.py (raw asyncio) in a subprocess."""

    def __init__(self, mode, args=()):
        argv = [PYTHON, os.path.join(HERE, "fault_upstream.py"), "--mode", mode] + list(args)
        super().__init__("fault-upstream-" + mode, argv)
        m = self.expect_line(r"^PORT (\d+) CONTROL (\d+)", stream="out")
        self.port = int(m.group(1))
        self.control_port = int(m.group(2))

    def stats(self):
        return json.loads(direct_get(self.control_port, "/stats").body)

    def reset(self):
        c = RawClient(self.control_port)
        c.send(b"POST /reset HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        c.read_response()
        c.close()


NGINX_CONF = """
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 1024; }}
http {{
    default_type text/plain;
    log_format conn '$connection $connection_requests $request_method $request_uri $status '
                    '$request_length $body_bytes_sent';
    access_log {tmp}/access.log conn;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_timeout {keepalive_timeout};
    keepalive_requests 100000;
    sendfile on;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {tmp}/www;
        client_max_body_size 0;
        location = / {{ return 200 "hello from nginx\\n"; }}
        location = /post {{ return 200 "nginx got $request_method len=$content_length\\n"; }}
        location = /headers {{
            return 200 "host=$http_host xff=$http_x_forwarded_for proto=$http_x_forwarded_proto rid=$http_x_request_id\\n";
        }}
        location = /conn {{ return 200 "$connection $connection_requests\\n"; }}
        location /files/ {{ }}
    }}
}}
"""


class Nginx(Proc):
    """Debian's nginx as an upstream, configured in a private temporary directory."""

    def __init__(self, keepalive_timeout="75s", files=None):
        """files: {name: size} (sparse zeros) or {name: ("mixed", size)} (write_mixed_file;
        its digest in .digests[name])."""
        self.tmp = tempfile.mkdtemp(prefix="sluice-e2e-nginx-")
        os.chmod(self.tmp, 0o755)
        os.makedirs(os.path.join(self.tmp, "www", "files"))
        self.digests = {}
        for name, size in (files or {}).items():
            path = os.path.join(self.tmp, "www", "files", name)
            if isinstance(size, tuple) and size[0] == "mixed":
                self.digests[name] = write_mixed_file(path, size[1])
                continue
            with open(path, "wb") as f:
                f.truncate(size)  # sparse: nginx serves zeros
        user = "user root;" if os.geteuid() == 0 else ""
        last_error = None
        for _ in range(5):
            self.port = free_port()
            conf = os.path.join(self.tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(tmp=self.tmp, port=self.port, user=user,
                                          keepalive_timeout=keepalive_timeout))
            super().__init__("nginx", [NGINX_BIN, "-p", self.tmp, "-c", conf,
                                       "-g", "daemon off;"])
            if self._wait_ready():
                return
            last_error = self.log() + "\n" + self.error_log()
            self.kill()
        raise AssertionError("nginx did not start:\n%s" % last_error)

    def _wait_ready(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def kill(self):
        """nginx's master stops its workers on SIGTERM; SIGKILL the group only as a fallback."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        super().kill()

    def error_log(self):
        try:
            with open(os.path.join(self.tmp, "error.log")) as f:
                return f.read()
        except OSError:
            return ""

    def access_log(self):
        """Parsed access log lines: dicts with conn, conn_requests, method, uri, status."""
        out = []
        try:
            with open(os.path.join(self.tmp, "access.log")) as f:
                for line in f:
                    p = line.split()
                    if len(p) >= 5:
                        out.append({"conn": int(p[0]), "conn_requests": int(p[1]),
                                    "method": p[2], "uri": p[3], "status": int(p[4])})
        except OSError:
            pass
        return out

    def log(self):
        return super().log() + "\n---- nginx error.log\n" + self.error_log()

    def cleanup_files(self):
        subprocess.run(["rm", "-rf", self.tmp], check=False)


# ---------------------------------------------------------------------------------------------
# Raw HTTP/1.1 client


class IncompleteResponse(AssertionError):
    """The peer closed the connection before a whole response was read."""

    def __init__(self, msg, partial=None):
        super().__init__(msg)
        self.partial = partial


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []  # [(name, value)] in order
        self.trailers = []
        self.body = b""
        self.body_len = 0
        self.framing = None  # "length" | "chunked" | "close" | "none"
        self.informational = []  # 1xx responses before this one

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return self.header(name) is not None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s %r body_len=%d>" % (self.version, self.status, self.headers,
                                                   self.body_len)


class RawClient:
    """A blocking TCP client on 127.0.0.1 that reads HTTP/1.x responses byte-exactly."""

    open_clients = []  # closed by E2ETestCase's clean-up

    def __init__(self, port, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        RawClient.open_clients.append(self)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((LOOPBACK, port))
        self.buf = b""
        self.eof = False
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, n=262144):
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(n)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take(self, n):
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self, what):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise IncompleteResponse("EOF while reading %s (have %r)" % (what, self.buf[:200]))
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_head(self):
        """Reads one response head (any status); returns a Response without a body."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise IncompleteResponse("EOF before a full response head (have %r)" %
                                         self.buf[:300])
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        resp = Response()
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise AssertionError("bad status line %r" % lines[0])
        resp.version = parts[0]
        resp.status = int(parts[1])
        resp.reason = parts[2] if len(parts) > 2 else ""
        for line in lines[1:]:
            k, _, v = line.partition(":")
            resp.headers.append((k.strip(), v.strip()))
        return resp

    def read_response(self, method="GET", keep_body=True, return_1xx=False, on_data=None):
        """Reads one whole response. 1xx responses (other than 101) are collected in
        .informational unless return_1xx. Raises IncompleteResponse on a premature EOF."""
        informational = []
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101:
                if return_1xx:
                    return resp
                informational.append(resp)
                continue
            break
        resp.informational = informational
        body = []

        def deliver(data):
            resp.body_len += len(data)
            if keep_body:
                body.append(data)
            if on_data:
                on_data(data)

        te = ",".join(resp.header_all("Transfer-Encoding")).lower()
        cl = resp.header_all("Content-Length")
        if method == "HEAD" or resp.status in (204, 304) or resp.status == 101:
            resp.framing = "none"
        elif "chunked" in te:
            resp.framing = "chunked"
            while True:
                size_line = self._line("chunk size")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:
                        t = self._line("trailer")
                        if not t:
                            break
                        k, _, v = t.decode("latin-1").partition(":")
                        resp.trailers.append((k.strip(), v.strip()))
                    break
                while len(self.buf) < size + 2:
                    if not self._fill():
                        deliver(self._take(len(self.buf)))
                        raise IncompleteResponse("EOF inside a chunk", resp)
                deliver(self._take(size))
                if self._take(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
        elif cl:
            resp.framing = "length"
            left = int(cl[0])
            while left > 0:
                if not self.buf and not self._fill():
                    raise IncompleteResponse("EOF with %d of %s body bytes missing" %
                                             (left, cl[0]), resp)
                piece = self._take(min(left, len(self.buf)))
                left -= len(piece)
                deliver(piece)
        else:
            resp.framing = "close"
            while True:
                if self.buf:
                    deliver(self._take(len(self.buf)))
                if not self._fill():
                    break
        resp.body = b"".join(body)
        return resp

    def read_until_close(self, timeout=10.0):
        self.sock.settimeout(timeout)
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def closed_within(self, timeout):
        """True when the peer closes (EOF or reset) within timeout seconds; data that arrives
        meanwhile is kept in the buffer."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                self._fill()
        return True

    def peek(self):
        """Bytes already received (buffered or in the socket), without blocking or consuming."""
        if self.buf:
            return self.buf
        r, _, _ = select.select([self.sock], [], [], 0)
        if not r:
            return b""
        try:
            return self.sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (ConnectionResetError, BlockingIOError):
            return b""

    def is_open(self):
        """A non-blocking check that the peer has not closed the connection."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], 0)
        if not r:
            return True
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except (ConnectionResetError, BlockingIOError):
            return False
        return bool(data)


def request_bytes(method, path, headers=None, body=None, version="HTTP/1.1", host="test.local"):
    lines = ["%s %s %s" % (method, path, version)]
    names = {k.lower() for k, _ in (headers or [])}
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in headers or []:
        lines.append("%s: %s" % (k, v))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def http(port, method, path, headers=None, body=None, timeout=15.0, keep_body=True):
    """One request on a fresh connection (Connection: close); returns the Response."""
    c = RawClient(port, timeout=timeout)
    try:
        c.send(request_bytes(method, path, list(headers or []) + [("Connection", "close")], body))
        return c.read_response(method=method, keep_body=keep_body)
    finally:
        c.close()


def direct_get(port, path):
    return http(port, "GET", path)


# ---------------------------------------------------------------------------------------------
# curl


def curl(*args, timeout=60):
    """Runs curl (never through a proxy); returns the CompletedProcess (bytes)."""
    argv = [CURL_BIN, "-sS", "--noproxy", "*", "--max-time", str(timeout)] + list(args)
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                          timeout=timeout + 10)


def curl_status(url, *args, timeout=30):
    """(http_code, body bytes, curl exit code)."""
    with tempfile.NamedTemporaryFile(prefix="sluice-e2e-body-") as out:
        cp = curl("-o", out.name, "-w", "%{http_code}", *args, url, timeout=timeout)
        out.seek(0)
        body = out.read()
    code = int(cp.stdout.decode() or "0")
    return code, body, cp.returncode


# ---------------------------------------------------------------------------------------------
# Test case base


class E2ETestCase(unittest.TestCase):
    """Starts processes through start_*; all of them are stopped in clean-up. sluice must exit
    0 on SIGTERM. On failure, every process's output is printed."""

    maxDiff = 4000

    def setUp(self):
        self.procs = []
        self.tmpdirs = []
        self.addCleanup(self._cleanup_procs)

    def tearDown(self):
        if self._failed():
            for p in self.procs:
                sys.stderr.write(p.log() + "\n")

    def _failed(self):
        # _outcome.success is reset while tearDown itself runs; look at the result instead.
        result = getattr(getattr(self, "_outcome", None), "result", None)
        for test, _ in list(getattr(result, "failures", [])) + list(getattr(result, "errors", [])):
            if test is self or getattr(test, "test_case", None) is self:
                return True
        return False

    def _cleanup_procs(self):
        while RawClient.open_clients:
            RawClient.open_clients.pop().close()
        errors = []
        for p in reversed(self.procs):
            if isinstance(p, Sluice):
                was_alive = p.alive()
                rc = p.terminate()
                if was_alive and rc != 0:
                    errors.append("sluice exited with %r after SIGTERM\n%s" % (rc, p.log()))
                elif not was_alive:
                    errors.append("sluice was not running at the end of the test (exit %r)\n%s"
                                  % (rc, p.log()))
            else:
                p.kill()
            if isinstance(p, Nginx):
                p.cleanup_files()
        for d in self.tmpdirs:
            subprocess.run(["rm", "-rf", d], check=False)
        if errors:
            raise AssertionError("\n".join(errors))

    def _track(self, p):
        self.procs.append(p)
        return p

    def start_sluice(self, *args, upstream=None, env=None, defaults=True, workers=1,
                     subcommand=None, wrapper=()):
        """sluice with --listen/--admin on port 0 (unless defaults=False), --workers N (unless
        workers=None) and --upstream 127.0.0.1:upstream (when given), then args; run through
        the wrapper command when given."""
        return self._track(Sluice(args, env_extra=env, defaults=defaults, upstream=upstream,
                                  workers=workers, subcommand=subcommand, wrapper=wrapper))

    def start_proc(self, name, argv):
        return self._track(Proc(name, argv))

    def start_aiohttp(self, keepalive_timeout=None, idle_close=None, name=None, host=None,
                      port=0, unix=None, args=()):
        return self._track(AioUpstream(keepalive_timeout, idle_close, name, host, port, unix,
                                       args))

    def start_fault(self, mode, args=()):
        """fault_upstream.py --mode MODE, then args (e.g. ["--idle-reset", "0.2"])."""
        return self._track(FaultUpstream(mode, args))

    def start_nginx(self, **kw):
        return self._track(Nginx(**kw))

    def make_tmpdir(self):
        d = tempfile.mkdtemp(prefix="sluice-e2e-")
        self.tmpdirs.append(d)
        return d

    def assertMemoryBounded(self, sluice, limit=64 * MiB):
        mem = sluice.memory()
        self.assertLess(mem["VmHWM"], limit,
                        "sluice peak RSS %.1f MiB (limit %.0f MiB)" % (mem["VmHWM"] / MiB,
                                                                       limit / MiB))
        return mem


def stderr_lines(proc):
    return [l for t, l in list(proc.lines) if t == "err"]


def wait_new_stderr_line(proc, before, timeout=3.0):
    """Waits until proc has more than `before` stderr lines; returns the new ones."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = stderr_lines(proc)
        if len(lines) > before:
            return lines[before:]
        time.sleep(0.02)
    return []


def run_parallel(fns, start_gap=0.0):
    """Runs the callables in threads (optionally started start_gap seconds apart); returns
    their results in order (an exception is returned in place of a result)."""
    results = [None] * len(fns)

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:  # reported by the caller's assertions
            results[i] = e

    threads = []
    for i, fn in enumerate(fns):
        t = threading.Thread(target=run, args=(i, fn), daemon=True)
        t.start()
        threads.append(t)
        if start_gap:
            time.sleep(start_gap)
    for t in threads:
        t.join(120)
    return results


def timed(fn):
    """Returns (result or exception, seconds)."""
    t0 = time.monotonic()
    try:
        r = fn()
    except BaseException as e:
        r = e
    return r, time.monotonic() - t0


def pattern_sha256(n):
    """The SHA-256 of pattern_bytes(n), computed without holding n bytes."""
    h = hashlib.sha256()
    block = bytes(range(256)) * 4096  # 1 MiB
    left = n
    while left > 0:
        h.update(block[:min(left, len(block))])
        left -= len(block)
    return h.hexdigest()


def write_mixed_file(path, n):
    """n bytes that do not repeat at any power-of-two period (a random block of a prime
    length, repeated), so that a lost, doubled or reordered piece changes the digest; returns
    their SHA-256."""
    block = os.urandom(1048573)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = n
        while left > 0:
            piece = block[:min(left, len(block))]
            f.write(piece)
            h.update(piece)
            left -= len(piece)
    return h.hexdigest()


def pattern_bytes(n):
    """The byte pattern upstream_app.py's /bytes/N sends (bytes 0..255 repeated)."""
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]
