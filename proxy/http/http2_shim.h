#pragma once
// The few nghttp2 calls whose names changed in 1.60 (ssize_t → nghttp2_ssize, data_provider2,
// mem_recv2/mem_send2). sluice is written against Debian 12's 1.52; with a newer library the
// new names are used, so the build has no deprecation warnings either way. In the HTTP layer:
// both the client-facing server (server/) and the upstream client (upstream/) include it.
#include <nghttp2/nghttp2.h>

namespace sluice::h2 {

#if NGHTTP2_VERSION_NUM >= 0x013c00
using ssize = nghttp2_ssize;
using DataProvider = nghttp2_data_provider2;
inline ssize mem_recv(nghttp2_session* s, const uint8_t* in, size_t len) {
  return nghttp2_session_mem_recv2(s, in, len);
}
inline ssize mem_send(nghttp2_session* s, const uint8_t** out) {
  return nghttp2_session_mem_send2(s, out);
}
inline int submit_response(nghttp2_session* s, int32_t id, const nghttp2_nv* nva, size_t n,
                           const DataProvider* prd) {
  return nghttp2_submit_response2(s, id, nva, n, prd);
}
inline int32_t submit_request(nghttp2_session* s, const nghttp2_nv* nva, size_t n,
                              const DataProvider* prd, void* stream_user_data) {
  return nghttp2_submit_request2(s, nullptr, nva, n, prd, stream_user_data);
}
#else
using ssize = ssize_t;
using DataProvider = nghttp2_data_provider;
inline ssize mem_recv(nghttp2_session* s, const uint8_t* in, size_t len) {
  return nghttp2_session_mem_recv(s, in, len);
}
inline ssize mem_send(nghttp2_session* s, const uint8_t** out) {
  return nghttp2_session_mem_send(s, out);
}
inline int submit_response(nghttp2_session* s, int32_t id, const nghttp2_nv* nva, size_t n,
                           const DataProvider* prd) {
  return nghttp2_submit_response(s, id, nva, n, prd);
}
inline int32_t submit_request(nghttp2_session* s, const nghttp2_nv* nva, size_t n,
                              const DataProvider* prd, void* stream_user_data) {
  return nghttp2_submit_request(s, nullptr, nva, n, prd, stream_user_data);
}
#endif

}  // namespace sluice::h2
