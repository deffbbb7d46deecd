#include "config/diagnostics.h"

#include <algorithm>
#include <cctype>

namespace sluice {

void Diagnostics::error(const Where& where, const std::string& message) {
  errors_.push_back(Entry{where.line, where.column, format(where, "", message)});
}

void Diagnostics::warning(const Where& where, const std::string& message) {
  warnings_.push_back(Entry{where.line, where.column, format(where, "warning: ", message)});
}

std::string Diagnostics::format(const Where& where, std::string_view kind,
                                const std::string& message) const {
  std::string out;
  if (where.in_file()) {
    out = source_ + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": ";
  } else if (!where.flag.empty()) {
    out = where.flag + ": ";
  } else if (!source_.empty()) {
    out = source_ + ": ";
  }
  out += kind;
  out += message;
  return out;
}

std::vector<std::string> Diagnostics::sorted(std::vector<Entry> entries) {
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if ((a.line > 0) != (b.line > 0)) return a.line > 0;
    if (a.line != b.line) return a.line < b.line;
    return a.column < b.column;
  });
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (auto& e : entries) out.push_back(std::move(e.text));
  return out;
}

namespace {

char fold(char c) {
  if (c == '-') return '_';
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

// Edits (insert, delete, substitute, swap two neighbours) that turn a into b.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = fold(a[i - 1]) == fold(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && fold(a[i - 1]) == fold(b[j - 2]) && fold(a[i - 2]) == fold(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  // Short words tolerate one slip, longer ones a few: "conect_timeout", "endpoint", "sapces".
  size_t limit = word.size() <= 4 ? 1 : word.size() <= 8 ? 2 : 3;
  std::string best;
  size_t best_distance = limit + 1;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best = closest_match(word, candidates);
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "'" : ", '") + i + "'";
  return out;
}

}  // namespace sluice
