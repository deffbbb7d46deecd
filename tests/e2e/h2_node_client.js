#!/usr/bin/node
// An HTTP/2 client on Node's own http2 module (no npm package): one session to URL (h2c prior
// knowledge for http://, ALPN h2 for https://, any certificate accepted), the requests given as
// JSON on argv[3] all sent at once as concurrent streams, and one JSON line per response on
// stdout: {i, status, headers, trailers, length, sha256, body (the text of the first 4 MiB),
// error}. Exit 0 when every stream ended
// (whatever its status), 1 on a session or stream error. Used by test_http2_clients.py.
//
//   node h2_node_client.js https://127.0.0.1:PORT '[{"path": "/", "method": "GET"},
//     {"path": "/echo", "method": "POST", "body_bytes": 100000, "trailers": {"x-sum": "1"}}]'
'use strict';
const http2 = require('http2');
const KEEP = 4 << 20;  // bytes of each body kept as text
const crypto = require('crypto');

const url = process.argv[2];
const requests = JSON.parse(process.argv[3] || '[{"path": "/"}]');
const session = http2.connect(url, { rejectUnauthorized: false });
let pending = requests.length;
let failed = false;
const deadline = setTimeout(() => {
  console.error('timed out with ' + pending + ' streams open');
  process.exit(1);
}, 60000);

session.on('error', (e) => {
  console.error('session error: ' + e.message);
  process.exit(1);
});

function done() {
  if (--pending > 0) return;
  clearTimeout(deadline);
  // No process.exit(): it would cut the output short on a pipe (Node writes pipes
  // asynchronously). The loop ends once the session is closed.
  process.exitCode = failed ? 1 : 0;
  session.close();
}

requests.forEach((r, i) => {
  const headers = Object.assign({ ':method': r.method || 'GET', ':path': r.path },
                                r.headers || {});
  const withTrailers = r.trailers !== undefined;
  const stream = session.request(headers, {
    endStream: !r.body_bytes && !withTrailers,
    waitForTrailers: withTrailers,
  });
  const out = { i, status: 0, headers: {}, trailers: {}, length: 0 };
  const hash = crypto.createHash('sha256');
  const kept = [];
  stream.on('response', (h) => {
    out.status = h[':status'];
    for (const k of Object.keys(h)) if (!k.startsWith(':')) out.headers[k] = h[k];
  });
  stream.on('trailers', (t) => { Object.assign(out.trailers, t); });
  stream.on('data', (d) => {
    if (out.length < KEEP) kept.push(d.subarray(0, KEEP - out.length));
    out.length += d.length;
    hash.update(d);
  });
  stream.on('wantTrailers', () => stream.sendTrailers(r.trailers));
  stream.on('error', (e) => {
    out.error = e.message;
    failed = true;
  });
  stream.on('close', () => {
    out.sha256 = hash.digest('hex');
    out.body = Buffer.concat(kept).toString('utf8');
    if (stream.rstCode && !out.error) {
      out.error = 'RST_STREAM ' + stream.rstCode;
      failed = true;
    }
    process.stdout.write(JSON.stringify(out) + '\n');
    done();
  });
  if (r.body_bytes) {
    // A known pattern: byte k is k mod 251, so the upstream's digest can be checked.
    const body = Buffer.alloc(r.body_bytes);
    for (let k = 0; k < body.length; ++k) body[k] = k % 251;
    stream.end(body);
  } else if (withTrailers) {
    stream.end();
  }
});
