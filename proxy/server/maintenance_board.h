#pragma once
// MaintenanceBoard: the maintenance mode of every listener, on the main thread. The file's
// `listeners[].maintenance` is the base; POST /maintenance sets a runtime override (mode, and
// optionally Retry-After and message) that wins over the file until DELETE /maintenance, or
// until a reload changes that listener's `maintenance` section in the file (the newer word wins).
// A reload that leaves the section as it was keeps the override. Each listener's effective view
// is published to a MaintenanceSwitch that the workers read per request.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/maintenance_switch.h"

namespace sluice {

class MaintenanceBoard {
 public:
  struct Override {
    MaintenanceMode mode = MaintenanceMode::kOff;
    std::optional<Millis> retry_after;   // else the file's
    std::optional<std::string> message;  // else the file's
  };

  explicit MaintenanceBoard(const Config& config);
  // A reloaded configuration (the same listeners, in the same order).
  void apply_config(const Config& config);
  // `listener` empty: every listener. False (and `error`) for an unknown listener.
  bool set(std::string_view listener, const Override& o, std::string& error);
  bool clear(std::string_view listener, std::string& error);

  std::vector<const MaintenanceSwitch*> switches() const;
  MaintenanceMode mode(std::string_view listener) const;  // kOff for an unknown one
  // GET /maintenance and /stats: per listener, the effective mode and where it comes from.
  nlohmann::json status() const;
  // Parses a POST /maintenance body: {"listener"?, "mode", "retry_after"?, "message"?}. False
  // (and `error`) when it is not valid.
  static bool parse_request(std::string_view body, std::string& listener, Override& o,
                            std::string& error);

 private:
  struct Entry {
    std::string name;
    MaintenanceSettings file;
    std::optional<Override> api;
    std::unique_ptr<MaintenanceSwitch> sw = std::make_unique<MaintenanceSwitch>();
  };
  void publish(Entry& e);
  // The entries `listener` names (all when empty); empty when it names none.
  std::vector<Entry*> select(std::string_view listener);

  std::vector<Entry> entries_;
};

}  // namespace sluice
