#include "http/upgrade.h"

namespace sluice {

namespace {

const std::string kWebSocketOnly[] = {"websocket"};

std::string_view protocol_name(std::string_view protocol) {
  size_t slash = protocol.find('/');
  return slash == std::string_view::npos ? protocol : protocol.substr(0, slash);
}

bool is_tchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
  }
  return false;
}

}  // namespace

UpgradeAllowList default_upgrades() {
  return kWebSocketOnly;
}

bool upgrade_allowed(std::string_view protocol, UpgradeAllowList allowed) {
  std::string_view name = protocol_name(protocol);
  if (name.empty()) return false;
  for (const std::string& a : allowed)
    if (iequals(name, a)) return true;
  return false;
}

UpgradeDecision decide_upgrade(const MessageHead& req, UpgradeAllowList allowed) {
  UpgradeDecision d;
  if (!req.upgrade) return d;
  for (size_t i = 0; i < req.header_count(); ++i) {
    if (!iequals(req.name(i), "upgrade")) continue;
    for_each_token(req.value(i), [&](std::string_view t) {
      if (!upgrade_allowed(t, allowed)) return;
      d.forward = true;
      std::string_view name = protocol_name(t);
      d.websocket = d.websocket || iequals(name, "websocket");
      d.h2c = d.h2c || iequals(name, "h2c");
    });
  }
  return d;
}

bool upgrade_response_allowed(const MessageHead& resp, UpgradeAllowList allowed) {
  bool ok = true;
  for (size_t i = 0; i < resp.header_count(); ++i) {
    if (!iequals(resp.name(i), "upgrade")) continue;
    for_each_token(resp.value(i),
                   [&](std::string_view t) { ok = ok && upgrade_allowed(t, allowed); });
  }
  return ok;
}

bool is_valid_upgrade_protocol(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

}  // namespace sluice
