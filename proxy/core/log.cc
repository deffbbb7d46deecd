#include "core/log.h"

#include <atomic>
#include <cstdarg>
#include <ctime>

namespace sluice {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_json{false};
}  // namespace

const char* log_level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

void log_set_level(LogLevel level) {
  g_level.store(static_cast<int>(level));
}
void log_set_format(LogFormat format) {
  g_json.store(format == LogFormat::kJson);
}

void json_escape(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  size_t plain = 0;  // most values need no escaping: append them whole
  while (plain < s.size()) {
    auto u = static_cast<unsigned char>(s[plain]);
    if (u < 0x20 || u == 0x7f || u == '"' || u == '\\') break;
    ++plain;
  }
  out.append(s.data(), plain);
  s.remove_prefix(plain);
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      out.append("\\u00");
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    } else {
      out.push_back(c);
    }
  }
}

bool log_enabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void log_line(LogLevel level, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char when[32];
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900,
           t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
  if (g_json.load(std::memory_order_relaxed)) {
    std::string line = "{\"time\":\"";
    line += when;
    line += "\",\"level\":\"";
    line += log_level_name(level);
    line += "\",\"msg\":\"";
    json_escape(line, msg);
    line += "\"}\n";
    fputs(line.c_str(), stderr);
    return;
  }
  fprintf(stderr, "%s %s %s\n", when, log_level_name(level), msg);
}

}  // namespace sluice
