#include "server/config_reloader.h"

#include <algorithm>

#include "core/log.h"

namespace sluice {

namespace {
// How long start-up (and a reload) waits for the first DNS answers of new clusters; a cluster
// still unresolved after it answers 503 until its lookup succeeds.
constexpr uint64_t kFirstResolutionWaitMs = 5000;
}  // namespace

ConfigReloader::ConfigReloader(uv_loop_t* loop, std::function<ConfigLoad()> read,
                               const Config& configured, Hooks hooks)
    : loop_(loop),
      read_(std::move(read)),
      hooks_(std::move(hooks)),
      admin_configured_(configured.admin.address) {
  for (const ListenerConfig& l : configured.listeners) listeners_configured_.push_back(l.address);
}

std::unique_ptr<ConfigReloader::Entry> ConfigReloader::make_resolver(const ClusterConfig& c) {
  auto entry = std::make_unique<Entry>();
  Entry* e = entry.get();
  std::string name = c.name;
  entry->resolver =
      std::make_unique<ClusterResolver>(loop_, c, [this, e, name](const AddressList& addresses) {
        if (e->live) {
          hooks_.addresses_changed(name, addresses);
        } else {
          check_pending();
        }
      });
  return entry;
}

void ConfigReloader::start(const Config& config) {
  for (const auto& c : config.clusters) resolvers_[c.name] = make_resolver(c);
  for (auto& [name, r] : resolvers_) {
    r->live = true;
    r->resolver->start();
  }
  uint64_t deadline = uv_now(loop_) + kFirstResolutionWaitMs;
  auto done = [&] {
    for (auto& [name, r] : resolvers_)
      if (!r->resolver->first_round_done()) return false;
    return true;
  };
  uv_timer_t tick;
  uv_timer_init(loop_, &tick);
  while (!done() && uv_now(loop_) < deadline) {
    uv_timer_start(
        &tick, [](uv_timer_t*) {}, 50, 0);
    uv_run(loop_, UV_RUN_ONCE);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop_, UV_RUN_NOWAIT);
}

const AddressList& ConfigReloader::addresses(const std::string& cluster) const {
  static const AddressList kNone;
  auto it = resolvers_.find(cluster);
  return it != resolvers_.end() && it->second ? it->second->resolver->addresses() : kNone;
}

ConfigPtr ConfigReloader::reconcile(std::shared_ptr<Config> next,
                                    std::vector<std::string>& notes) const {
  const Config& cur = hooks_.running();
  if (next->workers != 0 && next->workers != cur.workers)
    notes.push_back("workers: " + std::to_string(next->workers) +
                    " needs a restart; running with " + std::to_string(cur.workers));
  next->workers = cur.workers;
  if (!(next->admin.address == admin_configured_))
    notes.push_back("admin.address: " + next->admin.address.str() +
                    " needs a restart; the admin listener stays on " + cur.admin.address.str());
  next->admin.address = cur.admin.address;
  std::vector<ListenerConfig> listeners;
  for (size_t i = 0; i < cur.listeners.size(); ++i) {
    ListenerConfig l = cur.listeners[i];
    auto it = std::find_if(next->listeners.begin(), next->listeners.end(),
                           [&](const ListenerConfig& n) { return n.name == l.name; });
    if (it == next->listeners.end()) {
      notes.push_back("listener " + l.name +
                      ": removed from the file; it keeps listening until a restart");
    } else {
      if (!(it->address == listeners_configured_[i]))
        notes.push_back("listener " + l.name + ": address " + it->address.str() +
                        " needs a restart; it stays on " + l.address.str());
      l.routes = it->routes;
      l.drain = it->drain;
      l.upgrades = it->upgrades;
      l.http2 = it->http2;              // new connections use the new settings
      l.tls = it->tls;                  // new handshakes use the new settings and files
      l.maintenance = it->maintenance;  // an admin API override may stay (MaintenanceBoard)
      // Issue #17: the client IP's sources and the IP rules apply to the next connections and
      // requests.
      l.trusted_proxies = it->trusted_proxies;
      l.ip_rules = it->ip_rules;
    }
    for (const RouteConfig& r : l.routes)
      if (next->cluster_index(r.cluster) < 0)
        notes.push_back("listener " + l.name + ": route to cluster " + r.cluster +
                        ", which the new file removed, answers 404");
    listeners.push_back(std::move(l));
  }
  for (const ListenerConfig& n : next->listeners) {
    bool known = std::any_of(cur.listeners.begin(), cur.listeners.end(),
                             [&](const ListenerConfig& l) { return l.name == n.name; });
    if (!known) notes.push_back("listener " + n.name + ": new listeners need a restart");
  }
  next->listeners = std::move(listeners);
  return next;
}

ConfigReloader::Result ConfigReloader::reload(const char* why) {
  Result result;
  if (!read_) {
    result.result = "unavailable";
    result.errors.push_back("sluice was started without --config: there is no file to re-read");
    LOG_WARN("reload (%s): %s", why, result.errors[0].c_str());
    return result;
  }
  if (hooks_.draining()) {
    result.result = "unavailable";
    result.errors.push_back("draining: the configuration no longer changes");
    LOG_WARN("reload (%s): %s", why, result.errors[0].c_str());
    return result;
  }
  ConfigLoad load = read_();
  if (!load.config) {
    hooks_.counted(false);
    result.result = "invalid";
    result.errors = load.errors;
    LOG_ERROR("reload (%s) rejected, the running configuration stays:", why);
    for (const std::string& e : load.errors) LOG_ERROR("  %s", e.c_str());
    return result;
  }
  result.warnings = load.warnings;
  ConfigPtr next = reconcile(load.config, result.warnings);
  TlsSet tls;
  if (!hooks_.build_tls(*next, tls, result.errors)) {
    hooks_.counted(false);
    result.result = "invalid";
    LOG_ERROR("reload (%s) rejected, the running configuration stays:", why);
    for (const std::string& e : result.errors) LOG_ERROR("  %s", e.c_str());
    return result;
  }
  for (const std::string& w : result.warnings) LOG_WARN("reload: %s", w.c_str());

  // Resolvers: unchanged endpoints keep theirs (and its addresses); others start looking up.
  if (pending_) {  // superseded before it applied
    for (auto& [name, r] : pending_->resolvers)
      if (r && !r->live) r->resolver->close();
  }
  pending_ = std::make_unique<Pending>();
  pending_->config = next;
  pending_->tls = std::move(tls);
  for (const ClusterConfig& c : next->clusters) {
    auto it = resolvers_.find(c.name);
    bool same = it != resolvers_.end() && it->second->resolver->config().endpoints == c.endpoints &&
                it->second->resolver->config().dns_refresh == c.dns_refresh;
    pending_->resolvers[c.name] = same ? nullptr : make_resolver(c);
  }
  LOG_INFO("reload (%s): configuration accepted", why);
  starting_resolvers_ = true;
  for (auto& [name, r] : pending_->resolvers)
    if (r) r->resolver->start();
  starting_resolvers_ = false;
  if (check_pending()) {
    result.result = "applied";
    return result;
  }
  result.result = "pending";
  result.warnings.push_back("waiting for the first DNS answers of new clusters");
  if (!pending_timer_) {
    pending_timer_ = new uv_timer_t;
    uv_timer_init(loop_, pending_timer_);
    pending_timer_->data = this;
  }
  uv_timer_start(
      pending_timer_, [](uv_timer_t* t) { static_cast<ConfigReloader*>(t->data)->apply_pending(); },
      kFirstResolutionWaitMs, 0);
  return result;
}

bool ConfigReloader::check_pending() {
  if (!pending_ || starting_resolvers_) return false;
  for (auto& [name, r] : pending_->resolvers)
    if (r && !r->resolver->first_round_done()) return false;
  apply_pending();
  return true;
}

void ConfigReloader::apply_pending() {
  if (!pending_) return;
  std::unique_ptr<Pending> p = std::move(pending_);
  if (pending_timer_) uv_timer_stop(pending_timer_);
  Resolvers next;
  std::vector<AddressList> addresses;
  for (const ClusterConfig& c : p->config->clusters) {
    auto& entry = p->resolvers[c.name];
    if (!entry) entry = std::move(resolvers_[c.name]);  // kept from the running set
    entry->live = true;
    addresses.push_back(entry->resolver->addresses());
    next[c.name] = std::move(entry);
  }
  for (auto& [name, r] : resolvers_)
    if (r) r->resolver->close();
  resolvers_ = std::move(next);
  hooks_.counted(true);
  hooks_.apply(p->config, std::move(addresses), std::move(p->tls));
}

void ConfigReloader::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& [name, r] : resolvers_)
    if (r) r->resolver->close();
  if (pending_)
    for (auto& [name, r] : pending_->resolvers)
      if (r) r->resolver->close();
  if (pending_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(pending_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    pending_timer_ = nullptr;
  }
}

}  // namespace sluice
