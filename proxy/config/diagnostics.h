#pragma once
// Diagnostics: the errors and warnings of one configuration load, each tied to where the
// offending value came from (a line and column of the file, or a command-line flag), formatted
// as complete lines an operator can act on. Owned by the load that fills it.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// Where a value came from. A file position is 1-based; line 0 means "not from the file": then
// `flag` names the override that set it ("--listen", "--workers (from SLUICE_WORKERS)"), or is
// empty for a built-in default.
struct Where {
  int line = 0;
  int column = 0;
  std::string flag;

  static Where flag_named(std::string flag) { return Where{0, 0, std::move(flag)}; }
  bool in_file() const { return line > 0; }
};

class Diagnostics {
 public:
  // `source` is the file name used as the prefix of positioned lines; empty without a file.
  explicit Diagnostics(std::string source) : source_(std::move(source)) {}

  void error(const Where& where, const std::string& message);
  void warning(const Where& where, const std::string& message);
  bool has_errors() const { return !errors_.empty(); }

  // In reading order: file positions first (by line, then column), then the rest as reported.
  std::vector<std::string> errors() const { return sorted(errors_); }
  std::vector<std::string> warnings() const { return sorted(warnings_); }

 private:
  struct Entry {
    int line;
    int column;
    std::string text;
  };
  std::string format(const Where& where, std::string_view kind, const std::string& message) const;
  static std::vector<std::string> sorted(std::vector<Entry> entries);

  std::string source_;
  std::vector<Entry> errors_;
  std::vector<Entry> warnings_;
};

// The candidate closest to `word` by edit distance (case-insensitive, '-' and '_' alike), or ""
// when none is close enough to be a likely typo.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" for the closest candidate, or "" when there is none.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

// "a, b, c" (each quoted) for messages that list what is allowed.
std::string quoted_list(const std::vector<std::string>& items);

}  // namespace sluice
