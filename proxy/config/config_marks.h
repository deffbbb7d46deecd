#pragma once
// The parts of a configuration load (config_file.cc runs them in order), and ConfigMarks: where
// each value that a cross-check looks at came from, so that a problem found only once
// everything is known (a duplicate name, a route to a missing cluster) still points at its line.
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "config/config_file.h"
#include "config/diagnostics.h"
#include "core/config.h"

namespace sluice {

// `ok` is false when the value itself was invalid (and already reported): checks that depend on
// it are skipped rather than piling a second, misleading error on the first.
struct MarkedValue {
  Where where;
  bool ok = true;
};

struct RouteMarks {
  Where self;
  MarkedValue cluster;
};

struct ListenerMarks {
  Where self;
  MarkedValue name;
  MarkedValue address;
  Where routes;  // the routes key (or the cluster shorthand)
  bool routes_ok = true;
  std::vector<RouteMarks> route;  // one per RouteConfig
  Where tls_ciphers;              // for the warning that TLS 1.3 does not use them
};

struct ClusterMarks {
  Where self;
  MarkedValue name;
  Where endpoints;
  bool endpoints_ok = true;
  Where outlier;
  Where tls_verify;  // for the warning when verification is off
  Where protocol;    // `protocol`, for its combination with `tls`
};

struct ConfigMarks {
  Where listeners;  // the "listeners" key; positionless when the default listener is used
  Where clusters;
  bool listeners_from_file = false;
  bool clusters_from_file = false;
  bool listeners_ok = true;  // false when part of the list could not be read
  bool clusters_ok = true;
  bool all_cluster_names_ok = true;     // route targets are checked only against a complete list
  std::vector<ListenerMarks> listener;  // one per ListenerConfig
  std::vector<ClusterMarks> cluster;    // one per ClusterConfig
  MarkedValue admin_address;
  Where token_file;
  Where drain;  // the drain section, or the last drain flag

  // Positionless marks for every listener and cluster of `config` (its defaults).
  static ConfigMarks for_defaults(const Config& config);
};

// Reads a parsed YAML document over `config` (which holds the defaults).
void read_config_yaml(const YAML::Node& root, Config& config, ConfigMarks& marks,
                      Diagnostics& diag);

// Applies the overrides in order; an invalid value is reported and skipped.
void apply_overrides(const std::vector<ConfigOverride>& overrides, Config& config,
                     ConfigMarks& marks, Diagnostics& diag);

// Checks that need the whole configuration: names, addresses, route targets, and warnings.
void validate_config(const Config& config, const ConfigMarks& marks, Diagnostics& diag);

}  // namespace sluice
