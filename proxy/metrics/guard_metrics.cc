// The metrics of issue 17: maintenance modes per listener; circuit breakers, concurrency caps
// and retry budgets per cluster.
#include "metrics/metrics.h"

namespace sluice {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr const char* kModes[] = {"off", "read-only", "full"};
constexpr const char* kCircuitStates[] = {"closed", "open", "half_open"};
constexpr const char* kLimits[] = {"requests", "pending"};

ClientMetric metric(MetricType type, double v, std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

MetricFamily family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

size_t index(int v, size_t n) {
  return v < 0 || static_cast<size_t>(v) >= n ? 0 : static_cast<size_t>(v);
}

}  // namespace

void collect_guard_metrics(std::vector<MetricFamily>& out, const StatsTotals& t) {
  using T = MetricType;
  MetricFamily mode =
      family("sluice_maintenance_mode",
             "Maintenance mode of the listener: 0 off, 1 read-only, 2 full", T::Gauge);
  MetricFamily rejected =
      family("sluice_maintenance_rejected_total",
             "Requests answered 503 by the listener's maintenance mode", T::Counter);
  for (const auto& l : t.listeners) {
    mode.metric.push_back(metric(T::Gauge, l.maintenance_mode, {{"listener", l.name}}));
    rejected.metric.push_back(
        metric(T::Counter, static_cast<double>(l.maintenance_rejected), {{"listener", l.name}}));
  }
  out.push_back(std::move(mode));
  out.push_back(std::move(rejected));

  MetricFamily state = family("sluice_upstream_circuit_state",
                              "Circuit breaker of the cluster: 0 closed, 1 open, 2 half-open "
                              "(0 for a cluster without one)",
                              T::Gauge);
  MetricFamily moves = family("sluice_upstream_circuit_transitions_total",
                              "Circuit breaker state changes, by the state moved to", T::Counter);
  MetricFamily overflow = family("sluice_upstream_overflow_total",
                                 "Requests answered 503 at a concurrency cap of the cluster "
                                 "(limits.max_requests, limits.max_pending)",
                                 T::Counter);
  MetricFamily exhausted =
      family("sluice_upstream_retry_budget_exhausted_total",
             "Retries not made because the cluster's retry budget was spent", T::Counter);
  for (const auto& c : t.clusters) {
    state.metric.push_back(metric(T::Gauge, c.circuit_state, {{"cluster", c.name}}));
    for (size_t i = 0; i < 3; ++i)
      moves.metric.push_back(metric(T::Counter, static_cast<double>(c.circuit_transitions[i]),
                                    {{"cluster", c.name}, {"to", kCircuitStates[i]}}));
    for (size_t i = 0; i < 2; ++i)
      overflow.metric.push_back(metric(T::Counter, static_cast<double>(c.overflow[i]),
                                       {{"cluster", c.name}, {"limit", kLimits[i]}}));
    exhausted.metric.push_back(
        metric(T::Counter, static_cast<double>(c.retry_budget_exhausted), {{"cluster", c.name}}));
  }
  out.push_back(std::move(state));
  out.push_back(std::move(moves));
  out.push_back(std::move(overflow));
  out.push_back(std::move(exhausted));
}

void guard_json(nlohmann::json& x, const StatsTotals::Listener& l) {
  x["maintenance_mode"] = kModes[index(l.maintenance_mode, 3)];
  x["maintenance_rejected"] = l.maintenance_rejected;
}

void guard_json(nlohmann::json& x, const StatsTotals::Cluster& c) {
  x["circuit_state"] = kCircuitStates[index(c.circuit_state, 3)];
  nlohmann::json moves = nlohmann::json::object();
  for (size_t i = 0; i < 3; ++i) moves[kCircuitStates[i]] = c.circuit_transitions[i];
  x["circuit_transitions"] = moves;
  x["overflow"] = {{"requests", c.overflow[0]}, {"pending", c.overflow[1]}};
  x["retry_budget_exhausted"] = c.retry_budget_exhausted;
}

}  // namespace sluice
