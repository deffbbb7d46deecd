// load_config_text on arbitrary YAML: it never crashes or throws, every error and warning
// points into the file ("fuzz.yaml:LINE:COL: ..." with a line the file has), and a
// configuration that loads survives the round trip sluice relies on: --print-config's dump
// loads again to the same Config and dumps to the same text, and GET /config's JSON
// serializes.
//
// Input: the YAML text itself (the seeds are the files in config/).
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <sstream>

#include <string>

#include "config/config_file.h"
#include "fuzz_common.h"

namespace sluice::fuzz {
namespace {

constexpr const char* kName = "fuzz.yaml";

// A loaded configuration reads admin.token_file to its end with a blocking read (and checks
// that TLS files open). A device such as /dev/zero or /dev/stdin would hang the fuzzer rather
// than find anything, so inputs whose scalars name a device, a FIFO or anything under /proc,
// /sys or /dev are skipped. (The configuration is trusted input; see the README's findings.)
// `depth` bounds the recursion: an alias can make the node graph a cycle ("a: &b [{<<: *b}]").
bool names_a_special_file(const YAML::Node& node, size_t& budget, int depth = 0) {
  if (budget == 0 || depth > 64) return false;
  --budget;
  if (node.IsScalar()) {
    const std::string& s = node.Scalar();
    if (s.empty() || s.size() > PATH_MAX) return false;
    char resolved[PATH_MAX];
    if (!realpath(s.c_str(), resolved)) return false;
    std::string_view r(resolved);
    if (r == "/dev" || r == "/proc" || r == "/sys" || r.substr(0, 5) == "/dev/" ||
        r.substr(0, 6) == "/proc/" || r.substr(0, 5) == "/sys/")
      return true;
    struct stat st;
    return stat(resolved, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
  }
  if (node.IsSequence() || node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (node.IsMap()) {
        if (names_a_special_file(it->first, budget, depth + 1) ||
            names_a_special_file(it->second, budget, depth + 1))
          return true;
      } else if (names_a_special_file(*it, budget, depth + 1)) {
        return true;
      }
    }
  }
  return false;
}

// Counts the documents of the stream, giving up past `cap`.
size_t count_documents(const std::string& yaml, size_t cap) {
  struct Ignore : YAML::EventHandler {
    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  } ignore;
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  size_t n = 0;
  try {
    while (n <= cap && parser.HandleNextDocument(ignore)) ++n;
  } catch (const YAML::Exception&) {
  }
  return n;
}

// Whether load_config_text returns within `seconds` (run in a child process, which is killed
// otherwise).
bool returns_in_time(const std::string& yaml, unsigned seconds) {
  pid_t pid = fork();
  check(pid >= 0, "fork");
  if (pid == 0) {
    signal(SIGALRM, SIG_DFL);  // libFuzzer's own handler only reports slow inputs
    alarm(seconds);
    (void)load_config_text(yaml, kName, {});
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool skip(const std::string& yaml) {
  // yaml-cpp 0.7's parser reports an empty document again and again without reading on for
  // some invalid streams ("," alone), where LoadAll never returns: load_config_text must still
  // return. A stream of n bytes has at most n + 1 real documents; past that, the load is run in
  // a child process so a hang is reported instead of hanging the fuzzer.
  if (count_documents(yaml, yaml.size() + 1) > yaml.size() + 1)
    check(returns_in_time(yaml, 5), "load_config_text did not return within 5 s");
  try {
    size_t budget = 100000;
    // Only the first document is read as the configuration.
    if (names_a_special_file(YAML::Load(yaml), budget)) return true;
  } catch (const YAML::Exception&) {
    // Not loadable: load_config_text stops at the syntax error and reads no file.
  }
  return false;
}

// "NAME:LINE:COL: " with 1 <= LINE <= the file's lines (+1 for a position at its very end).
void check_positioned(const std::string& message, const std::string& yaml, const char* kind) {
  const std::string prefix = std::string(kName) + ":";
  check(message.compare(0, prefix.size(), prefix) == 0,
        std::string(kind) + " without the file name: " + printable(message, 500));
  size_t p = prefix.size();
  auto number = [&](char end) -> long {
    size_t start = p;
    long v = 0;
    while (p < message.size() && message[p] >= '0' && message[p] <= '9' && p - start < 9)
      v = v * 10 + (message[p++] - '0');
    check(p > start && p < message.size() && message[p] == end,
          std::string(kind) + " not in NAME:LINE:COL: form: " + printable(message, 500));
    ++p;
    return v;
  };
  long line = number(':');
  long col = number(':');
  check(p < message.size() && message[p] == ' ',
        std::string(kind) + " not in NAME:LINE:COL: form: " + printable(message, 500));
  long lines = 1;
  for (char c : yaml) lines += c == '\n';
  check(line >= 1 && line <= lines + 1 && col >= 1,
        std::string(kind) + " points outside the file (" + std::to_string(lines) +
            " lines): " + printable(message, 500));
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::fuzz;
  std::string yaml(reinterpret_cast<const char*>(data), size);
  if (skip(yaml)) return 0;
  sluice::ConfigLoad load = sluice::load_config_text(yaml, kName, {});
  check(load.config == nullptr || load.errors.empty(), "a configuration with errors was loaded");
  check(load.config != nullptr || !load.errors.empty(), "no configuration and no error");
  for (const std::string& e : load.errors) check_positioned(e, yaml, "error");
  for (const std::string& w : load.warnings) {
    const std::string k = std::string(kName) + ":";
    check(w.compare(0, k.size(), k) == 0, "warning without the file name: " + printable(w, 500));
  }
  if (!load.config) return 0;

  const std::string dump = sluice::dump_config_yaml(*load.config);
  sluice::ConfigLoad again = sluice::load_config_text(dump, "dump.yaml", {});
  std::string errors;
  for (const std::string& e : again.errors) errors += "\n  " + e;
  check(again.config != nullptr,
        "--print-config's output does not load:" + errors + "\n--- dump:\n" + dump);
  check(*again.config == *load.config,
        "--print-config's output loads to a different configuration\n--- dump:\n" + dump);
  check(sluice::dump_config_yaml(*again.config) == dump, "the dump of the dump differs");
  // GET /config serializes this; nlohmann::json throws on a string that is not UTF-8, and a
  // configuration that loads is UTF-8 throughout.
  (void)sluice::config_to_json(*load.config).dump(2);
  return 0;
}
