#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

The files are committed; run this again after changing it (it replaces the seeds it writes and
leaves other files alone). Each seed starts with the control bytes its target reads (see the
comment at the top of each fuzz_<target>.cc): the split control byte, then for the HTTP
targets a flags byte.
"""
import os
import ssl
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
CORPUS = os.path.join(HERE, "corpus")

# Split controls every HTTP seed is written with: one read, byte by byte, small random reads.
# (libFuzzer mutates the control byte too.)
SPLITS = (0, 1, 7)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def crlf(s):
    return s.replace("\n", "\r\n").encode("latin-1")


REQUESTS = {
    "get": "GET /index.html?q=1 HTTP/1.1\nHost: app\nUser-Agent: curl/7.88\nAccept: */*\n\n",
    "post_length": "POST /upload HTTP/1.1\nHost: app\nContent-Length: 11\n"
                   "Content-Type: text/plain\n\nhello world",
    "post_chunked_trailers": "POST /c HTTP/1.1\nHost: app\nTransfer-Encoding: chunked\n"
                             "Trailer: X-Sum\n\n5\nhello\n6;ext=1\n world\n0\nX-Sum: 42\n\n",
    "pipelined": "GET /a HTTP/1.1\nHost: app\n\nPOST /b HTTP/1.1\nHost: app\nContent-Length: 3\n\nabc"
                 "GET /c HTTP/1.1\nHost: app\nConnection: close\n\n",
    "http10_no_host": "GET / HTTP/1.0\n\n",
    "http10_keep_alive": "GET / HTTP/1.0\nConnection: keep-alive\nX-Request-Id: mine\n\n",
    "absolute_form": "GET http://api.example.com:8080/v1/items?x=y HTTP/1.1\n"
                     "Host: ignored.example\n\n",
    "absolute_form_no_path": "GET http://api.example.com HTTP/1.1\nHost: api.example.com\n\n",
    "asterisk": "OPTIONS * HTTP/1.1\nHost: app\n\n",
    "websocket": "GET /chat HTTP/1.1\nHost: app\nUpgrade: websocket\nConnection: Upgrade\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n"
                 "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    "h2c_upgrade": "GET / HTTP/1.1\nHost: app\nConnection: Upgrade, HTTP2-Settings\n"
                   "Upgrade: h2c\nHTTP2-Settings: AAMAAABkAAQAAP__\n\n",
    "connect": "CONNECT api.example.com:443 HTTP/1.1\nHost: api.example.com:443\n\n",
    "expect_continue": "PUT /x HTTP/1.1\nHost: app\nExpect: 100-continue\nContent-Length: 4\n\ndata",
    "hop_by_hop": "GET / HTTP/1.1\nHost: app\nConnection: keep-alive, X-Secret, Foo\nX-Secret: 1\n"
                  "Foo: bar\nKeep-Alive: timeout=5\nProxy-Connection: keep-alive\nTE: trailers\n"
                  "X-Forwarded-For: 1.1.1.1\nX-Forwarded-For: 2.2.2.2\nX-Forwarded-Proto: https\n\n",
    "connection_names_own": "GET / HTTP/1.1\nHost: app\nConnection: host, x-request-id, "
                            "x-forwarded-for, content-length, close\nX-Request-Id: a\n"
                            "X-Forwarded-For: 3.3.3.3\nClose: x\n\n",
    "many_connection_tokens": "GET / HTTP/1.1\nHost: app\nConnection: " +
                              ", ".join("x-h%d" % i for i in range(20)) + "\n" +
                              "".join("X-H%d: %d\n" % (i, i) for i in range(20)) + "\n",
    "empty_values": "GET / HTTP/1.1\nHost: app\nX-Empty:\nX-Spaces:    \nX-Tab:\tv\t\n\n",
    "head": "HEAD / HTTP/1.1\nHost: app\n\n",
    "delete_body": "DELETE /r/1 HTTP/1.1\nHost: app\nContent-Length: 0\n\n",
    # Smuggling shapes: each must be refused (or framed one way only).
    "cl_and_te": "POST / HTTP/1.1\nHost: app\nContent-Length: 6\nTransfer-Encoding: chunked\n\n"
                 "0\n\nGET /admin HTTP/1.1\nHost: app\n\n",
    "te_and_cl": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding: chunked\nContent-Length: 6\n\n"
                 "0\n\nX",
    "duplicate_cl": "POST / HTTP/1.1\nHost: app\nContent-Length: 5\nContent-Length: 5\n\nhello",
    "conflicting_cl": "POST / HTTP/1.1\nHost: app\nContent-Length: 5\nContent-Length: 6\n\nhello!",
    "cl_list": "POST / HTTP/1.1\nHost: app\nContent-Length: 5, 5\n\nhello",
    "cl_plus": "POST / HTTP/1.1\nHost: app\nContent-Length: +5\n\nhello",
    "te_not_final": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding: chunked, gzip\n\n0\n\n",
    "te_obfuscated": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding: xchunked\n\n0\n\n",
    "te_twice": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding: chunked\nTransfer-Encoding: x\n\n"
                "0\n\n",
    "te_space_before_colon": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding : chunked\n\n0\n\n",
    "te_tab": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding:\tchunked\n\n0\n\n",
    "te_http10": "POST / HTTP/1.0\nTransfer-Encoding: chunked\n\n0\n\n",
    "obs_fold": "GET / HTTP/1.1\nHost: app\nX-Folded: a\n b\n\n",
    "obs_fold_te": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding: gzip,\n chunked\n\n0\n\n",
    "chunk_size_invalid": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding: chunked\n\nzz\nhi\n0\n\n",
    "chunk_size_overflow": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding: chunked\n\n"
                           "10000000000000001\nx\n0\n\n",
    "chunk_ext_bare_lf": "POST / HTTP/1.1\nHost: app\nTransfer-Encoding: chunked\n\n"
                         "3;a=b\nabc\n0\n\n",
    "nul_in_header": "GET / HTTP/1.1\nHost: app\nX-A: a\x00b\n\n",
    "ctl_in_header": "GET / HTTP/1.1\nHost: app\nX-A: a\x01b\x7f\n\n",
    "no_host_11": "GET / HTTP/1.1\nAccept: */*\n\n",
    "two_hosts": "GET / HTTP/1.1\nHost: a\nHost: b\n\n",
    "two_hosts_http10": "GET / HTTP/1.0\nHost: a\nHost: b\n\n",
    "space_in_name": "GET / HTTP/1.1\nHost: app\nX Y: z\n\n",
    "bad_version": "GET / HTTP/1.2\nHost: app\n\n",
    "http09": "GET /\n\n",
    "high_bytes": "GET /\xc3\xa9t\xc3\xa9 HTTP/1.1\nHost: app\nX-L: caf\xe9\n\n",
}

RESPONSES = {
    "ok_length": "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\nhello",
    "ok_chunked": "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\n0\nX-T: 1\n\n",
    "close_delimited": "HTTP/1.1 200 OK\nConnection: close\n\nbody until the end",
    "http10": "HTTP/1.0 200 OK\nContent-Length: 2\n\nok",
    "no_content": "HTTP/1.1 204 No Content\nContent-Length: 10\n\n",
    "not_modified": "HTTP/1.1 304 Not Modified\nContent-Length: 100\nETag: \"x\"\n\n",
    "continue_then_ok": "HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "early_hints": "HTTP/1.1 103 Early Hints\nLink: </s.css>; rel=preload\n\n"
                   "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "switching": "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n"
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n\n\x81\x02hi",
    "hop_by_hop": "HTTP/1.1 200 OK\nConnection: X-Private, keep-alive\nX-Private: 1\n"
                  "Keep-Alive: timeout=5\nProxy-Connection: close\nTE: x\nUpgrade: h2\n"
                  "Content-Length: 2\n\nok",
    "connection_close_header": "HTTP/1.1 200 OK\nConnection: close\nClose: x\nContent-Length: 0\n\n",
    "empty_reason": "HTTP/1.1 200 \nContent-Length: 0\n\n",
    "no_reason": "HTTP/1.1 404\nContent-Length: 0\n\n",
    "odd_status": "HTTP/1.1 099 Odd\nContent-Length: 0\n\n",
    "status_999": "HTTP/1.1 999 Whatever\nContent-Length: 0\n\n",
    "keep_alive_pair": "HTTP/1.1 200 OK\nContent-Length: 1\n\naHTTP/1.1 201 Created\n"
                       "Content-Length: 1\n\nb",
    "cl_and_te": "HTTP/1.1 200 OK\nContent-Length: 3\nTransfer-Encoding: chunked\n\n0\n\n",
    "te_gzip_only": "HTTP/1.1 200 OK\nTransfer-Encoding: gzip\n\nraw until close",
    "duplicate_cl": "HTTP/1.1 200 OK\nContent-Length: 2\nContent-Length: 3\n\nabc",
    "obs_fold": "HTTP/1.1 200 OK\nX-A: a\n b\nContent-Length: 0\n\n",
    "chunk_overflow": "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nffffffffffffffffff\n",
    "nul_in_value": "HTTP/1.1 200 OK\nX-A: \x00\nContent-Length: 0\n\n",
    "head_response": "HTTP/1.1 200 OK\nContent-Length: 1000\n\n",
}


def http_seeds():
    for name, text in REQUESTS.items():
        for c in SPLITS:
            write("request", "%s_s%d" % (name, c), bytes([c, 0]) + crlf(text))
    write("request", "get_tls_small_limit", bytes([0, 3]) + crlf(REQUESTS["get"]))
    for name, text in RESPONSES.items():
        for c in SPLITS:
            write("response", "%s_s%d" % (name, c), bytes([c, 0x0c]) + crlf(text))
        # A HEAD request; an HTTP/1.0 client; an upgrade request; a draining keep-alive client.
        for flags in (0x0d, 0x0a, 0x1c, 0x2c):
            write("response", "%s_f%02x" % (name, flags), bytes([0, flags]) + crlf(text))


def ws_frame(opcode, payload, fin=True, mask=None, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        head += mask
    return head + payload


def ws_seeds():
    key = b"\x37\xfa\x21\x3d"
    for direction, m in ((0x00, key), (0x80, None)):
        streams = {
            "text": ws_frame(1, b"Hello", mask=m),
            "binary_16bit": ws_frame(2, b"x" * 300, mask=m),
            "binary_64bit": ws_frame(2, b"y" * 70000, mask=m)[:200],  # header + a partial payload
            "fragmented_with_ping": ws_frame(1, b"Hel", fin=False, mask=m) + ws_frame(9, b"p", mask=m)
                                    + ws_frame(0, b"lo", mask=m),
            "close": ws_frame(8, b"\x03\xe8bye", mask=m) + ws_frame(1, b"after", mask=m),
            "empty_close": ws_frame(8, b"", mask=m),
            "pong_rsv1": ws_frame(10, b"", mask=m) + ws_frame(1, b"z", mask=m, rsv=0x40),
            "reserved_opcode": ws_frame(3, b"", mask=m),
            "long_control": ws_frame(9, b"p" * 126, mask=m),
            "fragmented_control": ws_frame(9, b"", fin=False, mask=m),
            "stray_continuation": ws_frame(0, b"x", mask=m),
            "interleaved": ws_frame(1, b"a", fin=False, mask=m) + ws_frame(2, b"b", mask=m),
            "wrong_mask": ws_frame(1, b"x", mask=None if m else key),
            "huge_length": bytes([0x82, (0x80 if m else 0) | 127]) + b"\x80" + b"\x00" * 7
                           + (m or b""),
            "many_small": b"".join(ws_frame(1, bytes([i]), mask=m) for i in range(40)),
        }
        for name, data in streams.items():
            for c in (0, 1, 3, 100):
                write("ws_frames", "%s_%s_s%d" % (name, "c2s" if m else "s2c", c),
                      bytes([direction | c]) + data)


CONFIGS = {
    "minimal": "listeners:\n  - {name: ingress, address: 127.0.0.1:8080, cluster: app}\n"
               "clusters:\n  - {name: app, endpoints: [127.0.0.1:4000]}\n",
    "routes": "listeners:\n  - name: ingress\n    address: 0.0.0.0:8080\n    routes:\n"
              "      - {host: \"*.example.com\", prefix: /api/, cluster: api}\n"
              "      - {prefix: /, cluster: app}\nclusters:\n"
              "  - {name: api, endpoints: [\"[::1]:9000\", api.internal:80], "
              "load_balancing: least_request}\n"
              "  - {name: app, endpoints: [127.0.0.1:4000]}\n",
    "everything": "admin: {address: 127.0.0.1:9901}\nworkers: 2\nlisteners:\n"
                  "  - {name: egress, address: 127.0.0.1:8081, drain: false, cluster: app}\n"
                  "clusters:\n  - name: app\n    endpoints: [127.0.0.1:4000]\n"
                  "    connect_timeout: 1500ms\n    response_timeout: 2m\n    dns_refresh: 1h\n"
                  "    readiness: true\n    pool: {max_idle: 1, idle_timeout: 59s, "
                  "max_requests_per_connection: 7, max_connections: 2, queue_size: 0, "
                  "queue_timeout: 100ms}\n    outlier: {consecutive_failures: 0, "
                  "base_ejection: 500ms, max_ejection: 500ms}\n    tls: {verify: false, sni: x}\n"
                  "limits: {max_header_bytes: 1000, max_body_bytes: 3MiB, header_timeout: 1s, "
                  "idle_timeout: 1m}\ndrain: {delay: 0s, budget: 1m, ws_close_spread: 250ms, "
                  "ws_close_timeout: 1s}\nlog: {format: json, level: debug, access: false}\n",
    "errors": "listeners:\n\t- name: x\nworkers: -1\nclusters: [{name: a}, {name: a}]\n",
    "anchors": "base: &b {endpoints: [127.0.0.1:1]}\nclusters:\n  - <<: *b\n    name: app\n",
    "two_documents": "workers: 1\n---\nworkers: 2\n",
    "unicode": "listeners:\n  - {name: \"\u00e9t\u00e9\", address: 127.0.0.1:8080, cluster: app}\n",
    "empty": "",
}


def config_seeds():
    for f in sorted(os.listdir(os.path.join(ROOT, "config"))):
        if f.endswith(".yaml"):
            with open(os.path.join(ROOT, "config", f), "rb") as src:
                write("config", f, src.read())
    for name, text in CONFIGS.items():
        write("config", name + ".yaml", text.encode("utf-8"))


def client_hello(**opts):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if "max" in opts:
        ctx.maximum_version = opts["max"]
    if "min" in opts:
        ctx.minimum_version = opts["min"]
    if "alpn" in opts:
        ctx.set_alpn_protocols(opts["alpn"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=opts.get("sni"))
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tls_seeds():
    hellos = {
        "tls13_sni_alpn": client_hello(sni="localhost", alpn=["http/1.1"]),
        "tls13_no_sni": client_hello(),
        "tls13_h2_only": client_hello(sni="other.example", alpn=["h2"]),
        "tls12_only": client_hello(sni="localhost", max=ssl.TLSVersion.TLSv1_2),
        "tls12_alpn": client_hello(sni="localhost", max=ssl.TLSVersion.TLSv1_2,
                                   alpn=["h2", "http/1.1"]),
    }
    for name, data in hellos.items():
        for c in (0, 1, 5, 200):
            write("tls_server", "%s_s%d" % (name, c), bytes([c]) + data)
    # Records after a hello: an alert, application data before the handshake, a record that
    # claims 16 KiB, an SSLv2-style hello.
    extra = {
        "hello_then_alert": hellos["tls13_sni_alpn"] + b"\x15\x03\x03\x00\x02\x02\x28",
        "appdata_first": b"\x17\x03\x03\x00\x05hello",
        "huge_record": b"\x16\x03\x01\x40\x00" + b"\x01" * 64,
        "sslv2_hello": b"\x80\x2e\x01\x00\x02\x00\x15" + b"\x00" * 0x2e,
        "http_on_tls": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    for name, data in extra.items():
        write("tls_server", name, bytes([0]) + data)


def h2_frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def http2_seeds():
    """fuzz_http2: frames after the connection preface (the target adds it)."""
    import hpack  # python3-hpack, with python3-h2
    enc = hpack.Encoder()

    def block(path, method="GET", extra=()):
        return enc.encode([(":method", method), (":scheme", "http"), (":authority", "app"),
                           (":path", path)] + list(extra))

    settings = h2_frame(4, 0, 0, struct.pack(">HI", 4, 1 << 20))
    ack = h2_frame(4, 1, 0)
    get = h2_frame(1, 0x5, 1, block("/a"))
    post = h2_frame(1, 0x4, 3, block("/up", "POST")) + h2_frame(0, 0, 3, b"hello") + \
        h2_frame(0, 1, 3, b" world")
    seeds = {
        "get": settings + ack + get,
        "post_body": settings + post,
        "get_then_reset": settings + get + h2_frame(3, 0, 1, struct.pack(">I", 8)),
        "rapid_reset": settings + b"".join(
            h2_frame(1, 0x5, i, block("/r%d" % i)) + h2_frame(3, 0, i, struct.pack(">I", 8))
            for i in range(1, 60, 2)),
        "continuation": settings + h2_frame(1, 0x1, 1, block("/c")[:3]) +
        h2_frame(9, 0, 1, block("/c")[3:4]) + h2_frame(9, 0x4, 1, block("/c")[4:]),
        "continuation_flood": settings + h2_frame(1, 0x1, 1, block("/c")) +
        b"".join(h2_frame(9, 0, 1, b"\x40\x01x\x01y") for _ in range(12)),
        "ping_flood": settings + h2_frame(6, 0, 0, b"12345678") * 40,
        "settings_flood": settings * 40,
        "empty_data": settings + h2_frame(1, 0x4, 1, block("/e", "POST")) + h2_frame(0, 0, 1) * 40,
        "window_update_zero": settings + get + h2_frame(8, 0, 1, struct.pack(">I", 0)),
        "window_update": settings + h2_frame(8, 0, 0, struct.pack(">I", 1 << 20)) + get,
        "too_many_fields": settings + h2_frame(
            1, 0x5, 1, block("/f", extra=[("x-%d" % i, "v") for i in range(20)])),
        "hpack_bomb": settings + h2_frame(
            1, 0x5, 1, block("/b", extra=[("x-bomb", "a" * 500)] * 10)),
        "trailers": settings + h2_frame(1, 0x4, 1, block("/t", "POST")) +
        h2_frame(0, 0, 1, b"x") + h2_frame(1, 0x5, 1, enc.encode([("x-sum", "1")])),
        "priority_goaway": settings + h2_frame(2, 0, 1, struct.pack(">IB", 0, 16)) + get +
        h2_frame(7, 0, 0, struct.pack(">II", 1, 0)),
        "connection_header": settings + h2_frame(
            1, 0x5, 1, block("/x", extra=[("connection", "close")])),
    }
    for name, data in seeds.items():
        for c in (0, 7):
            for flags in (0, 7):
                write("http2", "%s_s%d_f%d" % (name, c, flags), bytes([c, flags]) + data)


if __name__ == "__main__":
    http2_seeds()
    http_seeds()
    ws_seeds()
    config_seeds()
    tls_seeds()
    n = sum(len(fs) for _, _, fs in os.walk(CORPUS))
    print("wrote the seeds; %d files under %s" % (n, os.path.relpath(CORPUS, ROOT)))
