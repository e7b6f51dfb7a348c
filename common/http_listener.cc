#include "common/http_listener.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/numbers.h"
#include "common/client_socket.h"

namespace corral {
namespace {

using std::chrono::milliseconds;

milliseconds ToMillis(time_t sec, time_t usec) {
  return milliseconds(static_cast<int64_t>(sec) * 1000 + static_cast<int64_t>(usec) / 1000);
}

// Waits until `fd` is ready for `events` or `timeout` passes. EINTR waits again for what is
// left of the timeout.
bool WaitReady(int fd, short events, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    pollfd pfd{fd, events, 0};
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    const int r = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

// One accepted client connection as httplib's request parser and response writer see it (see
// http_listener.h for what it does differently from httplib's own stream). Used by the one
// worker thread serving the connection.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, milliseconds keep_alive, milliseconds read_timeout,
                   milliseconds write_timeout)
      : fd_(fd), read_timeout_(read_timeout), write_timeout_(write_timeout) {
    // The socket stays blocking for one read: the wait for a request's first bytes, bounded by
    // the keep-alive timeout (SO_RCVTIMEO; 0 would mean forever, so at least 1 ms). Every other
    // read and write is non-blocking (MSG_DONTWAIT) and polls with its own timeout.
    const int64_t wait_ms = std::max<int64_t>(1, keep_alive.count());
    timeval tv{static_cast<time_t>(wait_ms / 1000),
               static_cast<suseconds_t>(wait_ms % 1000 * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    has_remote_ = PeerAddress(fd, &remote_addr_, &remote_port_);
    has_local_ = LocalAddress(fd, &local_addr_, &local_port_);
  }

  const std::string& remote_addr() const { return remote_addr_; }
  int remote_port() const { return remote_port_; }
  const std::string& local_addr() const { return local_addr_; }
  int local_port() const { return local_port_; }

  // True once a request's first bytes are here (read in the same system call that waited for
  // them); false when the keep-alive timeout passed without any, or the client closed or
  // failed.
  bool WaitForRequest() {
    if (start_ < end_) return true;
    ssize_t n;
    do {
      n = ::recv(fd_, buffer_.data(), buffer_.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    start_ = 0;
    end_ = static_cast<size_t>(n);
    hold_next_write_ = true;
    return true;
  }

  // The next write starts an answer: it is held back (a request read in one go from the
  // socket holds it anyway; this covers one that was already buffered behind the previous).
  void BeginAnswer() { hold_next_write_ = true; }

  // Sends held bytes. False when the client cannot take them.
  bool Flush() const {
    if (held_.empty()) return true;
    iovec iov{const_cast<char*>(held_.data()), held_.size()};
    const bool ok = WriteAll(fd_, &iov, 1, write_timeout_).ok();
    held_.clear();
    return ok;
  }

  // httplib::Stream
  bool is_readable() const override {
    return start_ < end_ || (Flush() && WaitReady(fd_, POLLIN, read_timeout_));
  }

  bool is_writable() const override {
    if (!Flush() || !WaitReady(fd_, POLLOUT, write_timeout_)) return false;
    // A client that closed its end is gone even though its socket still takes writes.
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
  }

  ssize_t read(char* ptr, size_t size) override {
    if (start_ == end_) {
      // Nothing buffered: what was held must reach the client before waiting for it (a
      // 100 Continue, say).
      if (!Flush()) return -1;
      if (size >= buffer_.size()) return Receive(ptr, size);
      const ssize_t n = Receive(buffer_.data(), buffer_.size());
      if (n <= 0) return n;
      start_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - start_);
    std::memcpy(ptr, buffer_.data() + start_, n);
    start_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (hold_next_write_) {
      held_.append(ptr, size);
      hold_next_write_ = false;
      return static_cast<ssize_t>(size);
    }
    iovec iov[2] = {{const_cast<char*>(held_.data()), held_.size()},
                    {const_cast<char*>(ptr), size}};
    const bool ok = WriteAll(fd_, iov, 2, write_timeout_).ok();
    held_.clear();
    return ok ? static_cast<ssize_t>(size) : -1;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    if (has_remote_) {
      ip = remote_addr_;
      port = remote_port_;
    }
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    if (has_local_) {
      ip = local_addr_;
      port = local_port_;
    }
  }

  socket_t socket() const override { return fd_; }

 private:
  // One recv, waiting up to the read timeout only when nothing is there yet. -1 on a timeout
  // or an error, 0 at the client's end of stream.
  ssize_t Receive(char* ptr, size_t size) {
    while (true) {
      const ssize_t n = ::recv(fd_, ptr, size, MSG_DONTWAIT);
      if (n >= 0) {
        // What follows reading a request is the start of its answer: hold it back.
        if (n > 0) hold_next_write_ = true;
        return n;
      }
      if (errno == EINTR) continue;
      if ((errno != EAGAIN && errno != EWOULDBLOCK) || !WaitReady(fd_, POLLIN, read_timeout_)) {
        return -1;
      }
    }
  }

  const int fd_;
  const milliseconds read_timeout_;
  const milliseconds write_timeout_;
  std::string remote_addr_;
  int remote_port_ = -1;
  bool has_remote_ = false;
  std::string local_addr_;
  int local_port_ = -1;
  bool has_local_ = false;
  // Bytes read from the socket and not yet taken: buffer_[start_, end_).
  std::array<char, 4096> buffer_;
  size_t start_ = 0;
  size_t end_ = 0;
  // The held start of an answer (see http_listener.h). Mutable: the const checks httplib calls
  // (is_readable, is_writable) send it first.
  mutable std::string held_;
  bool hold_next_write_ = false;
};

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError("listen address \"" + text + "\" must be HOST:PORT");
  }
  ListenAddress out;
  out.host = text.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (out.host.empty()) out.host = "0.0.0.0";
  int port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError("listen address \"" + text + "\" has no valid port");
  }
  out.port = port;
  return out;
}

absl::Status WritePortFile(const std::string& path, int port) {
  if (path.empty()) return absl::OkStatus();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out) return absl::InternalError("cannot write port file " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError("cannot rename port file to " + path);
  }
  return absl::OkStatus();
}

bool HttpListener::process_and_close_socket(socket_t sock) {
  bool served = false;
  {
    ConnectionStream stream(sock, ToMillis(keep_alive_timeout_sec_, 0),
                            ToMillis(read_timeout_sec_, read_timeout_usec_),
                            ToMillis(write_timeout_sec_, write_timeout_usec_));
    ServedConnection registered(sock, stream.remote_addr(), stream.remote_port(),
                                stream.local_addr(), stream.local_port());
    // As httplib's loop: up to keep_alive_max_count_ requests (the last one is told to close),
    // each awaited for the keep-alive timeout, none started once the server was stopped.
    for (size_t left = keep_alive_max_count_;
         left > 0 && svr_sock_ != INVALID_SOCKET && stream.WaitForRequest(); --left) {
      bool connection_closed = false;
      stream.BeginAnswer();
      served = process_request(stream, left == 1, connection_closed, nullptr);
      stream.Flush();
      if (!served || connection_closed) break;
    }
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return served;
}

HttpListener::HttpListener(size_t workers, int backlog) : backlog_(backlog) {
  new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
}

absl::StatusOr<int> HttpListener::Bind(const ListenAddress& address) {
  int port = address.port;
  if (port == 0) {
    port = bind_to_any_port(address.host);
    if (port <= 0) {
      return absl::UnavailableError("cannot bind " + address.host + ":0");
    }
  } else if (!bind_to_port(address.host, port)) {
    return absl::UnavailableError("cannot bind " + address.host + ":" + std::to_string(port) +
                                  " (in use, or not an address of this machine)");
  }
  // httplib listened with its baked-in backlog of 5; listening again raises it.
  if (::listen(svr_sock_, backlog_) != 0) {
    return absl::InternalError("listen(backlog) failed");
  }
  return port;
}

}  // namespace corral
