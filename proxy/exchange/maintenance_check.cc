#include "exchange/maintenance_check.h"

#include <algorithm>

namespace sluice {

namespace {
bool listed(const std::vector<std::string>& methods, std::string_view method) {
  return std::find(methods.begin(), methods.end(), method) != methods.end();
}
}  // namespace

MaintenanceDecision check_maintenance(const MaintenanceView& view, std::string_view method,
                                      std::string_view path, bool upgrade) {
  const MaintenanceSettings& s = view.settings;
  MaintenanceDecision d;
  if (s.mode == MaintenanceMode::kOff) return d;
  for (const MaintenancePath& p : s.allow_paths)
    if (path.substr(0, p.prefix.size()) == p.prefix &&
        (p.methods.empty() || listed(p.methods, method)))
      return d;
  if (s.mode == MaintenanceMode::kReadOnly) {
    if (!upgrade && listed(s.allow_methods, method)) return d;
    d.why = upgrade ? "read-only mode: new WebSocket sessions are not accepted"
                    : "read-only mode: " + std::string(method) + " requests are not accepted";
  } else {
    d.why = "down for maintenance";
  }
  if (!s.message.empty()) d.why += " (" + s.message + ")";
  d.refuse = true;
  return d;
}

std::string_view maintenance_content_type(const MaintenanceSettings& s) {
  if (!s.content_type.empty()) return s.content_type;
  const size_t at = s.body.find_first_not_of(" \t\r\n");
  if (at != std::string::npos && s.body[at] == '<') return "text/html; charset=utf-8";
  if (at != std::string::npos && (s.body[at] == '{' || s.body[at] == '['))
    return "application/json";
  return "text/plain; charset=utf-8";
}

}  // namespace sluice
