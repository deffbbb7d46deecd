// Node's @grpc/grpc-js as a client of sluice (tests/e2e/test_grpc_node.py): a generic client
// (makeGenericClientConstructor, identity serializers: payloads are raw bytes, no protobuf)
// calling grpc_app.py's sluice.test.Echo through sluice. Prints one JSON line per call:
//   {"call": NAME, "ok": bool, "code": N, "details": S, "messages": [...], "trailer": S}
// Usage: node grpc_node_client.js HOST:PORT
"use strict";
const grpc = require("@grpc/grpc-js");

const target = process.argv[2];
const id = (b) => b;
const Client = grpc.makeGenericClientConstructor({
  Unary: { path: "/sluice.test.Echo/Unary", requestStream: false, responseStream: false,
           requestSerialize: id, requestDeserialize: id, responseSerialize: id,
           responseDeserialize: id },
  ServerStream: { path: "/sluice.test.Echo/ServerStream", requestStream: false,
                  responseStream: true, requestSerialize: id, requestDeserialize: id,
                  responseSerialize: id, responseDeserialize: id },
  ClientStream: { path: "/sluice.test.Echo/ClientStream", requestStream: true,
                  responseStream: false, requestSerialize: id, requestDeserialize: id,
                  responseSerialize: id, responseDeserialize: id },
  Bidi: { path: "/sluice.test.Echo/Bidi", requestStream: true, responseStream: true,
          requestSerialize: id, requestDeserialize: id, responseSerialize: id,
          responseDeserialize: id },
  Missing: { path: "/other.Svc/Missing", requestStream: false, responseStream: false,
             requestSerialize: id, requestDeserialize: id, responseSerialize: id,
             responseDeserialize: id },
}, "Echo");
const client = new Client(target, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 10000);

function report(call, err, messages, trailers) {
  const t = trailers ? trailers.get("x-trailer") : [];
  console.log(JSON.stringify({
    call, ok: !err, code: err ? err.code : 0, details: err ? err.details : "",
    messages: messages.map((m) => m.toString("latin1")), trailer: t.length ? String(t[0]) : "",
  }));
}

function unary(name, payload) {
  return new Promise((resolve) => {
    let trailers = null;
    const c = client[name](payload, new grpc.Metadata(), { deadline: deadline() }, (err, resp) => {
      setImmediate(() => { report(name, err, resp ? [resp] : [], trailers); resolve(); });
    });
    c.on("status", (s) => { trailers = s.metadata; });
  });
}

function serverStream() {
  return new Promise((resolve) => {
    const md = new grpc.Metadata();
    md.set("x-count", "5");
    md.set("x-size", "32");
    const got = [];
    const c = client.ServerStream(Buffer.alloc(0), md, { deadline: deadline() });
    c.on("data", (m) => got.push(m));
    c.on("error", (err) => { report("ServerStream", err, got, null); resolve(); });
    c.on("status", (s) => { if (s.code === 0) { report("ServerStream", null, got, s.metadata); resolve(); } });
  });
}

function clientStream() {
  return new Promise((resolve) => {
    let trailers = null;
    const c = client.ClientStream(new grpc.Metadata(), { deadline: deadline() }, (err, resp) => {
      setImmediate(() => { report("ClientStream", err, resp ? [resp] : [], trailers); resolve(); });
    });
    c.on("status", (s) => { trailers = s.metadata; });
    for (const p of ["a", "bb", "ccc"]) c.write(Buffer.from(p));
    c.end();
  });
}

function bidi() {
  return new Promise((resolve) => {
    const got = [];
    const c = client.Bidi(new grpc.Metadata(), { deadline: deadline() });
    c.on("data", (m) => got.push(m));
    c.on("error", (err) => { report("Bidi", err, got, null); resolve(); });
    c.on("status", (s) => { if (s.code === 0) { report("Bidi", null, got, s.metadata); resolve(); } });
    for (const p of ["x", "yy", "zzz"]) c.write(Buffer.from(p));
    c.end();
  });
}

(async () => {
  await unary("Unary", Buffer.from("hello from node"));
  await serverStream();
  await clientStream();
  await bidi();
  await unary("Missing", Buffer.from("?"));
  client.close();
})();
