#pragma once
// The admin API's routes as a table: each path with the methods it takes, whether it changes
// the pod's state (then only from loopback or with the admin token), and the AdminBackend call
// that answers it. The server implements AdminBackend; the admin layer never names the server.
#include "admin/admin_server.h"

namespace sluice {

class AdminBackend {
 public:
  virtual AdminResponse healthz() = 0;      // every worker loop ran recently
  virtual AdminResponse readyz() = 0;       // serving, and the readiness clusters accept
  virtual AdminResponse metrics() = 0;      // Prometheus text
  virtual AdminResponse stats() = 0;        // JSON
  virtual AdminResponse config() = 0;       // the running configuration as JSON
  virtual AdminResponse status_page() = 0;  // HTML
  virtual AdminResponse drain_status() = 0;
  // Starts a drain (or joins the one running); `wait`: answer when it is done (deferred).
  virtual AdminResponse start_drain(bool wait) = 0;
  virtual AdminResponse reload() = 0;
  // Serves again after a drain no signal started (the app's container restarted).
  virtual AdminResponse resume() = 0;
  // Maintenance mode (issue 17): GET /maintenance, POST /maintenance with a JSON body,
  // DELETE /maintenance[?listener=NAME] (back to the file's mode).
  virtual AdminResponse maintenance_status() = 0;
  virtual AdminResponse set_maintenance(const AdminRequest& req) = 0;
  virtual AdminResponse clear_maintenance(const AdminRequest& req) = 0;
  // Runtime bans (issue #17): GET /bans lists them, POST /bans adds one ({"address": "1.2.3.4"
  // or "10.0.0.0/24", "duration": "10m"}), DELETE /bans (same body) or DELETE /bans/ADDRESS
  // lifts one.
  virtual AdminResponse bans(const AdminRequest& req) = 0;
  // A state-changing request: from loopback, or with the admin token (logged when refused).
  virtual bool allowed_to_change(const AdminRequest& req) const = 0;

 protected:
  ~AdminBackend() = default;
};

// Answers `req` from the table: 404 for an unknown path, 405 naming the methods a known path
// takes, 403 for a state change without loopback or the token.
AdminResponse route_admin_request(AdminBackend& backend, const AdminRequest& req);

}  // namespace sluice
