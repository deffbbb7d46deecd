#include "guard/guard.h"

#include <uv.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "http/method.h"
#include "http/router.h"

namespace sluice {

namespace {

// Header values longer than this are keyed by a prefix and a hash of the whole (bounded memory
// per key whatever a client sends).
constexpr size_t kMaxKeyBytes = 128;

// llhttp's numbers for method names (the configuration checked they are HTTP methods).
std::vector<uint8_t> method_numbers(const std::vector<std::string>& names) {
  std::vector<uint8_t> out;
  for (const std::string& n : names)
    if (int m = method_from_name(n); m >= 0) out.push_back(static_cast<uint8_t>(m));
  return out;
}

bool host_matches(const CompiledRule& r, std::string_view host) {
  if (r.host.empty()) return true;
  if (r.wildcard)
    return host.size() > r.host.size() && host.substr(host.size() - r.host.size()) == r.host;
  return host == r.host;
}

// The bucket key of a request under `r` (in `buf` when it has to be built).
std::string_view rate_key(const CompiledRule& r, const MessageHead& req, const IpAddress& client,
                          std::string& buf) {
  switch (r.config.key) {
    case RateLimitKey::kClientIp:
      return std::string_view(reinterpret_cast<const char*>(client.bytes.data()),
                              client.bytes.size());
    case RateLimitKey::kNone:
      return {};
    case RateLimitKey::kHeader:
      break;
  }
  const size_t i = req.find(r.config.header);
  // Requests without the header share one bucket (key ""), so leaving it out is no way around
  // the limit; present values are prefixed so that none equals that key.
  if (i == std::string_view::npos) return {};
  std::string_view v = req.value(i);
  buf.clear();
  buf.push_back('=');
  if (v.size() <= kMaxKeyBytes) {
    buf.append(v);
  } else {
    buf.append(v.substr(0, kMaxKeyBytes));
    const size_t h = std::hash<std::string_view>()(v);
    buf.append(reinterpret_cast<const char*>(&h), sizeof h);
  }
  return buf;
}

}  // namespace

uint64_t guard_now_ms() {
  return uv_hrtime() / 1'000'000;
}

GuardPolicy::Denial GuardPolicy::screen_connection(size_t listener, const IpAddress& peer,
                                                   uint64_t now_ms) const {
  const Listener& l = listeners_[listener];
  if (!bans_->empty() && bans_->banned(peer, now_ms ? now_ms : guard_now_ms())) {
    l.denied->lists[static_cast<size_t>(DenyList::kBan)].fetch_add(1, std::memory_order_relaxed);
    return Denial{true, DenyList::kBan, true};
  }
  if (l.ip_rules.match != IpRules::Match::kPeer || l.ip_rules.empty()) return {};
  const bool close = l.ip_rules.action == IpRules::Action::kClose;
  DenyList list;
  if (in_networks(l.ip_rules.deny, peer)) {
    list = DenyList::kDeny;
  } else if (!l.ip_rules.allow.empty() && !in_networks(l.ip_rules.allow, peer)) {
    list = DenyList::kAllow;
  } else {
    return {};
  }
  l.denied->lists[static_cast<size_t>(list)].fetch_add(1, std::memory_order_relaxed);
  return Denial{true, list, close};
}

GuardPolicy::Denial GuardPolicy::screen_request(size_t listener, const IpAddress& peer,
                                                const IpAddress& client, uint64_t now_ms) const {
  const Listener& l = listeners_[listener];
  if (!bans_->empty() && !now_ms) now_ms = guard_now_ms();
  if (!bans_->empty() &&
      (bans_->banned(peer, now_ms) || (!(client == peer) && bans_->banned(client, now_ms)))) {
    l.denied->lists[static_cast<size_t>(DenyList::kBan)].fetch_add(1, std::memory_order_relaxed);
    return Denial{true, DenyList::kBan, false};
  }
  if (l.ip_rules.empty()) return {};
  // Rules on the peer were applied at accept; the peer cannot change within a connection, but
  // a reload may have changed the rules since, so they are applied again.
  const IpAddress& a = l.ip_rules.match == IpRules::Match::kPeer ? peer : client;
  DenyList list;
  if (in_networks(l.ip_rules.deny, a)) {
    list = DenyList::kDeny;
  } else if (!l.ip_rules.allow.empty() && !in_networks(l.ip_rules.allow, a)) {
    list = DenyList::kAllow;
  } else {
    return {};
  }
  l.denied->lists[static_cast<size_t>(list)].fetch_add(1, std::memory_order_relaxed);
  return Denial{true, list, l.ip_rules.action == IpRules::Action::kClose};
}

GuardPolicy::RateVerdict GuardPolicy::rate_check(size_t listener, std::string_view host,
                                                 std::string_view path, const MessageHead& req,
                                                 const IpAddress& client, uint64_t now_ns) const {
  RateVerdict v;
  std::string buf;
  for (const CompiledRule* r : listeners_[listener].rules) {
    if (!r->methods.empty() &&
        std::find(r->methods.begin(), r->methods.end(), req.method) == r->methods.end())
      continue;
    if (!host_matches(*r, host)) continue;
    if (!r->config.prefix.empty() && path.substr(0, r->config.prefix.size()) != r->config.prefix)
      continue;
    const uint64_t wait = r->table->take(rate_key(*r, req, client, buf), now_ns);
    RateResult result = RateResult::kAllowed;
    if (wait) result = r->config.dry_run ? RateResult::kDryRunLimited : RateResult::kLimited;
    r->counters[listener]->results[static_cast<size_t>(result)].fetch_add(
        1, std::memory_order_relaxed);
    if (result == RateResult::kLimited) {
      v.limited_by = r;
      v.retry_after_s = retry_after_seconds(wait);
      return v;
    }
  }
  return v;
}

Guard::Guard()
    : bans_(std::make_shared<BanList>()), evictions_(std::make_shared<std::atomic<uint64_t>>(0)) {}

std::shared_ptr<const GuardPolicy> Guard::configure(const Config& config, uint64_t now_ns) {
  if (now_ns == 0) now_ns = uv_hrtime();
  std::lock_guard lock(mutex_);
  auto p = std::make_shared<GuardPolicy>();
  p->bans_ = bans_;
  std::map<std::string, std::shared_ptr<BucketTable>> tables;
  for (const RateLimitRule& rule : config.rate_limits) {
    auto r = std::make_unique<CompiledRule>();
    r->config = rule;
    // A rule keeps its buckets across a reload unless its key bound changed (the table is
    // sized by it); a changed rate or burst applies to the buckets it keeps.
    auto old = tables_.find(rule.name);
    if (old != tables_.end() && old->second->max_keys() == std::max<uint32_t>(rule.max_keys, 1)) {
      r->table = old->second;
    } else {
      r->table = std::make_shared<BucketTable>(rule.max_keys, evictions_);
    }
    const uint64_t period_ns = static_cast<uint64_t>(rule.period.count()) * 1'000'000;
    // Saturated far below 2^64 so that TAT arithmetic never wraps (1/h with a burst of 10^9
    // would be 3.6 × 10^21 ns: "practically unlimited" either way).
    constexpr uint64_t kMaxSpanNs = uint64_t{1} << 61;
    BucketParams bp;
    bp.interval_ns =
        std::clamp<uint64_t>(period_ns / std::max<uint64_t>(rule.requests, 1), 1, kMaxSpanNs);
    const uint128_t burst_ns = static_cast<uint128_t>(bp.interval_ns) * rule.effective_burst();
    bp.burst_ns = burst_ns > kMaxSpanNs ? kMaxSpanNs : static_cast<uint64_t>(burst_ns);
    r->table->set_params(bp, now_ns);
    tables[rule.name] = r->table;
    r->methods = method_numbers(rule.methods);
    if (rule.host.size() > 2 && rule.host.compare(0, 2, "*.") == 0) {
      r->wildcard = true;
      std::string buf;
      r->host.clear();
      r->host.push_back('.');
      r->host += host_without_port(std::string_view(rule.host).substr(2), buf);
    } else if (!rule.host.empty()) {
      std::string buf;
      r->host = std::string(host_without_port(rule.host, buf));
    }
    for (const ListenerConfig& l : config.listeners) {
      auto& c = rule_counters_[{rule.name, l.name}];
      if (!c) c = std::make_shared<RuleCounters>();
      r->counters.push_back(c);
    }
    p->rules_.push_back(std::move(r));
  }
  tables_ = std::move(tables);
  for (const ListenerConfig& l : config.listeners) {
    GuardPolicy::Listener pl;
    pl.trusted = l.trusted_proxies ? *l.trusted_proxies : config.trusted_proxies;
    pl.ip_rules = l.ip_rules;
    for (const auto& r : p->rules_)
      if (r->config.listener.empty() || r->config.listener == l.name) pl.rules.push_back(r.get());
    auto& d = denied_[l.name];
    if (!d) d = std::make_shared<DenyCounters>();
    pl.denied = d;
    p->listeners_.push_back(std::move(pl));
  }
  return p;
}

GuardFigures Guard::figures(const Config& config) const {
  GuardFigures f;
  std::lock_guard lock(mutex_);
  for (const RateLimitRule& rule : config.rate_limits) {
    for (const ListenerConfig& l : config.listeners) {
      if (!rule.listener.empty() && rule.listener != l.name) continue;
      auto it = rule_counters_.find({rule.name, l.name});
      if (it == rule_counters_.end()) continue;
      GuardFigures::Rule r;
      r.listener = l.name;
      r.rule = rule.name;
      r.dry_run = rule.dry_run;
      for (size_t i = 0; i < 3; ++i)
        r.results[i] = it->second->results[i].load(std::memory_order_relaxed);
      f.rules.push_back(std::move(r));
    }
  }
  for (const ListenerConfig& l : config.listeners) {
    GuardFigures::Denied d;
    d.listener = l.name;
    if (auto it = denied_.find(l.name); it != denied_.end())
      for (size_t i = 0; i < 3; ++i)
        d.lists[i] = it->second->lists[i].load(std::memory_order_relaxed);
    f.denied.push_back(std::move(d));
  }
  for (const auto& [name, t] : tables_) f.keys += t->keys();
  f.evictions = evictions_->load(std::memory_order_relaxed);
  f.bans_active = bans_->active(guard_now_ms());
  return f;
}

}  // namespace sluice
