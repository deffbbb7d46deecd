#pragma once
// Helpers shared by the configuration loader's tests: loading YAML text under the name
// "t.yaml", expecting exactly one positioned error, and temporary files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "config/config_file.h"

namespace sluice::config_test {

inline constexpr const char* kFile = "t.yaml";

inline ConfigLoad load(const std::string& yaml, const std::vector<ConfigOverride>& overrides = {}) {
  return load_config_text(yaml, kFile, overrides);
}

inline std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "  " + l + "\n";
  return out;
}

// Exactly one error, at LINE:COL, whose message contains `text`.
inline void expect_error(const std::string& yaml, const std::string& line_col,
                         const std::string& text) {
  SCOPED_TRACE(yaml);
  ConfigLoad r = load(yaml);
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << joined(r.errors);
  const std::string prefix = std::string(kFile) + ":" + line_col + ": ";
  EXPECT_EQ(r.errors[0].substr(0, prefix.size()), prefix) << r.errors[0];
  EXPECT_NE(r.errors[0].find(text), std::string::npos) << r.errors[0];
}

// A valid file around one cluster entry / one listener entry, for focused error tests.
inline std::string with_cluster(const std::string& cluster_lines) {
  return "listeners:\n"
         "  - {name: ingress, address: 127.0.0.1:8080, cluster: app}\n"
         "clusters:\n"
         "  - name: app\n" +
         cluster_lines;
}

inline ConfigLoad expect_ok(const std::string& yaml,
                            const std::vector<ConfigOverride>& overrides = {}) {
  ConfigLoad r = load(yaml, overrides);
  EXPECT_TRUE(r.config) << yaml << "\n" << joined(r.errors);
  EXPECT_TRUE(r.errors.empty());
  return r;
}

// A temporary file that is removed with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/sluice-config-test-XXXXXX";
    int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    close(fd);
    path_ = name;
  }
  ~TempFile() { unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace sluice::config_test
