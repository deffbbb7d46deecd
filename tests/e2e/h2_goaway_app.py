#!/usr/bin/python3
"""An HTTP/2 (h2c, prior knowledge) upstream that serves one request per connection, then turns
the next one away unprocessed: GOAWAY with the first stream as the last one processed, then
the connection closes. Built on python3-h2, for sluice's retry of unprocessed requests.

Run: /usr/bin/python3 h2_goaway_app.py [--port 0] [--silent]
(--silent: every connection gets the server's SETTINGS, then nothing more: a server that hangs,
for the client's PING liveness check.)
Prints `PORT <n>` once listening. Every answered request gets 200 with a JSON body
{"conn": k, "stream": id, "method": m, "path": p, "body_len": n}; the counters of connections,
answered and turned-away requests are at GET /stats on a new connection (it counts as that
connection's one request).
"""
import argparse
import asyncio
import itertools
import json

import h2.config
import h2.connection
import h2.errors
import h2.events

STATS = {"connections": 0, "answered": 0, "turned_away": 0}
SILENT = False
_ids = itertools.count(1)


class Conn(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.id = next(_ids)
        STATS["connections"] += 1
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        self.t.write(self.h2.data_to_send())
        self.streams = {}  # id -> [headers, body]
        self.answered = None  # the stream id answered on this connection
        self.gone = False

    def data_received(self, data):
        if self.gone or SILENT:
            return
        try:
            events = self.h2.receive_data(data)
        except Exception:
            self.t.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.streams[ev.stream_id] = [dict(ev.headers), bytearray()]
                if ev.stream_ended:
                    self.request(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                if ev.stream_id in self.streams:
                    self.streams[ev.stream_id][1] += ev.data
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.request(ev.stream_id)
            if self.gone:
                return
        self.t.write(self.h2.data_to_send())

    def request(self, sid):
        headers, body = self.streams.pop(sid)
        if self.answered is not None:
            # Not processed: the GOAWAY names the answered stream as the last one.
            STATS["turned_away"] += 1
            self.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR,
                                     last_stream_id=self.answered)
            self.t.write(self.h2.data_to_send())
            self.gone = True
            asyncio.get_event_loop().call_later(0.05, self.t.close)
            return
        self.answered = sid
        STATS["answered"] += 1
        path = headers.get(b":path", b"").decode()
        if path == "/stats":
            out = json.dumps(STATS).encode()
        else:
            out = json.dumps({"conn": self.id, "stream": sid,
                              "method": headers.get(b":method", b"").decode(), "path": path,
                              "body_len": len(body)}).encode()
        self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                   ("content-length", str(len(out)))])
        self.h2.send_data(sid, out, end_stream=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--silent", action="store_true")
    args = ap.parse_args()
    global SILENT
    SILENT = args.silent
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, "127.0.0.1", args.port)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
