#pragma once
// The protection sections of the configuration file (issue 17): a listener's `maintenance`, and
// a cluster's `circuit_breaker`, `limits` and `retry_budget`. Part of the YAML reader.
#include <string>
#include <vector>

#include "config/field_reader.h"

namespace sluice {

extern const std::vector<std::string> kMaintenanceKeys;
extern const std::vector<std::string> kCircuitBreakerKeys;
extern const std::vector<std::string> kClusterLimitsKeys;
extern const std::vector<std::string> kRetryBudgetKeys;

// Reads the `maintenance` key of one listener's fields, when it is there.
void read_listener_maintenance(const Fields& listener, MaintenanceSettings& m, Diagnostics& diag);
// Reads `circuit_breaker` (its presence turns the breaker on), `limits` and `retry_budget` of one
// cluster's fields, when they are there.
void read_cluster_guards(const Fields& cluster, ClusterConfig& c, Diagnostics& diag);

}  // namespace sluice
