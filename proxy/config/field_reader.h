#pragma once
// What every section of the YAML reader uses: one key of a map and its value (Field), the keys
// of one map checked against the known ones (Fields), and FieldReader, which reads one value of
// each kind and reports a problem at its node. The sections themselves are read in
// yaml_reader.cc and (TLS) tls_reader.cc.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/diagnostics.h"
#include "core/config.h"

namespace sluice {

Where where_of(const YAML::Node& node);
std::string describe(const YAML::Node& node);  // "'x'", "a list", "a map", "nothing"

// One key of a map and its value. `path` names the setting in messages: "clusters[app].pool".
struct Field {
  std::string path;
  YAML::Node key;
  YAML::Node value;

  // The value's position; for an empty value, the key's (yaml-cpp puts a null after the key).
  Where where() const {
    Where w = value.IsNull() ? Where{} : where_of(value);
    return w.in_file() ? w : where_of(key);
  }
};

// Keys that belong to a nested section, for "'delay' belongs under 'drain'" hints.
struct Section {
  std::string name;
  std::vector<std::string> keys;
};

// The entries of one YAML map by key. Unknown and repeated keys are reported as it is built.
class Fields {
 public:
  Fields(const YAML::Node& map, const std::string& path, const std::vector<std::string>& known,
         Diagnostics& diag, const std::vector<Section>& sections = {});

  const Field* get(std::string_view key) const {
    for (const auto& f : fields_)
      if (f.key.Scalar() == key) return &f;
    return nullptr;
  }

 private:
  static std::string in(const std::string& path);
  static std::string unknown_hint(const std::string& name, const std::string& path,
                                  const std::vector<std::string>& known,
                                  const std::vector<Section>& sections);

  std::vector<Field> fields_;
};

// Reads values of each kind into the Config. A bad value is reported at its node and leaves the
// setting as it was; the functions that return bool say whether the value was good.
class FieldReader {
 public:
  explicit FieldReader(Diagnostics& diag) : diag_(diag) {}

 protected:
  // ---- types ----

  bool expect(const Field& f, bool ok, const char* expected);
  // The field when it is a map (an empty value counts as an empty map: every default).
  const Field* map_field(const Fields& f, std::string_view key);
  bool scalar(const Field& f, std::string& out, const char* expected);
  // "{path}: invalid value 'x'{reason} (expected ...)"; a reason starts with ": ".
  bool invalid(const Field& f, const std::string& text, const std::string& expected,
               const std::string& reason = "");

  // ---- values ----

  bool number(const Field& f, uint32_t& out, uint32_t min, uint32_t max);
  bool duration(const Fields& fields, std::string_view key, Millis& out);
  void size(const Fields& fields, std::string_view key, uint64_t& out);
  void count(const Fields& fields, std::string_view key, uint32_t& out, uint32_t min = 0);
  void boolean(const Fields& fields, std::string_view key, bool& out);
  // `listen`: an address to bind (IP literal, port 0 allowed); else an upstream endpoint.
  bool address(const Field& f, HostPort& out, bool listen);
  bool name(const Field& f, std::string& out);

  template <typename T>
  void enumeration(const Fields& fields, std::string_view key, T& out,
                   std::optional<T> (*parse)(std::string_view),
                   const std::vector<std::string>& names) {
    const Field* f = fields.get(key);
    std::string s;
    std::string expected = "one of " + quoted_list(names);
    if (!f || !scalar(*f, s, expected.c_str())) return;
    auto v = parse(s);
    if (!v) {
      std::string hint;
      if (std::string best = closest_match(s, names); !best.empty())
        hint = "; did you mean '" + best + "'?";
      diag_.error(f->where(),
                  f->path + ": invalid value '" + s + "' (expected " + expected + hint + ")");
      return;
    }
    out = *v;
  }

  Diagnostics& diag_;
};

}  // namespace sluice
