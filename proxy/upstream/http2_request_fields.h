#pragma once
// Http2RequestFields: sluice's serialized HTTP/1.1 request head (write_request_head's output:
// a request line, canonical `Name: value\r\n` lines, a blank line) as the field list of an
// HTTP/2 request (RFC 9113 §8.3): :method, :scheme, :authority (from Host), :path, then the
// fields with lower-cased names, without the connection-specific ones (Connection,
// Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, Host, HTTP2-Settings; TE only as
// `trailers`). The head is copied once into a reused buffer and names are lower-cased there:
// no allocation per field once the buffers have grown. The nghttp2_nv entries point into that
// buffer until the next build() (nghttp2 copies them when the request is submitted).
//
// Also used for trailer sections: a chunked body's last chunk ("0\r\n" field lines "\r\n").
//
// `referenced`: the entries tell nghttp2 not to copy names and values (NO_COPY_NAME,
// NO_COPY_VALUE): the object, unchanged, must then outlive the frame they are sent in. Every
// byte an entry points to is then in the object's buffer or a string literal.
#include <nghttp2/nghttp2.h>

#include <string>
#include <string_view>
#include <vector>

namespace sluice {

class Http2RequestFields {
 public:
  explicit Http2RequestFields(bool referenced = false)
      : flags_(referenced ? NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE
                          : NGHTTP2_NV_FLAG_NONE) {}
  enum class Result : uint8_t {
    kOk,
    kUpgrade,    // the request asks to switch protocols: HTTP/2 has no Upgrade
    kMalformed,  // not a head sluice wrote (a bug): refused rather than guessed at
  };
  // `https`: the :scheme. `default_authority`: when the head has no Host (HTTP/1.0 clients get
  // one from the exchange; kept for safety).
  Result build(std::string_view head, bool https, std::string_view default_authority);
  // A chunked body's end with trailer fields (write_last_chunk's output): the fields of a
  // trailing HEADERS frame, forwardable ones only. False when malformed.
  bool build_trailers(std::string_view last_chunk);

  const nghttp2_nv* data() const { return nv_.data(); }
  size_t size() const { return nv_.size(); }
  std::string_view name(size_t i) const {
    return {reinterpret_cast<const char*>(nv_[i].name), nv_[i].namelen};
  }
  std::string_view value(size_t i) const {
    return {reinterpret_cast<const char*>(nv_[i].value), nv_[i].valuelen};
  }
  bool grpc() const { return grpc_; }
  // Drops buffers that grew large (a big head): kept ones serve the next build without
  // allocating.
  void release_memory();

 private:
  void add(const char* name, size_t namelen, const char* value, size_t valuelen,
           uint8_t flags = NGHTTP2_NV_FLAG_NONE);
  // Parses the field lines from `pos` to the blank line; false when malformed.
  bool fields(size_t pos, bool trailers);

  std::string buf_;  // the head, names lower-cased in place
  std::vector<nghttp2_nv> nv_;
  uint8_t flags_;         // on every entry
  size_t authority_ = 0;  // index of the :authority entry
  bool has_host_ = false;
  bool upgrade_ = false;
  bool grpc_ = false;
  bool te_trailers_ = false;
};

}  // namespace sluice
