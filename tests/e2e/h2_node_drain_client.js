#!/usr/bin/node
// A load of concurrent HTTP/2 streams that behaves as a well-written client does through a
// drain (RFC 9113 §6.8), on Node's own http2 module (no npm package): SLOTS sessions to URL
// (h2c prior knowledge), each keeping DEPTH streams of GET PATH in flight. On a GOAWAY a slot
// opens no new stream on that session (Node closes it gracefully: its streams in flight finish)
// and moves to a new session at once; a stream the server refused unprocessed (REFUSED_STREAM,
// above the GOAWAY's last stream id) is sent again there. A slot ends when a new session cannot
// connect any more (the listener closed) after a GOAWAY. Any other stream outcome is a failure.
//
//   node h2_node_drain_client.js URL SLOTS DEPTH PATH
//
// Prints "progress <ok>" every 100 answered streams and "goaway <lastStreamID> <code>" per
// GOAWAY as they happen, then one JSON line {ok, failed, retried, unsent, sessions, goaways,
// failures}
// and exits 0 (the test judges the figures), or 1 after 120 s.
'use strict';
const http2 = require('http2');

const [url, slotsArg, depthArg, path] = process.argv.slice(2);
const SLOTS = Number(slotsArg), DEPTH = Number(depthArg);
const stats = { ok: 0, failed: 0, retried: 0, unsent: 0, sessions: 0, goaways: [], failures: [] };
let slotsLeft = SLOTS;

const deadline = setTimeout(() => {
  process.stdout.write(JSON.stringify(Object.assign({ timed_out: true }, stats)) + '\n',
                       () => process.exit(1));
}, 120000);

function fail(what) {
  stats.failed++;
  if (stats.failures.length < 20) stats.failures.push(what);
}

function slotDone() {
  if (--slotsLeft > 0) return;
  clearTimeout(deadline);
  // Written before exiting: process.exit() would cut output short on a pipe.
  process.stdout.write(JSON.stringify(stats) + '\n', () => process.exit(0));
}

function openSession(slot) {
  const s = http2.connect(url);
  let usable = true;  // no GOAWAY seen, no error
  let inFlight = 0;
  let connected = false;
  stats.sessions++;

  const moveOn = () => {
    if (!usable) return;
    usable = false;
    openSession(slot);
  };
  s.on('connect', () => {
    connected = true;
    fill();
  });
  s.on('goaway', (code, last) => {
    stats.goaways.push([last, code]);
    console.log('goaway ' + last + ' ' + code);
    moveOn();
  });
  s.on('error', (e) => {
    if (!connected) {
      // The listener closed (refused, or reset while it closed): a slot that has been told to
      // go away ends here; anything else is a failure.
      if (stats.goaways.length > 0 && ['ECONNREFUSED', 'ECONNRESET'].includes(e.code)) {
        usable = false;
        slotDone();
        return;
      }
      fail('connect: ' + e.code);
      usable = false;
      slotDone();
      return;
    }
    fail('session error: ' + (e.code || e.message));
    moveOn();
  });

  function fill() {
    while (usable && inFlight < DEPTH && !s.closed && !s.destroyed) issue();
  }

  function issue() {
    let req;
    try {
      req = s.request({ ':path': path });
    } catch (e) {  // the session closed between the check and the call
      moveOn();
      return;
    }
    inFlight++;
    let status = 0;
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', () => {});
    req.on('error', () => {});  // judged on close
    req.on('close', () => {
      inFlight--;
      if (status === 200 && req.rstCode === http2.constants.NGHTTP2_NO_ERROR) {
        if (++stats.ok % 100 === 0) console.log('progress ' + stats.ok);
      } else if (status === 0 && req.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) {
        stats.retried++;  // never processed: safe to send again, on the slot's next session
        retry(slot);
      } else if (status === 0 && req.id === undefined) {
        // Never sent: Node queued it, then closed its session (after the GOAWAY) before the
        // stream got an id, and ends it with its own INTERNAL_ERROR. The server never saw it:
        // safe to send again, as a refused one.
        stats.retried++;
        retry(slot);
      } else {
        fail('stream ' + req.id + ': status ' + status + ', rstCode ' + req.rstCode);
      }
      fill();
    });
    req.end();
  }
  // A refused stream goes again on the slot's newest session (or is not sent at all once the
  // slot has ended: the listener is gone; in a cluster it would go to another pod).
  slot.current = { retryOn: () => { if (usable) issue(); else stats.unsent++; } };
}

function retry(slot) {
  setImmediate(() => slot.current.retryOn());
}

for (let i = 0; i < SLOTS; ++i) openSession({});
