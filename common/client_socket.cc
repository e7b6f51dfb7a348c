#include "common/client_socket.h"

#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace corral {
namespace {

// The innermost connection the calling thread serves; null when none.
thread_local ServedConnection* current_connection = nullptr;

using NameFunction = int (*)(int, sockaddr*, socklen_t*);

bool AddressOf(NameFunction get_name, int fd, std::string* addr, int* port) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  if (get_name(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) return false;
  int number;
  if (storage.ss_family == AF_INET) {
    number = ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  } else if (storage.ss_family == AF_INET6) {
    number = ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  } else {
    return false;
  }
  char text[NI_MAXHOST];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&storage), len, text, sizeof(text), nullptr,
                    0, NI_NUMERICHOST) != 0) {
    return false;
  }
  *addr = text;
  *port = number;
  return true;
}

}  // namespace

bool PeerAddress(int fd, std::string* addr, int* port) {
  return AddressOf(&::getpeername, fd, addr, port);
}

bool LocalAddress(int fd, std::string* addr, int* port) {
  return AddressOf(&::getsockname, fd, addr, port);
}

ServedConnection::ServedConnection(int fd, const std::string& remote_addr, int remote_port,
                                   const std::string& local_addr, int local_port)
    : fd_(fd),
      remote_addr_(remote_addr),
      remote_port_(remote_port),
      local_addr_(local_addr),
      local_port_(local_port),
      outer_(current_connection) {
  current_connection = this;
}

ServedConnection::~ServedConnection() { current_connection = outer_; }

int FindClientSocket(const std::string& remote_addr, int remote_port, const std::string& local_addr,
                     int local_port) {
  if (const ServedConnection* served = current_connection) {
    if (served->remote_port_ == remote_port && served->remote_addr_ == remote_addr &&
        (local_addr.empty() ||
         (served->local_port_ == local_port && served->local_addr_ == local_addr))) {
      return served->fd_;
    }
  }
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  const int own = ::dirfd(dir);
  while (dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own) continue;
    std::string addr;
    int port = 0;
    // getpeername fails fast on anything that is not a connected socket.
    if (!PeerAddress(static_cast<int>(fd), &addr, &port) || port != remote_port ||
        addr != remote_addr) {
      continue;
    }
    if (local_addr.empty() || (LocalAddress(static_cast<int>(fd), &addr, &port) &&
                               port == local_port && addr == local_addr)) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

absl::Status WriteAll(int fd, iovec* iov, size_t count, std::chrono::milliseconds timeout) {
  size_t first = 0;
  while (first < count && iov[first].iov_len == 0) ++first;
  while (first < count) {
    msghdr msg{};
    msg.msg_iov = iov + first;
    msg.msg_iovlen = count - first;
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd pfd{fd, POLLOUT, 0};
        const int r = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
        if (r == 0) return absl::DeadlineExceededError("write timed out");
        if (r < 0 && errno != EINTR) {
          return absl::UnavailableError(std::string("poll: ") + std::strerror(errno));
        }
        continue;
      }
      return absl::UnavailableError(std::strerror(errno));
    }
    size_t written = static_cast<size_t>(n);
    while (first < count && written >= iov[first].iov_len) {
      written -= iov[first].iov_len;
      ++first;
    }
    if (first < count) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + written;
      iov[first].iov_len -= written;
    }
  }
  return absl::OkStatus();
}

}  // namespace corral
