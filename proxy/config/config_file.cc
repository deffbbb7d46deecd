#include "config/config_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "config/config_marks.h"

namespace sluice {
namespace {

// A token longer than this is not a token but the wrong file.
constexpr size_t kMaxTokenBytes = 4096;

bool read_file(const std::string& path, std::string& out, std::string& error) {
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) {
    error = strerror(errno);
    return false;
  }
  char buf[16384];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  bool failed = ferror(f);
  int e = errno;
  fclose(f);
  if (failed) error = strerror(e);
  return !failed;
}

// YAML forbids tabs in indentation, and yaml-cpp's message for them does not say so.
std::string tab_hint(const std::string& text, int line) {
  size_t pos = 0;
  for (int l = 0; l < line && pos != std::string::npos; ++l) {
    pos = text.find('\n', pos);
    if (pos != std::string::npos) ++pos;
  }
  if (pos == std::string::npos) return "";
  size_t end = text.find('\n', pos);
  std::string_view row(text.data() + pos, (end == std::string::npos ? text.size() : end) - pos);
  size_t indent = row.find_first_not_of(" \t");
  if (row.substr(0, indent).find('\t') == std::string_view::npos) return "";
  return " (this line is indented with a tab: YAML allows only spaces)";
}

void read_token(Config& config, const ConfigMarks& marks, Diagnostics& diag) {
  const std::string& path = config.admin.token_file;
  if (path.empty()) return;
  const bool from_flag = !marks.token_file.in_file() && !marks.token_file.flag.empty();
  auto problem = [&](const std::string& what) {
    if (from_flag)
      diag.error(marks.token_file,
                 "invalid value '" + path +
                     "' (expected a readable file holding the admin token: " + what + ")");
    else
      diag.error(marks.token_file, "admin.token_file: '" + path + "': " + what);
  };
  std::string text, error;
  if (!read_file(path, text, error)) return problem("cannot read it: " + error);
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return problem("the file is empty; it should hold the token");
  size_t end = text.find_last_not_of(" \t\r\n");
  std::string token = text.substr(begin, end - begin + 1);
  if (token.size() > kMaxTokenBytes)
    return problem("over " + std::to_string(kMaxTokenBytes) + " bytes: not a token file");
  for (char c : token)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return problem(
          "the token must be one line of printable characters (it is sent as the "
          "X-Sluice-Admin-Token header)");
  config.admin_token = token;
}

ConfigLoad finish(Config& config, ConfigMarks& marks, Diagnostics& diag, bool validate,
                  const std::vector<ConfigOverride>& overrides) {
  apply_overrides(overrides, config, marks, diag);
  if (validate) {
    validate_config(config, marks, diag);
    read_token(config, marks, diag);
  }
  ConfigLoad out;
  out.errors = diag.errors();
  out.warnings = diag.warnings();
  if (out.errors.empty()) out.config = std::make_shared<Config>(std::move(config));
  return out;
}

}  // namespace

ConfigMarks ConfigMarks::for_defaults(const Config& config) {
  ConfigMarks m;
  for (const auto& l : config.listeners) {
    ListenerMarks lm;
    lm.route.resize(l.routes.size());
    m.listener.push_back(std::move(lm));
  }
  m.cluster.resize(config.clusters.size());
  return m;
}

Config default_config() {
  Config c;
  ListenerConfig l;
  l.routes.push_back(RouteConfig{.cluster = "app"});
  c.listeners.push_back(std::move(l));
  ClusterConfig cluster;
  cluster.endpoints.push_back(HostPort{"127.0.0.1", 4000});
  c.clusters.push_back(std::move(cluster));
  return c;
}

ConfigLoad load_config(const std::string* file, const std::vector<ConfigOverride>& overrides,
                       const Config& defaults) {
  if (file) {
    std::string text, error;
    if (!read_file(*file, text, error)) {
      ConfigLoad out;
      out.errors.push_back(*file + ": cannot read the configuration file: " + error);
      return out;
    }
    return load_config_text(text, *file, overrides, defaults);
  }
  Config config = defaults;
  ConfigMarks marks = ConfigMarks::for_defaults(config);
  Diagnostics diag("");
  return finish(config, marks, diag, true, overrides);
}

ConfigLoad load_config_text(const std::string& yaml, const std::string& name,
                            const std::vector<ConfigOverride>& overrides, const Config& defaults) {
  Config config = defaults;
  ConfigMarks marks = ConfigMarks::for_defaults(config);
  Diagnostics diag(name);
  bool parsed = true;
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(yaml);
    if (docs.size() > 1) {
      YAML::Mark m = docs[1].Mark();
      Where w = m.is_null() ? Where{} : Where{m.line + 1, m.column + 1, {}};
      diag.error(w, "a second YAML document (after '---'): the configuration is one document");
    }
    read_config_yaml(docs.empty() ? YAML::Node() : docs[0], config, marks, diag);
  } catch (const YAML::Exception& e) {
    parsed = false;
    Where w = e.mark.is_null() ? Where{} : Where{e.mark.line + 1, e.mark.column + 1, {}};
    diag.error(
        w, "YAML syntax error: " + e.msg + (e.mark.is_null() ? "" : tab_hint(yaml, e.mark.line)));
  }
  return finish(config, marks, diag, parsed, overrides);
}

}  // namespace sluice
