#include "config/config_file.h"

#include <yaml-cpp/eventhandler.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

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

// Where the first byte that is not well-formed UTF-8 (RFC 3629) is, or npos. A YAML stream is
// UTF-8 and yaml-cpp does not check it: a string that is not would reach the admin API's JSON.
size_t invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // UTF-16 surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // over U+10FFFF
    } else {
      return i;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return i;
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return i;
    }
    i += n + 1;
  }
  return std::string_view::npos;
}

Where where_in(std::string_view text, size_t pos) {
  int line = 1, column = 1;
  for (size_t i = 0; i < pos; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return Where{line, column, {}};
}

// Records where each document of a YAML stream starts, and where its first node is.
class DocumentStarts final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts, first_nodes;
  void OnDocumentStart(const YAML::Mark& m) override { starts.push_back(m); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& m) {
    if (first_nodes.size() < starts.size()) first_nodes.push_back(m);
  }
};

// Reads the first document of a YAML stream and reports one after it. Not YAML::LoadAll: on
// some invalid streams ("," alone) yaml-cpp 0.7's parser reports an empty document again and
// again at the same place without reading on (yaml-cpp issue 1040), and LoadAll never returns.
// Throws YAML::Exception on a syntax error.
YAML::Node load_first_document(const std::string& yaml, Diagnostics& diag) {
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  DocumentStarts docs;
  if (!parser.HandleNextDocument(docs)) return YAML::Node();
  if (parser.HandleNextDocument(docs)) {
    const YAML::Mark& first = docs.starts.front();
    const YAML::Mark& next = docs.starts.back();
    if (next.pos == first.pos) {
      // Nothing was read: the character there cannot start a document.
      const size_t at = static_cast<size_t>(next.pos);
      std::string c = at < yaml.size() ? std::string(1, yaml[at]) : std::string();
      throw YAML::ParserException(next, "unexpected '" + c + "'");
    }
    const YAML::Mark& at = docs.first_nodes.size() > 1 ? docs.first_nodes[1] : next;
    diag.error(Where{at.line + 1, at.column + 1, {}},
               "a second YAML document (after '---'): the configuration is one document");
  }
  return YAML::Load(yaml);
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
  if (size_t bad = invalid_utf8_at(yaml); bad != std::string_view::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(yaml[bad]));
    diag.error(where_in(yaml, bad),
               std::string("the file is not UTF-8 (byte ") + byte + "); YAML files are UTF-8");
    return finish(config, marks, diag, false, overrides);
  }
  try {
    read_config_yaml(load_first_document(yaml, diag), config, marks, diag);
  } catch (const YAML::Exception& e) {
    parsed = false;
    Where w = e.mark.is_null() ? Where{} : Where{e.mark.line + 1, e.mark.column + 1, {}};
    diag.error(
        w, "YAML syntax error: " + e.msg + (e.mark.is_null() ? "" : tab_hint(yaml, e.mark.line)));
  }
  return finish(config, marks, diag, parsed, overrides);
}

}  // namespace sluice
