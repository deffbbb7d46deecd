#pragma once
// Error and lifecycle log lines to stderr. One fprintf per line (stdio locks per call), so lines
// from several workers never interleave. The structured access log comes with issue #6.
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace sluice {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat : uint8_t { kText, kJson };

void log_set_level(LogLevel level);
const char* log_level_name(LogLevel level);  // "debug", "info", "warn", "error"
// kJson: one JSON object per line ({"time", "level", "msg"}), for log collectors.
void log_set_format(LogFormat format);
// Appends `s` to `out` as the inside of a JSON string (quotes, backslashes, control bytes).
void json_escape(std::string& out, std::string_view s);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define SLUICE_LOG(level, ...)                                                \
  do {                                                                        \
    if (::sluice::log_enabled(level)) ::sluice::log_line(level, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...) SLUICE_LOG(::sluice::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) SLUICE_LOG(::sluice::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) SLUICE_LOG(::sluice::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) SLUICE_LOG(::sluice::LogLevel::kError, __VA_ARGS__)

}  // namespace sluice
