#include "http/rewrite.h"

#include <llhttp.h>

#include <string>

namespace sluice {

namespace {

bool is_fixed_hop_by_hop(std::string_view n) {
  switch (n.size()) {
    case 2:
      return iequals(n, "te");
    case 7:
      return iequals(n, "upgrade");
    case 10:
      return iequals(n, "connection") || iequals(n, "keep-alive");
    case 14:  // RFC 9113 §3.2.1 (h2c upgrade): connection-specific, forwarded only with h2c
      return iequals(n, "http2-settings");
    case 16:
      return iequals(n, "proxy-connection");
    case 17:
      return iequals(n, "transfer-encoding");
  }
  return false;
}

// The header names a message's Connection header lists (RFC 9110 §7.6.1), collected once per
// head so each header is checked against a short list instead of re-reading every header.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const MessageHead& m) : m_(m) {
    for (size_t i = 0; i < m.header_count(); ++i) {
      if (!iequals(m.name(i), "connection")) continue;
      for_each_token(m.value(i), [&](std::string_view t) {
        if (is_fixed_hop_by_hop(t)) return;  // dropped anyway
        if (n_ < kMax) {
          tokens_[n_++] = t;
        } else {
          overflow_ = true;
        }
      });
    }
  }
  bool contains(std::string_view name) const {
    for (size_t i = 0; i < n_; ++i)
      if (iequals(tokens_[i], name)) return true;
    return overflow_ && m_.has_token("connection", name);  // a pathological list: slow path
  }

 private:
  static constexpr size_t kMax = 16;
  const MessageHead& m_;
  std::string_view tokens_[kMax];
  size_t n_ = 0;
  bool overflow_ = false;
};

// One Upgrade line with the offered protocols that are allowed, in the client's order, and
// Connection: upgrade; HTTP2-Settings only when h2c is among them. Nothing when none is.
void write_upgrade(BlockWriter& w, const MessageHead& req, UpgradeAllowList allowed) {
  bool any = false, h2c = false;
  for (size_t i = 0; i < req.header_count(); ++i) {
    if (!iequals(req.name(i), "upgrade")) continue;
    for_each_token(req.value(i), [&](std::string_view t) {
      if (!upgrade_allowed(t, allowed)) return;
      w.append(any ? ", " : "Upgrade: ");
      w.append(t);
      any = true;
      h2c = h2c || iequals(t.substr(0, t.find('/')), "h2c");
    });
  }
  if (!any) return;
  w.append("\r\nConnection: upgrade\r\n");
  if (!h2c) return;
  for (size_t i = 0; i < req.header_count(); ++i) {
    if (!iequals(req.name(i), "http2-settings")) continue;
    w.append("HTTP2-Settings: ");
    w.append(req.value(i));
    w.append("\r\n");
  }
}

}  // namespace

void write_request_head(BlockWriter& w, const MessageHead& req, const RequestRewrite& rw) {
  w.append(llhttp_method_name(static_cast<llhttp_method_t>(req.method)));
  w.append(' ');
  if (rw.target.empty()) {
    w.append(req.url());
  } else {
    if (rw.target.front() != '/' && rw.target != "*") w.append('/');
    w.append(rw.target);
  }
  w.append(" HTTP/1.1\r\n");
  const ConnectionTokens named(req);
  bool has_host = false;
  size_t xff_count = 0;
  for (size_t i = 0; i < req.header_count(); ++i) {
    std::string_view n = req.name(i);
    if (is_fixed_hop_by_hop(n) || named.contains(n)) continue;
    // Framing is ours; Expect was answered by sluice; X-Forwarded-* are rewritten below.
    if (iequals(n, "content-length") || iequals(n, "expect") || iequals(n, "x-forwarded-proto"))
      continue;
    if (iequals(n, "x-forwarded-for")) {
      ++xff_count;
      continue;
    }
    if (iequals(n, "host")) {
      if (!rw.host.empty()) continue;  // written below from the target
      has_host = true;
    }
    w.append(n);
    w.append(": ");
    w.append(req.value(i));
    w.append("\r\n");
  }
  if (rw.upgrade) write_upgrade(w, req, rw.upgrades);
  if (!rw.host.empty()) {
    w.append("Host: ");
    w.append(rw.host);
    w.append("\r\n");
  } else if (!has_host && !rw.default_host.empty()) {
    w.append("Host: ");
    w.append(rw.default_host);
    w.append("\r\n");
  }
  // One X-Forwarded-For line: the earlier hops in order, then this client.
  w.append("X-Forwarded-For: ");
  if (xff_count) {
    for (size_t i = 0; i < req.header_count(); ++i) {
      if (!iequals(req.name(i), "x-forwarded-for")) continue;
      w.append(req.value(i));
      w.append(", ");
    }
  }
  w.append(rw.client_ip);
  w.append("\r\nX-Forwarded-Proto: ");
  w.append(rw.proto);
  w.append("\r\n");
  if (!rw.request_id.empty()) {
    w.append("X-Request-Id: ");
    w.append(rw.request_id);
    w.append("\r\n");
  }
  if (rw.framing == Framing::kContentLength) {
    w.append("Content-Length: ");
    w.append_decimal(rw.content_length);
    w.append("\r\n");
  } else if (rw.framing == Framing::kChunked) {
    w.append("Transfer-Encoding: chunked\r\n");
  }
  w.append("\r\n");
}

