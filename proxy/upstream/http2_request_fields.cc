#include "upstream/http2_request_fields.h"

#include "http/message.h"
#include "http/trailers.h"

namespace sluice {

namespace {

constexpr std::string_view kHttps = "https";
constexpr std::string_view kHttp = "http";

// Connection-specific fields (RFC 9113 §8.2.2), Host (→ :authority) and HTTP2-Settings.
bool dropped(std::string_view n) {
  switch (n.size()) {
    case 4:
      return n == "host";
    case 7:
      return n == "upgrade";
    case 10:
      return n == "connection" || n == "keep-alive";
    case 14:
      return n == "http2-settings";
    case 16:
      return n == "proxy-connection";
    case 17:
      return n == "transfer-encoding";
    default:
      return false;
  }
}

}  // namespace

void Http2RequestFields::add(const char* name, size_t namelen, const char* value, size_t valuelen,
                             uint8_t flags) {
  nv_.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
                           reinterpret_cast<uint8_t*>(const_cast<char*>(value)), namelen, valuelen,
                           static_cast<uint8_t>(flags | flags_)});
}

Http2RequestFields::Result Http2RequestFields::build(std::string_view head, bool https,
                                                     std::string_view default_authority) {
  // The default authority is copied after the head, so that every entry points into buf_ (or a
  // literal); buf_ does not grow after this.
  buf_.reserve(head.size() + default_authority.size());
  buf_.assign(head);
  buf_.append(default_authority);
  default_authority = std::string_view(buf_).substr(head.size());
  nv_.clear();
  has_host_ = upgrade_ = grpc_ = te_trailers_ = false;
  // Request line: METHOD SP target SP HTTP/1.1 CRLF.
  const size_t sp1 = buf_.find(' ');
  const size_t eol = buf_.find("\r\n");
  if (sp1 == std::string::npos || eol == std::string::npos || sp1 >= eol) return Result::kMalformed;
  const size_t sp2 = buf_.rfind(' ', eol);
  if (sp2 == std::string::npos || sp2 <= sp1 + 1) return Result::kMalformed;
  std::string_view method(buf_.data(), sp1);
  if (method == "CONNECT") return Result::kUpgrade;  // a tunnel, not a request
  add(":method", 7, buf_.data(), sp1);
  const std::string_view scheme = https ? kHttps : kHttp;
  add(":scheme", 7, scheme.data(), scheme.size());
  authority_ = nv_.size();
  add(":authority", 10, default_authority.data(), default_authority.size());
  add(":path", 5, buf_.data() + sp1 + 1, sp2 - sp1 - 1);
  if (!fields(eol + 2, false)) return Result::kMalformed;
  if (upgrade_) return Result::kUpgrade;
  if (nv_[authority_].valuelen == 0) return Result::kMalformed;
  // gRPC servers want TE: trailers (RFC 9113 §8.2.2 allows it alone); sluice's HTTP/1.1 head
  // drops TE as hop-by-hop, so it is put back for gRPC requests.
  if (grpc_ && !te_trailers_) add("te", 2, "trailers", 8);
  return Result::kOk;
}

void Http2RequestFields::release_memory() {
  constexpr size_t kKeptBytes = 4096;
  nv_.clear();
  buf_.clear();
  if (buf_.capacity() > kKeptBytes) std::string().swap(buf_);
  if (nv_.capacity() * sizeof(nghttp2_nv) > kKeptBytes) std::vector<nghttp2_nv>().swap(nv_);
}

bool Http2RequestFields::build_trailers(std::string_view last_chunk) {
  buf_.assign(last_chunk);
  nv_.clear();
  has_host_ = upgrade_ = grpc_ = te_trailers_ = false;
  const size_t eol = buf_.find("\r\n");
  if (eol == std::string::npos || buf_.compare(0, 1, "0") != 0) return false;
  return fields(eol + 2, true);
}

bool Http2RequestFields::fields(size_t pos, bool trailers) {
  for (;;) {
    const size_t eol = buf_.find("\r\n", pos);
    if (eol == std::string::npos) return false;
    if (eol == pos) return true;  // the blank line
    const size_t colon = buf_.find(':', pos);
    if (colon == std::string::npos || colon >= eol || colon == pos) return false;
    char* name = buf_.data() + pos;
    const size_t namelen = colon - pos;
    for (size_t i = 0; i < namelen; ++i)
      if (name[i] >= 'A' && name[i] <= 'Z') name[i] = static_cast<char>(name[i] | 0x20);
    size_t v = colon + 1;
    while (v < eol && (buf_[v] == ' ' || buf_[v] == '\t')) ++v;
    size_t vend = eol;
    while (vend > v && (buf_[vend - 1] == ' ' || buf_[vend - 1] == '\t')) --vend;
    const std::string_view n(name, namelen);
    const char* value = buf_.data() + v;
    const size_t valuelen = vend - v;
    const std::string_view val(value, valuelen);
    pos = eol + 2;
    if (trailers) {
      if (forwardable_trailer(n)) add(name, namelen, value, valuelen);
      continue;
    }
    if (n == "host") {
      if (!has_host_) {
        has_host_ = true;
        nv_[authority_].value = reinterpret_cast<uint8_t*>(const_cast<char*>(value));
        nv_[authority_].valuelen = valuelen;
      }
      continue;
    }
    if (n == "upgrade") upgrade_ = true;
    if (n == "connection") {
      for_each_token(val, [&](std::string_view t) {
        if (iequals(t, "upgrade")) upgrade_ = true;
      });
    }
    if (dropped(n)) continue;
    if (n == "te") {
      // Only "trailers" may pass (RFC 9113 §8.2.2).
      bool trailers_token = false;
      for_each_token(val, [&](std::string_view t) {
        if (iequals(t, "trailers")) trailers_token = true;
      });
      if (trailers_token && !te_trailers_) {
        te_trailers_ = true;
        add("te", 2, "trailers", 8);
      }
      continue;
    }
    if (n == "content-type" && valuelen >= 16 && iequals(val.substr(0, 16), "application/grpc"))
      grpc_ = true;
    // A value new with every request is sent literally, not added to the HPACK table: there it
    // would only push out the fields that repeat (every header of every request on the
    // connection, re-sent in full each time they fall out).
    add(name, namelen, value, valuelen,
        n == "x-request-id" ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE);
  }
}

}  // namespace sluice
