#pragma once
// Whether a listener's maintenance mode refuses a request, from its method, path and whether it
// asks to switch protocols. Pure, for the exchange and its unit tests.
#include <string>
#include <string_view>

#include "core/maintenance_switch.h"

namespace sluice {

struct MaintenanceDecision {
  bool refuse = false;
  std::string why;  // the text of sluice's default body (and the log)
};

// `method` as llhttp names it ("POST"), `path` the origin-form target, `upgrade` a protocol
// switch (a new WebSocket session) that would otherwise be forwarded.
MaintenanceDecision check_maintenance(const MaintenanceView& view, std::string_view method,
                                      std::string_view path, bool upgrade);

// The Content-Type of a custom body: the configured one, else text/html for a body that starts
// with '<', application/json for one that starts with '{' or '[', else text/plain.
std::string_view maintenance_content_type(const MaintenanceSettings& s);

}  // namespace sluice
