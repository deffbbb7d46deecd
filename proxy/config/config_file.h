#pragma once
// The configuration file (YAML) and how it combines with the environment and flags:
// built-in defaults < file < overrides (SLUICE_* environment, then flags). Loading collects
// every problem at once as "FILE:LINE:COL: message" lines; nothing here throws.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "core/config.h"

namespace sluice {

// One setting given on the command line or in the environment, applied over the file. Only
// those the user actually gave: a flag's default never overrides the file.
struct ConfigOverride {
  std::string flag;   // the flag's name without dashes: "listen", "pool-max-idle"
  std::string value;  // as given
  std::string env;    // "SLUICE_LISTEN" when it came from the environment, else empty
};

// A flag that overrides a setting of the file; main.cc registers one option per entry.
struct OverrideFlag {
  const char* name;           // "connect-timeout": the flag is --connect-timeout
  const char* value_name;     // "DUR", for --help
  const char* setting;        // the file key it overrides, "clusters[*].connect_timeout"
  const char* default_value;  // as shown by --help (the built-in default)
  const char* help;
};
const std::vector<OverrideFlag>& override_flags();

// "SLUICE_POOL_MAX_IDLE" for "pool-max-idle".
std::string override_env_name(const std::string& flag);

// The configuration without a file: one listener "ingress" on 0.0.0.0:8080 with a catch-all
// route to cluster "app", whose one endpoint is 127.0.0.1:4000; every other setting at its
// default.
Config default_config();

// Reads `file` (none when null) over `defaults`, then applies `overrides` in order and
// validates the result. On success `config` is set (with admin_token read from
// admin.token_file); otherwise `errors` lists every problem. Warnings never stop a load.
ConfigLoad load_config(const std::string* file, const std::vector<ConfigOverride>& overrides,
                       const Config& defaults = default_config());

// The same from YAML text; `name` is used in messages in place of a file name (tests).
ConfigLoad load_config_text(const std::string& yaml, const std::string& name,
                            const std::vector<ConfigOverride>& overrides,
                            const Config& defaults = default_config());

// Every setting, defaults included, in the file's own shape: the output is itself a valid
// configuration file. The admin token is never included (its file name is).
std::string dump_config_yaml(const Config& config);

// The same content as JSON (for GET /config).
nlohmann::json config_to_json(const Config& config);

}  // namespace sluice
