#pragma once
// Which protocols a request may ask the upstream to switch to (RFC 9110 §7.8). Only those on
// the listener's allow-list (`upgrades:`, default [websocket]) are forwarded; any other Upgrade
// is removed with its Connection token and HTTP2-Settings, and the request goes on as a plain
// request (RFC 9110 lets a server ignore Upgrade). Otherwise a client could switch the app to a
// protocol the proxy does not look into, such as h2c, and send requests past every per-request
// control ("h2c smuggling"). Pure functions: the exchange calls them with the listener's list.
#include <span>
#include <string>
#include <string_view>

#include "http/message.h"

namespace sluice {

// Lower-case protocol names ("websocket"), without versions.
using UpgradeAllowList = std::span<const std::string>;

// The default allow-list: WebSocket only.
UpgradeAllowList default_upgrades();

struct UpgradeDecision {
  bool forward = false;    // forward Upgrade (allowed protocols only) with Connection: upgrade
  bool websocket = false;  // websocket is among the forwarded protocols
  bool h2c = false;        // h2c is among them: HTTP2-Settings goes along
};

// True when `protocol` ("websocket", "WebSocket/13") is on the list: its name (before any
// "/version") compared case-insensitively.
bool upgrade_allowed(std::string_view protocol, UpgradeAllowList allowed);

// The client asked to switch protocols (Connection: upgrade and an Upgrade header, which is
// what llhttp's upgrade flag says, or CONNECT with an Upgrade header) and at least one protocol
// it offers, in any of its Upgrade headers, is allowed.
UpgradeDecision decide_upgrade(const MessageHead& req, UpgradeAllowList allowed);

// For a 101 response to a forwarded upgrade: false when its Upgrade header names a protocol
// that is not on the list (an app switching to something the client was not allowed to ask).
bool upgrade_response_allowed(const MessageHead& resp, UpgradeAllowList allowed);

// A valid allow-list entry: an HTTP token (RFC 9110 §5.6.2) without "/" (versions are not
// compared).
bool is_valid_upgrade_protocol(std::string_view s);

}  // namespace sluice
