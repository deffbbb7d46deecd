#include "http/trailers.h"

namespace sluice {

bool forwardable_trailer(std::string_view n) {
  if (n.empty() || n[0] == ':') return false;
  for (std::string_view dropped :
       {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
        "http2-settings", "content-length", "trailer", "host"})
    if (iequals(n, dropped)) return false;
  return true;
}

size_t forwardable_trailer_count(const MessageHead& trailers) {
  size_t n = 0;
  for (size_t i = 0; i < trailers.header_count(); ++i) n += forwardable_trailer(trailers.name(i));
  return n;
}

void copy_forwardable_trailers(const MessageHead& from, MessageHead& to) {
  to.clear();
  for (size_t i = 0; i < from.header_count(); ++i)
    if (forwardable_trailer(from.name(i))) to.add_header(from.name(i), from.value(i));
}

void write_last_chunk(BlockWriter& w, const MessageHead& trailers) {
  w.append("0\r\n");
  for (size_t i = 0; i < trailers.header_count(); ++i) {
    if (!forwardable_trailer(trailers.name(i))) continue;
    w.append(trailers.name(i));
    w.append(": ");
    w.append(trailers.value(i));
    w.append("\r\n");
  }
  w.append("\r\n");
}

}  // namespace sluice
