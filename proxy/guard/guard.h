#pragma once
// Guard: the process-wide state of the protections that look at who the client is (issue #17)
// — runtime bans, the token buckets of each rate-limit rule by name, and their counters — and
// GuardPolicy, the part of one configuration those protections act on, compiled for the request
// path: per listener its trusted proxies, IP rules and the rate-limit rules that apply to it.
// The Server owns the Guard (it outlives the workers) and builds a policy on start and on every
// reload; each worker holds the policy of its current configuration, and each request the one it
// started under (RequestContext::guard). Everything a policy shares with the Guard is held by
// shared_ptr, and all of it is thread-safe: workers check and count concurrently.
#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/ip_network.h"
#include "guard/ban_list.h"
#include "guard/bucket_table.h"
#include "http/message.h"

namespace sluice {

// Why a connection or request is refused for its address (label values of
// sluice_access_denied_total{list}, in this order).
enum class DenyList : uint8_t { kDeny, kAllow, kBan };
inline constexpr const char* kDenyListNames[] = {"deny", "allow", "ban"};

// Rate-limit outcomes (label values of sluice_ratelimit_requests_total{result}, in this order).
enum class RateResult : uint8_t { kAllowed, kLimited, kDryRunLimited };
inline constexpr const char* kRateResultNames[] = {"allowed", "limited", "dry_run_limited"};

struct RuleCounters {
  std::atomic<uint64_t> results[3] = {};  // by RateResult
};
struct DenyCounters {
  std::atomic<uint64_t> lists[3] = {};  // by DenyList
};

// One rate-limit rule, compiled.
struct CompiledRule {
  RateLimitRule config;
  std::shared_ptr<BucketTable> table;
  std::vector<uint8_t> methods;  // llhttp method numbers; empty: any
  std::string host;              // lower-case; for a wildcard the suffix with its dot
  bool wildcard = false;
  // Counters by listener index (this rule on that listener).
  std::vector<std::shared_ptr<RuleCounters>> counters;
};

class GuardPolicy {
 public:
  struct Listener {
    std::vector<IpNetwork> trusted;  // whose X-Forwarded-For is believed
    IpRules ip_rules;
    std::vector<const CompiledRule*> rules;  // the rate-limit rules that apply, in order
    std::shared_ptr<DenyCounters> denied;
  };
  // Refusal of an address: `list` says which list refused it; `close`: without an answer.
  struct Denial {
    bool denied = false;
    DenyList list = DenyList::kDeny;
    bool close = false;
  };
  struct RateVerdict {
    const CompiledRule* limited_by = nullptr;  // null: admitted
    uint64_t retry_after_s = 0;
  };

  const Listener& listener(size_t i) const { return listeners_[i]; }
  size_t listener_count() const { return listeners_.size(); }

  // At accept, where only the socket's address is known: bans, and the listener's IP rules
  // when they match the peer. `now_ms` (guard_now_ms) 0: the clock is read only if a ban exists.
  Denial screen_connection(size_t listener, const IpAddress& peer, uint64_t now_ms) const;
  // Whether a request on the listener can be refused by address at all (a ban exists, or the
  // listener has IP rules): the request path skips screen_request when not.
  bool may_deny(size_t listener) const {
    return !bans_->empty() || !listeners_[listener].ip_rules.empty();
  }
  // At each request: bans on the peer or the client IP, and the IP rules on whichever address
  // the listener's rules match.
  Denial screen_request(size_t listener, const IpAddress& peer, const IpAddress& client,
                        uint64_t now_ms) const;
  // Every rate-limit rule of the listener that matches the request takes a token; the first
  // that has none refuses it (dry-run rules only count). Counted by rule and result.
  RateVerdict rate_check(size_t listener, std::string_view host, std::string_view path,
                         const MessageHead& req, const IpAddress& client, uint64_t now_ns) const;

 private:
  friend class Guard;
  std::vector<std::unique_ptr<CompiledRule>> rules_;
  std::vector<Listener> listeners_;
  std::shared_ptr<BanList> bans_;
};

// What the metrics and the status page show of the guard.
struct GuardFigures {
  struct Rule {
    std::string listener, rule;
    uint64_t results[3] = {};  // by RateResult
    bool dry_run = false;
  };
  struct Denied {
    std::string listener;
    uint64_t lists[3] = {};  // by DenyList
  };
  std::vector<Rule> rules;
  std::vector<Denied> denied;
  uint64_t keys = 0;
  uint64_t evictions = 0;
  uint64_t bans_active = 0;
};

class Guard {
 public:
  Guard();
  // The policy of `config` (main thread; start and every reload). Rules keep their buckets and
  // counters by name; a rule no longer configured lets go of its buckets.
  // `now_ns`: the bucket clock (uv_hrtime) for rescaling kept buckets; 0 reads it.
  std::shared_ptr<const GuardPolicy> configure(const Config& config, uint64_t now_ns = 0);
  BanList& bans() { return *bans_; }
  // Sums for /metrics, /stats and the status page, for the rules of `config`.
  GuardFigures figures(const Config& config) const;

 private:
  std::shared_ptr<BanList> bans_;
  std::shared_ptr<std::atomic<uint64_t>> evictions_;
  mutable std::mutex mutex_;  // the maps below (configure on the main thread, figures anywhere)
  std::map<std::string, std::shared_ptr<BucketTable>> tables_;  // by rule name
  std::map<std::pair<std::string, std::string>, std::shared_ptr<RuleCounters>>
      rule_counters_;                                            // by (rule, listener)
  std::map<std::string, std::shared_ptr<DenyCounters>> denied_;  // by listener name
};

// The wall-clock-free milliseconds the ban list counts in (uv_hrtime).
uint64_t guard_now_ms();

}  // namespace sluice
