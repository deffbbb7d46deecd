#include "core/guard_settings.h"

namespace sluice {

const char* maintenance_mode_name(MaintenanceMode m) {
  switch (m) {
    case MaintenanceMode::kReadOnly:
      return "read-only";
    case MaintenanceMode::kFull:
      return "full";
    default:
      return "off";
  }
}

std::optional<MaintenanceMode> parse_maintenance_mode(std::string_view s) {
  if (s == "off") return MaintenanceMode::kOff;
  if (s == "read-only") return MaintenanceMode::kReadOnly;
  if (s == "full") return MaintenanceMode::kFull;
  return std::nullopt;
}

}  // namespace sluice
