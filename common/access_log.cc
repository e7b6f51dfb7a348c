#include "common/access_log.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace corral {

AccessLog::Descriptor::~Descriptor() {
  if (owns && fd >= 0) ::close(fd);
}

absl::StatusOr<std::shared_ptr<AccessLog::Descriptor>> AccessLog::OpenDescriptor(
    const std::string& path) {
  if (path.empty() || path == "-") return std::make_shared<Descriptor>(STDOUT_FILENO, false);
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::UnavailableError("cannot open access log " + path +
                                  " for appending: " + std::strerror(errno));
  }
  return std::make_shared<Descriptor>(fd, true);
}

absl::StatusOr<std::unique_ptr<AccessLog>> AccessLog::Open(const std::string& path) {
  auto out = OpenDescriptor(path);
  if (!out.ok()) return out.status();
  return std::unique_ptr<AccessLog>(new AccessLog(path.empty() ? "-" : path, *std::move(out)));
}

AccessLog::AccessLog(std::string path, std::shared_ptr<Descriptor> out)
    : path_(std::move(path)), out_(std::move(out)) {}

AccessLog::~AccessLog() = default;

bool AccessLog::Write(std::string_view line) {
  const std::shared_ptr<Descriptor> out = out_.load();
  char newline = '\n';
  iovec iov[2] = {{const_cast<char*>(line.data()), line.size()}, {&newline, 1}};
  const size_t total = line.size() + 1;
  // One writev: O_APPEND makes it one append, whole, among the other writers' lines. A short
  // write (a full disk mid-line) is finished rather than left as half a line.
  size_t done = 0;
  while (done < total) {
    const ssize_t n = ::writev(out->fd, iov, 2);
    if (n < 0) {
      if (errno == EINTR) continue;
      failed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    done += static_cast<size_t>(n);
    size_t left = static_cast<size_t>(n);
    for (iovec& part : iov) {
      const size_t taken = std::min(left, part.iov_len);
      part.iov_base = static_cast<char*>(part.iov_base) + taken;
      part.iov_len -= taken;
      left -= taken;
    }
  }
  return true;
}

absl::Status AccessLog::Reopen() {
  if (path_ == "-") return absl::OkStatus();
  auto out = OpenDescriptor(path_);
  if (!out.ok()) return out.status();
  out_.store(*std::move(out));
  return absl::OkStatus();
}

}  // namespace corral
