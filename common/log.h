// Process logging: one line per event on stderr, with a UTC timestamp and a level.
//
// Thread safety: any thread may log; each line is written with one write(2), so lines from
// different threads never interleave.
#pragma once

#include <sstream>
#include <string_view>

namespace corral {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Lines below this level are dropped. Set once at start-up (flags), read everywhere.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug", "info", "warn", "error"; returns false for anything else.
bool ParseLogLevel(std::string_view text, LogLevel* level);

// Collects one line and emits it when destroyed. Use through CORRAL_LOG.
class LogLine {
 public:
  LogLine(LogLevel level, const char* component);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  template <typename T>
  LogLine& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace corral

// CORRAL_LOG(kInfo, "proxy") << "listening on " << addr;
#define CORRAL_LOG(level, component)                                         \
  if (::corral::LogLevel::level < ::corral::GetLogLevel()) {                 \
  } else                                                                     \
    ::corral::LogLine(::corral::LogLevel::level, component)
