#include "server/maintenance_board.h"

#include "core/log.h"

namespace sluice {

MaintenanceBoard::MaintenanceBoard(const Config& config) {
  for (const ListenerConfig& l : config.listeners) {
    entries_.push_back(Entry{l.name, l.maintenance, std::nullopt});
    publish(entries_.back());
  }
}

void MaintenanceBoard::apply_config(const Config& config) {
  for (Entry& e : entries_) {
    for (const ListenerConfig& l : config.listeners) {
      if (l.name != e.name) continue;
      if (!(l.maintenance == e.file) && e.api) {
        LOG_INFO(
            "maintenance: listener %s: the file's maintenance section changed; it replaces "
            "the admin API's mode (%s)",
            e.name.c_str(), maintenance_mode_name(e.api->mode));
        e.api.reset();
      }
      e.file = l.maintenance;
      publish(e);
    }
  }
}

void MaintenanceBoard::publish(Entry& e) {
  auto v = std::make_shared<MaintenanceView>();
  v->settings = e.file;
  if (e.api) {
    v->from_api = true;
    v->settings.mode = e.api->mode;
    if (e.api->retry_after) v->settings.retry_after = *e.api->retry_after;
    if (e.api->message) v->settings.message = *e.api->message;
  }
  e.sw->publish(std::move(v));
}

std::vector<MaintenanceBoard::Entry*> MaintenanceBoard::select(std::string_view listener) {
  std::vector<Entry*> out;
  for (Entry& e : entries_)
    if (listener.empty() || e.name == listener) out.push_back(&e);
  return out;
}

bool MaintenanceBoard::set(std::string_view listener, const Override& o, std::string& error) {
  auto chosen = select(listener);
  if (chosen.empty()) {
    error = "no listener named '" + std::string(listener) + "'";
    return false;
  }
  for (Entry* e : chosen) {
    e->api = o;
    publish(*e);
    LOG_INFO("maintenance: listener %s: %s (admin API)", e->name.c_str(),
             maintenance_mode_name(o.mode));
  }
  return true;
}

bool MaintenanceBoard::clear(std::string_view listener, std::string& error) {
  auto chosen = select(listener);
  if (chosen.empty()) {
    error = "no listener named '" + std::string(listener) + "'";
    return false;
  }
  for (Entry* e : chosen) {
    if (!e->api) continue;
    e->api.reset();
    publish(*e);
    LOG_INFO("maintenance: listener %s: admin API override removed; the file's mode (%s) applies",
             e->name.c_str(), maintenance_mode_name(e->file.mode));
  }
  return true;
}

std::vector<const MaintenanceSwitch*> MaintenanceBoard::switches() const {
  std::vector<const MaintenanceSwitch*> v;
  for (const Entry& e : entries_) v.push_back(e.sw.get());
  return v;
}

MaintenanceMode MaintenanceBoard::mode(std::string_view listener) const {
  for (const Entry& e : entries_)
    if (e.name == listener) return e.sw->mode();
  return MaintenanceMode::kOff;
}

nlohmann::json MaintenanceBoard::status() const {
  nlohmann::json j = nlohmann::json::object();
  for (const Entry& e : entries_) {
    auto v = e.sw->view();
    const MaintenanceSettings& s = v->settings;
    nlohmann::json x;
    x["mode"] = maintenance_mode_name(s.mode);
    x["source"] = v->from_api ? "api" : "file";
    x["file_mode"] = maintenance_mode_name(e.file.mode);
    x["retry_after_s"] = v->retry_after_s();
    x["message"] = s.message;
    x["allow_methods"] = s.allow_methods;
    nlohmann::json paths = nlohmann::json::array();
    for (const MaintenancePath& p : s.allow_paths)
      paths.push_back({{"prefix", p.prefix}, {"methods", p.methods}});
    x["allow_paths"] = paths;
    x["custom_body"] = !s.body.empty();
    j[e.name] = std::move(x);
  }
  return j;
}

bool MaintenanceBoard::parse_request(std::string_view body, std::string& listener, Override& o,
                                     std::string& error) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "expected a JSON object such as {\"mode\": \"read-only\", \"retry_after\": \"120s\"}";
    return false;
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "listener" && key != "mode" && key != "retry_after" && key != "message") {
      error = "unknown key '" + key + "' (expected listener, mode, retry_after, message)";
      return false;
    }
  }
  auto text = [&](const char* key, std::string& out) {
    if (!j.contains(key)) return true;
    if (!j[key].is_string()) {
      error = std::string("'") + key + "' must be a string";
      return false;
    }
    out = j[key].get<std::string>();
    return true;
  };
  std::string mode, retry, message;
  if (!text("listener", listener) || !text("mode", mode) || !text("retry_after", retry) ||
      !text("message", message))
    return false;
  if (!j.contains("mode")) {
    error = "'mode' is required: \"read-only\", \"full\" or \"off\"";
    return false;
  }
  auto m = parse_maintenance_mode(mode == "on" ? "full" : mode);
  if (!m) {
    error = "invalid mode '" + mode + "' (expected \"read-only\", \"full\" or \"off\")";
    return false;
  }
  o.mode = *m;
  if (j.contains("retry_after")) {
    auto d = parse_duration(retry);
    if (!d || d->count() < 1000) {
      error = "invalid retry_after '" + retry + "' (expected a duration of at least 1s: 30s, 2m)";
      return false;
    }
    o.retry_after = *d;
  }
  if (j.contains("message")) o.message = message;
  return true;
}

}  // namespace sluice
