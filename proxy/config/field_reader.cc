#include "config/field_reader.h"

#include "config/setting_values.h"

namespace sluice {

Where where_of(const YAML::Node& node) {
  YAML::Mark m = node.Mark();
  if (m.is_null()) return Where{};
  return Where{m.line + 1, m.column + 1, {}};
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "nothing";
  }
}

// ---- Fields ----

Fields::Fields(const YAML::Node& map, const std::string& path,
               const std::vector<std::string>& known, Diagnostics& diag,
               const std::vector<Section>& sections) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    // Copies: yaml-cpp's iterator hands out a temporary pair, a reference would dangle.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      diag.error(where_of(key), "keys must be plain names, not " + describe(key) + in(path));
      continue;
    }
    const std::string& name = key.Scalar();
    bool is_known = false;
    for (const auto& k : known) is_known = is_known || k == name;
    if (!is_known) {
      diag.error(where_of(key), "unknown key '" + name + "'" + in(path) +
                                    unknown_hint(name, path, known, sections));
      continue;
    }
    if (const Field* first = get(name)) {
      Where w = where_of(first->key);
      diag.error(where_of(key), "'" + name + "' is given twice" + in(path) + " (first at line " +
                                    std::to_string(w.line) + "); remove one");
      continue;
    }
    fields_.push_back(Field{path.empty() ? name : path + "." + name, key, value});
  }
}

std::string Fields::in(const std::string& path) {
  return path.empty() ? " at the top level" : " in " + path;
}

std::string Fields::unknown_hint(const std::string& name, const std::string& path,
                                 const std::vector<std::string>& known,
                                 const std::vector<Section>& sections) {
  std::string hint = did_you_mean(name, known);
  if (!hint.empty()) return hint;
  for (const auto& s : sections)
    for (const auto& k : s.keys)
      if (k == name)
        return " ('" + name + "' belongs under '" + s.name +
               "': " + (path.empty() ? "" : path + ".") + s.name + "." + name + ")";
  return " (expected one of " + quoted_list(known) + ")";
}

// ---- types ----

bool FieldReader::expect(const Field& f, bool ok, const char* expected) {
  if (!ok) diag_.error(f.where(), f.path + ": expected " + expected + ", got " + describe(f.value));
  return ok;
}

const Field* FieldReader::map_field(const Fields& f, std::string_view key) {
  const Field* field = f.get(key);
  if (!field) return nullptr;
  if (!expect(*field, field->value.IsMap() || field->value.IsNull(), "a map")) return nullptr;
  return field;
}

bool FieldReader::scalar(const Field& f, std::string& out, const char* expected) {
  if (!expect(f, f.value.IsScalar(), expected)) return false;
  out = f.value.Scalar();
  return true;
}

bool FieldReader::invalid(const Field& f, const std::string& text, const std::string& expected,
                          const std::string& reason) {
  diag_.error(f.where(),
              f.path + ": invalid value '" + text + "'" + reason + " (expected " + expected + ")");
  return false;
}

// ---- values ----

bool FieldReader::number(const Field& f, uint32_t& out, uint32_t min, uint32_t max) {
  std::string s;
  std::string expected =
      "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  if (!scalar(f, s, expected.c_str())) return false;
  auto v = parse_whole_number(s);
  if (!v || *v < min || *v > max) return invalid(f, s, expected);
  out = static_cast<uint32_t>(*v);
  return true;
}

bool FieldReader::duration(const Fields& fields, std::string_view key, Millis& out) {
  const Field* f = fields.get(key);
  std::string s;
  if (!f || !scalar(*f, s, kExpectedDuration)) return f == nullptr;
  auto d = parse_duration(s);
  if (!d) return invalid(*f, s, kExpectedDuration);
  out = *d;
  return true;
}

void FieldReader::size(const Fields& fields, std::string_view key, uint64_t& out) {
  const Field* f = fields.get(key);
  std::string s;
  if (!f || !scalar(*f, s, kExpectedSize)) return;
  auto v = parse_size(s);
  if (!v) {
    invalid(*f, s, kExpectedSize);
    return;
  }
  out = *v;
}

void FieldReader::count(const Fields& fields, std::string_view key, uint32_t& out, uint32_t min) {
  if (const Field* f = fields.get(key)) number(*f, out, min, UINT32_MAX);
}

void FieldReader::boolean(const Fields& fields, std::string_view key, bool& out) {
  const Field* f = fields.get(key);
  std::string s;
  if (!f || !scalar(*f, s, kExpectedBool)) return;
  auto b = parse_bool(s);
  if (!b) {
    invalid(*f, s, kExpectedBool);
    return;
  }
  out = *b;
}

bool FieldReader::address(const Field& f, HostPort& out, bool listen) {
  std::string s;
  const char* expected = listen ? kExpectedListenAddress : kExpectedEndpoint;
  if (!scalar(f, s, expected)) return false;
  if (is_unix_endpoint(s)) {
    if (listen)
      return invalid(f, s, expected,
                     ": sluice listens on TCP; Unix sockets are for upstream endpoints");
    std::string problem;
    auto unix_socket = parse_endpoint(s, &problem);
    if (!unix_socket) return invalid(f, s, expected, ": " + problem);
    out = *unix_socket;
    return true;
  }
  auto hp = parse_host_port(s);
  if (!hp) return invalid(f, s, expected);
  if (listen && !is_ip_literal(hp->host))
    return invalid(f, s, expected, ": a listening socket binds to an IP address, not a name");
  if (!listen && hp->port == 0)
    return invalid(f, s, expected, ": port 0 is only for listeners (pick a free port)");
  auto checked = listen ? parse_listen_address(s) : parse_endpoint(s);
  if (!checked) return invalid(f, s, expected);
  out = *checked;
  return true;
}

bool FieldReader::name(const Field& f, std::string& out) {
  std::string s;
  if (!scalar(f, s, kExpectedName)) return false;
  if (!is_valid_name(s)) return invalid(f, s, kExpectedName);
  out = s;
  return true;
}

}  // namespace sluice