size_t request_head_estimate(const MessageHead& req) {
  // Names, values and URL are in byte_size(); each line adds ": " and CRLF; sluice adds the
  // request line's method and version, X-Forwarded-*, X-Request-Id, Host and framing.
  return req.byte_size() + 4 * req.header_count() + 256;
}

void write_response_head(BlockWriter& w, const MessageHead& resp, const ResponseRewrite& rw) {
  w.append("HTTP/1.1 ");
  w.append_decimal(static_cast<uint64_t>(resp.status));
  w.append(' ');
  std::string_view reason = resp.reason();
  w.append(reason.empty() ? status_reason(resp.status) : reason);
  w.append("\r\n");
  const ConnectionTokens named(resp);
  const bool upgrade = resp.status == 101;
  for (size_t i = 0; i < resp.header_count(); ++i) {
    std::string_view n = resp.name(i);
    if (upgrade && (iequals(n, "upgrade") || iequals(n, "connection"))) {
      // A switching-protocols response keeps its Upgrade/Connection pair.
    } else if (is_fixed_hop_by_hop(n) || named.contains(n)) {
      continue;
    }
    if (rw.framing != Framing::kNone && iequals(n, "content-length")) continue;
    w.append(n);
    w.append(": ");
    w.append(resp.value(i));
    w.append("\r\n");
  }
  if (rw.framing == Framing::kContentLength) {
    w.append("Content-Length: ");
    w.append_decimal(rw.content_length);
    w.append("\r\n");
  } else if (rw.framing == Framing::kChunked) {
    w.append("Transfer-Encoding: chunked\r\n");
  }
  if (!upgrade) {
    if (rw.close) {
      w.append("Connection: close\r\n");
    } else if (rw.keep_alive_header) {
      w.append("Connection: keep-alive\r\n");
    }
  }
  w.append("\r\n");
}

void write_simple_response(BlockWriter& w, int status, std::string_view content_type,
                           std::string_view body, bool close, bool head_only,
                           std::span<const ExtraHeader> extra) {
  w.append("HTTP/1.1 ");
  w.append_decimal(static_cast<uint64_t>(status));
  w.append(' ');
  w.append(status_reason(status));
  w.append("\r\n");
  if (status >= 200) {
    if (!content_type.empty()) {
      w.append("Content-Type: ");
      w.append(content_type);
      w.append("\r\n");
    }
    w.append("Content-Length: ");
    w.append_decimal(body.size());
    w.append("\r\n");
    if (close) w.append("Connection: close\r\n");
    for (const ExtraHeader& h : extra) {
      w.append(h.name);
      w.append(": ");
      w.append(h.value);
      w.append("\r\n");
    }
  }
  w.append("\r\n");
  if (!head_only) w.append(body);
}

std::string error_body(int status, std::string_view why) {
  std::string body = std::to_string(status);
  body += ' ';
  body += status_reason(status);
  if (!why.empty()) {
    body += ": ";
    body += why;
  }
  body += '\n';
  return body;
}

void write_error_response(BlockWriter& w, int status, std::string_view why, bool close,
                          bool head_only, std::span<const ExtraHeader> extra) {
  write_simple_response(w, status, "text/plain", error_body(status, why), close, head_only, extra);
}

const Slice kChunkEnd{BlockRef(), "\r\n", 2};
const Slice kLastChunk{BlockRef(), "0\r\n\r\n", 5};

Slice chunk_header(BlockPool& pool, size_t len) {
  BlockWriter w(pool.get_small(20));
  w.append_hex(len);
  w.append("\r\n");
  return w.finish();
}

std::string_view status_reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
  }
  return "Unknown";
}

}  // namespace sluice
