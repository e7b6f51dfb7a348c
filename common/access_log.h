// AccessLog: where a process writes one line per finished request (a JSON object the caller
// formats; docs/observability.md lists the proxy's fields). The destination is a file opened for
// appending, or standard output; Reopen() opens the file again by name, which is what logrotate
// needs after it moved the old one away (the proxy calls it on SIGHUP).
//
// Each line goes out in one write(2) on a descriptor opened with O_APPEND, so lines from many
// threads never interleave and nothing is buffered in the process: a line is in the file (the
// kernel's page cache) when Write returns, and a crash loses no finished request.
//
// Thread safety: Write and Reopen may be called from any thread, concurrently. Writers never
// wait for each other; a Reopen swaps the descriptor in while writes go on (a write that started
// on the old file finishes there).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace corral {

class AccessLog {
 public:
  // `path` "-" (or empty) is standard output. Fails with a message naming the path when the file
  // cannot be opened for appending (it is created with mode 0640 when missing).
  static absl::StatusOr<std::unique_ptr<AccessLog>> Open(const std::string& path);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Appends `line` and a newline. False when the write failed (disk full, a closed stdout); the
  // failure is counted, never thrown, and the next line is tried again.
  bool Write(std::string_view line);

  // Opens the file again by its name (a no-op on standard output). On failure the old
  // descriptor stays in use and the error says why.
  absl::Status Reopen();

  const std::string& path() const { return path_; }
  // Lines that could not be written.
  uint64_t failed_writes() const { return failed_.load(std::memory_order_relaxed); }

 private:
  // An open descriptor, closed when the last writer using it lets go.
  struct Descriptor {
    explicit Descriptor(int f, bool owned) : fd(f), owns(owned) {}
    ~Descriptor();
    const int fd;
    const bool owns;  // false for standard output
  };

  explicit AccessLog(std::string path, std::shared_ptr<Descriptor> out);
  static absl::StatusOr<std::shared_ptr<Descriptor>> OpenDescriptor(const std::string& path);

  const std::string path_;
  std::atomic<std::shared_ptr<Descriptor>> out_;
  std::atomic<uint64_t> failed_{0};
};

}  // namespace corral
