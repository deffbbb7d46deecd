#include "admin/admin_routes.h"

#include <llhttp.h>

#include <string>

#include "http/message.h"

namespace sluice {

namespace {

enum Methods : uint8_t { kGet = 1, kPost = 2, kAnyMethod = 4, kDelete = 8 };

struct Route {
  std::string_view path;
  uint8_t methods;
  bool changes_state;
  AdminResponse (*answer)(AdminBackend&);
  // Routes that read the request (its body, the rest of its path) answer here instead.
  AdminResponse (*answer_request)(AdminBackend&, const AdminRequest&) = nullptr;
  bool prefix = false;  // `path` is a prefix ("/bans/" + an address)
};

const Route kRoutes[] = {
    {"/healthz", kAnyMethod, false, [](AdminBackend& b) { return b.healthz(); }},
    {"/readyz", kAnyMethod, false, [](AdminBackend& b) { return b.readyz(); }},
    {"/metrics", kGet, false, [](AdminBackend& b) { return b.metrics(); }},
    {"/stats", kGet, false, [](AdminBackend& b) { return b.stats(); }},
    {"/config", kGet, false, [](AdminBackend& b) { return b.config(); }},
    {"/", kGet, false, [](AdminBackend& b) { return b.status_page(); }},
    {"/drain", kGet, false, [](AdminBackend& b) { return b.drain_status(); }},
    {"/drain", kPost, true, [](AdminBackend& b) { return b.start_drain(false); }},
    {"/drain/wait", kGet, true, [](AdminBackend& b) { return b.start_drain(true); }},
    {"/reload", kPost, true, [](AdminBackend& b) { return b.reload(); }},
    {"/resume", kPost, true, [](AdminBackend& b) { return b.resume(); }},
    {"/maintenance", kGet, false, [](AdminBackend& b) { return b.maintenance_status(); }},
    {"/maintenance", kPost, true, nullptr,
     [](AdminBackend& b, const AdminRequest& r) { return b.set_maintenance(r); }},
    {"/maintenance", kDelete, true, nullptr,
     [](AdminBackend& b, const AdminRequest& r) { return b.clear_maintenance(r); }},
    {"/bans", kGet, false, nullptr,
     [](AdminBackend& b, const AdminRequest& r) { return b.bans(r); }},
    {"/bans", kPost | kDelete, true, nullptr,
     [](AdminBackend& b, const AdminRequest& r) { return b.bans(r); }},
    {"/bans/", kDelete, true, nullptr,
     [](AdminBackend& b, const AdminRequest& r) { return b.bans(r); }, true},
};

uint8_t method_of(uint8_t m) {
  if (m == HTTP_GET || m == HTTP_HEAD) return kGet;
  if (m == HTTP_POST) return kPost;
  if (m == HTTP_DELETE) return kDelete;
  return 0;
}

}  // namespace

AdminResponse route_admin_request(AdminBackend& backend, const AdminRequest& req) {
  const uint8_t method = method_of(req.head.method);
  uint8_t allowed = 0;
  for (const Route& r : kRoutes) {
    if (r.prefix ? req.path.substr(0, r.path.size()) != r.path || req.path.size() == r.path.size()
                 : r.path != req.path)
      continue;
    if (!(r.methods & kAnyMethod) && !(r.methods & method)) {
      allowed |= r.methods;
      continue;
    }
    if (r.changes_state && !backend.allowed_to_change(req))
      return AdminResponse{403, "text/plain", "forbidden: loopback or admin token required\n"};
    return r.answer_request ? r.answer_request(backend, req) : r.answer(backend);
  }
  if (!allowed) return AdminResponse{404, "text/plain", "not found\n"};
  std::string use = "use ";
  if (allowed & kGet) use += "GET";
  if (allowed & kPost) use += (allowed & kGet) ? " or POST" : "POST";
  if (allowed & kDelete) use += (allowed & (kGet | kPost)) ? " or DELETE" : "DELETE";
  return AdminResponse{405, "text/plain", use + "\n"};
}

}  // namespace sluice
