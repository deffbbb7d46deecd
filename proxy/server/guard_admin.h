#pragma once
// What the admin API and the metrics show of the Guard (issue #17): the /bans routes, the
// Prometheus families of the rate limits, IP rules and bans, and their part of /stats.
#include <prometheus/family.h>
#include <prometheus/metric_family.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "admin/admin_server.h"
#include "guard/guard.h"

namespace sluice {

// GET, POST and DELETE of /bans and DELETE /bans/ADDRESS, on `bans`.
AdminResponse answer_bans(BanList& bans, const AdminRequest& req);
void guard_families(const GuardFigures& f, std::vector<prometheus::MetricFamily>& out);
nlohmann::json guard_json(const GuardFigures& f);

}  // namespace sluice
