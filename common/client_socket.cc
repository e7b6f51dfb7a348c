#include "common/client_socket.h"

#include <dirent.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace corral {
namespace {

bool Matches(const sockaddr_storage& addr, socklen_t len, const std::string& host, int port) {
  char text[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, text, sizeof(text), serv,
                    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return false;
  }
  return std::atoi(serv) == port && host == text;
}

}  // namespace

int FindClientSocket(const std::string& remote_addr, int remote_port, const std::string& local_addr,
                     int local_port) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  const int own = ::dirfd(dir);
  while (dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own) continue;
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(peer);
    // getpeername fails fast on anything that is not a connected socket.
    if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      continue;
    }
    if (!Matches(peer, peer_len, remote_addr, remote_port)) continue;
    sockaddr_storage local{};
    socklen_t local_len = sizeof(local);
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0) {
      continue;
    }
    if (local_addr.empty() || Matches(local, local_len, local_addr, local_port)) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

}  // namespace corral
