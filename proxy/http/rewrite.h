#pragma once
// Head rewriting between the two sides of the proxy: hop-by-hop headers are dropped (RFC 9110
// §7.6.1: Connection and every header it names, Keep-Alive, Proxy-Connection, TE,
// Transfer-Encoding, Upgrade, HTTP2-Settings), framing is set by sluice, forwarding headers are
// added. An upgrade is forwarded only for the protocols on the listener's list (http/upgrade.h).
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/block.h"
#include "http/message.h"
#include "http/upgrade.h"

namespace sluice {

enum class Framing : uint8_t {
  kNone,           // no body (or a body the peer must not expect, e.g. a response to HEAD)
  kContentLength,  // Content-Length: n
  kChunked,        // Transfer-Encoding: chunked, re-encoded by sluice
  kClose,          // body ends when the connection closes (responses to HTTP/1.0 clients)
};

struct RequestRewrite {
  std::string_view client_ip;
  std::string_view proto = "http";
  std::string_view request_id;    // set when the request had none; empty = keep theirs
  std::string_view default_host;  // Host for HTTP/1.0 requests that carry none
  std::string_view target;        // replaces the request target when set (absolute-form)
  std::string_view host;          // replaces every Host header when set (absolute-form)
  Framing framing = Framing::kNone;
  uint64_t content_length = 0;
  // Forward the Upgrade header with Connection: upgrade (decide_upgrade said so). Only the
  // protocols on `upgrades` are written; with none of them, nothing is.
  bool upgrade = false;
  UpgradeAllowList upgrades = default_upgrades();
};

struct ResponseRewrite {
  Framing framing = Framing::kNone;  // kNone keeps the upstream's Content-Length (HEAD, 304)
  uint64_t content_length = 0;
  bool close = false;              // Connection: close
  bool keep_alive_header = false;  // Connection: keep-alive (kept-alive HTTP/1.0 client)
};

// What an HTTP/1.1 client connection knows of the request a response answers.
struct ResponseClient {
  bool head_request = false;  // no body whatever the response says
  bool http10 = false;        // an HTTP/1.0 client: close-delimited bodies, no chunks
  bool keep_alive = false;    // the client asked for it (and not for an upgrade)
  bool body_done = false;     // the request body is all read (or there is none)
  bool draining = false;      // the drain asks clients to go elsewhere
};
// How a final response head (or a 101, which goes out as it came) is framed for the client
// and whether the connection closes after it. (Inline: a few comparisons, once per response.)
inline ResponseRewrite plan_response_rewrite(const MessageHead& resp, const ResponseClient& c) {
  ResponseRewrite rw;
  if (resp.status == 101) return rw;
  if (c.head_request || resp.status == 204 || resp.status == 304) {
    rw.framing = Framing::kNone;
  } else if (resp.has_content_length && !resp.chunked) {
    rw.framing = Framing::kContentLength;
    rw.content_length = resp.content_length;
  } else {
    rw.framing = c.http10 ? Framing::kClose : Framing::kChunked;
  }
  rw.close = !c.keep_alive || rw.framing == Framing::kClose || !c.body_done || c.draining;
  rw.keep_alive_header = c.http10 && !rw.close;
  return rw;
}

void write_request_head(BlockWriter& w, const MessageHead& req, const RequestRewrite& rw);
// An upper bound of write_request_head's output for typical requests (the writer grows if not).
size_t request_head_estimate(const MessageHead& req);
void write_response_head(BlockWriter& w, const MessageHead& resp, const ResponseRewrite& rw);
// A header sluice adds to a response it answers itself (Retry-After on a 429).
struct ExtraHeader {
  std::string_view name, value;
};
// A complete small response sluice answers itself (errors, 100 Continue, admin pages).
void write_simple_response(BlockWriter& w, int status, std::string_view content_type,
                           std::string_view body, bool close, bool head_only = false,
                           std::span<const ExtraHeader> extra = {});
std::string_view status_reason(int status);
// The body of an error response sluice answers itself: "<code> <reason>: <why>\n".
std::string error_body(int status, std::string_view why);
// The error responses sluice answers itself: text/plain error_body().
void write_error_response(BlockWriter& w, int status, std::string_view why, bool close,
                          bool head_only = false, std::span<const ExtraHeader> extra = {});

// Chunked framing (RFC 9112 §7.1) of bytes sluice re-frames: "<hex size>\r\n" + data + "\r\n",
// ended by the last chunk. The constants are static storage (no block).
Slice chunk_header(BlockPool& pool, size_t len);
extern const Slice kChunkEnd;   // "\r\n" after a chunk's data
extern const Slice kLastChunk;  // "0\r\n\r\n"

}  // namespace sluice
