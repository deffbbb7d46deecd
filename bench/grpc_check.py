#!/usr/bin/python3
"""grpc_check.py: real gRPC calls (python3-grpcio) through one proxy of bench/run.sh's grpc scenario.

h2load counts HTTP statuses only: it never reads the trailers, where grpc-status is. This
client makes CALLS unary calls to /sluice.bench.Bench/Unary (bench/grpc_upstream) and fails
unless every one ends with grpc-status 0 (OK) and a response message of RESP_BYTES; then one
call with a request of the wrong size, which must come back as INVALID_ARGUMENT (3) with the
upstream's grpc-message: the proxy relays the app's error (a Trailers-Only response from
grpc-go) rather than inventing a status.

    grpc_check.py HOST:PORT [--tls CERT.pem] [--calls N] [--req-bytes N] [--resp-bytes N]

Exit status 0 and one line on stdout when all is well; 1 and the reason on stderr when an OK
call failed; 3 and the reason on stdout when the OK calls succeeded but the app's error did not
come through as it should (the benchmark, which makes OK calls only, can still run).
"""
import argparse
import sys

import grpc

METHOD = "/sluice.bench.Bench/Unary"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--tls", metavar="CERT", help="TLS (ALPN h2), trusting this certificate")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--req-bytes", type=int, default=32)
    ap.add_argument("--resp-bytes", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()

    if a.tls:
        with open(a.tls, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        ch = grpc.secure_channel(a.target, creds, options=[("grpc.ssl_target_name_override", "localhost")])
    else:
        ch = grpc.insecure_channel(a.target)
    # No serializers: the messages are raw bytes, as the upstream's codec expects.
    call = ch.unary_unary(METHOD)
    req = b"x" * a.req_bytes
    want = bytes(ord("a") + i % 26 for i in range(a.resp_bytes))
    try:
        for i in range(a.calls):
            resp, c = call.with_call(req, timeout=a.timeout)
            if c.code() != grpc.StatusCode.OK:
                return fail(f"call {i + 1}: {c.code()}")
            if resp != want:
                return fail(f"call {i + 1}: response of {len(resp)} bytes, not the upstream's {a.resp_bytes}")
    except grpc.RpcError as e:
        return fail(f"call {i + 1}: grpc-status {e.code().value[0]} ({e.code().name}): {e.details()!r}")
    ok = f"{a.target}: {a.calls} calls grpc-status 0 with the upstream's {a.resp_bytes}-byte message"
    try:
        call.with_call(req + b"!", timeout=a.timeout)
        print(f"{ok}; BUT a request of the wrong size came back OK (the upstream refuses it)")
        return 3
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.INVALID_ARGUMENT or "expected" not in (e.details() or ""):
            print(f"{ok}; BUT a bad request got grpc-status {e.code().value[0]} ({e.code().name}) {e.details()!r}, "
                  "not the upstream's 3 (INVALID_ARGUMENT, a Trailers-Only response)")
            return 3
    ch.close()
    print(f"{ok}; a bad request got the upstream's grpc-status 3")
    return 0


def fail(msg):
    print(f"grpc_check: {msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
