// The sockets of HTTP connections: finding the client's socket from inside an httplib handler,
// the numeric addresses of a socket's two ends, and writing a whole message without blocking in
// the write.
//
// cpp-httplib 0.11.4 gives a handler no access to the connection it serves, yet a proxy waiting
// minutes for a node's first byte (a cold model load) must notice a client that gave up, or
// the node keeps generating for nobody; the simulated node likewise stops generating for a
// client that left. The request does carry both ends' addresses. A connection served by
// HttpListener is registered for its serving thread (ServedConnection), so a handler finds it
// with one comparison. Any other connection (a server not built on HttpListener, or a lookup
// from another thread) is found among the process's descriptors: the one socket whose local and
// peer addresses match. That costs a scan of /proc/self/fd, which callers keep off the common
// path.
//
// Thread safety: safe from any thread. A ServedConnection is visible only to the thread that
// created it. The descriptor FindClientSocket returns belongs to the server: poll and peek at
// it, never read, write or close it.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <string>

#include "absl/status/status.h"

namespace corral {

// The descriptor of the TCP socket connected from remote_addr:remote_port to
// local_addr:local_port (numeric addresses as httplib reports them), or -1. An empty local_addr
// matches any local end.
int FindClientSocket(const std::string& remote_addr, int remote_port, const std::string& local_addr,
                     int local_port);

// A socket end's numeric address ("127.0.0.1", "::1", as httplib writes REMOTE_ADDR) and port.
// False (and the outputs untouched) when the socket has no such end.
bool PeerAddress(int fd, std::string* addr, int* port);
bool LocalAddress(int fd, std::string* addr, int* port);

// Registers, for the calling thread and for this object's lifetime, the client connection the
// thread serves, so FindClientSocket answers for it without a scan. Nests: the innermost wins.
class ServedConnection {
 public:
  ServedConnection(int fd, const std::string& remote_addr, int remote_port,
                   const std::string& local_addr, int local_port);
  ~ServedConnection();
  ServedConnection(const ServedConnection&) = delete;
  ServedConnection& operator=(const ServedConnection&) = delete;

 private:
  friend int FindClientSocket(const std::string&, int, const std::string&, int);

  const int fd_;
  const std::string remote_addr_;
  const int remote_port_;
  const std::string local_addr_;
  const int local_port_;
  ServedConnection* const outer_;
};

// Writes every byte of `iov[0..count)` to a socket without blocking in the write itself (a
// blocking socket is written with MSG_DONTWAIT), in order, with as few writes
// as the socket allows (one, normally), waiting at most `timeout` for room between partial
// writes. Modifies `iov` as it goes. No SIGPIPE.
absl::Status WriteAll(int fd, iovec* iov, size_t count, std::chrono::milliseconds timeout);

}  // namespace corral
