#pragma once
// Trailer fields (RFC 9110 §6.5) on their way through the proxy: which ones are passed on, and
// the end of a chunked body (RFC 9112 §7.1.2) that carries them. Used both ways: request
// trailers to the upstream, response trailers to an HTTP/1.1 or HTTP/2 client.
#include <cstddef>
#include <string_view>

#include "core/block.h"
#include "http/message.h"

namespace sluice {

// Whether a trailer field may be passed on. RFC 9110 §6.5.1 lets a recipient drop any; sluice
// drops the ones that only mean something to one connection or to the framing (connection-
// specific fields, Content-Length, Transfer-Encoding, Trailer), Host (routing is settled by the
// head) and pseudo-fields. Everything else (checksums, grpc-status, server timing) passes.
bool forwardable_trailer(std::string_view name);
// How many of `trailers`' fields are forwardable.
size_t forwardable_trailer_count(const MessageHead& trailers);
// Copies the forwardable fields of `from` into `to` (cleared first).
void copy_forwardable_trailers(const MessageHead& from, MessageHead& to);
// The last chunk of a chunked body with the forwardable fields of `trailers`:
// "0\r\n" field lines "\r\n".
void write_last_chunk(BlockWriter& w, const MessageHead& trailers);

}  // namespace sluice
