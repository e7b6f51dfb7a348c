// An httplib::Server that can hold thousands of connections: a worker pool of a chosen size,
// a real listen backlog (Debian's build bakes in 5), and the bound port written to a port file.
//
// Thread safety: configure and Bind from one thread, then Run on one thread (it blocks);
// Stop may be called from any thread.
#pragma once

#include <httplib.h>

#include <string>

#include "absl/status/statusor.h"

namespace corral {

struct ListenAddress {
  std::string host;
  int port = 0;
};

// Parses "host:port", "[v6]:port" or ":port" (host 0.0.0.0). Port 0 is allowed (any free port).
absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& text);

// Writes `port` to `path` atomically (temp file + rename). No-op when path is empty.
absl::Status WritePortFile(const std::string& path, int port);

class HttpListener : public httplib::Server {
 public:
  // `workers`: threads serving connections (one per open connection). `backlog`: the kernel's
  // accept queue length.
  HttpListener(size_t workers, int backlog);

  // Binds and raises the backlog. Returns the bound port.
  absl::StatusOr<int> Bind(const ListenAddress& address);
  // Serves until Stop(). Returns false if the server failed.
  bool Run() { return listen_after_bind(); }

 private:
  int backlog_;
};

}  // namespace corral
