#include "common/promtool_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace corral::metrics {
namespace {

std::string FindOnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  std::string_view rest = path;
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (dir.empty()) continue;
    std::string candidate = std::string(dir) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace

absl::Status CheckWithPromtool(std::string_view text) {
  const std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) {
    return absl::FailedPreconditionError(
        "promtool is not on PATH: install Debian's prometheus package (scripts/install-deps.sh "
        "does, so `make test` has it)");
  }
  const char* tmpdir = std::getenv("TMPDIR");
  std::string path = absl::StrCat(tmpdir != nullptr ? tmpdir : "/tmp", "/corral-metrics-XXXXXX");
  const int fd = mkstemp(path.data());
  if (fd < 0) return absl::InternalError(absl::StrCat("mkstemp ", path, " failed"));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n <= 0) {
      close(fd);
      unlink(path.c_str());
      return absl::InternalError(absl::StrCat("writing ", path, " failed"));
    }
    written += static_cast<size_t>(n);
  }
  close(fd);

  // promtool reads the text on stdin; its findings go to stdout or stderr depending on kind.
  const std::string command = absl::StrCat("'", promtool, "' check metrics < '", path, "' 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    unlink(path.c_str());
    return absl::InternalError("could not run promtool");
  }
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  const int status = pclose(pipe);
  unlink(path.c_str());
  if (status == -1 || !WIFEXITED(status)) {
    return absl::InternalError("promtool did not exit normally: " + output);
  }
  if (WEXITSTATUS(status) != 0 || !output.empty()) {
    return absl::InternalError(
        absl::StrCat("promtool check metrics (exit ", WEXITSTATUS(status), "): ", output));
  }
  return absl::OkStatus();
}

}  // namespace corral::metrics
