#include "common/http_listener.h"

#include <sys/socket.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/numbers.h"

namespace corral {

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
