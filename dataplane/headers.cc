#include "dataplane/headers.h"

#include "common/ascii.h"
#include "common/request_head.h"

namespace corral::dataplane {

std::vector<std::string> ResponseConnectionOptions(
    const std::vector<std::pair<std::string, std::string>>& headers) {
  std::vector<std::string> options;
  for (const auto& [name, value] : headers) {
    if (!EqualsIgnoreCase(name, "Connection")) continue;
    for (auto& option : ConnectionOptions(value)) options.push_back(std::move(option));
  }
  return options;
}

bool IsDroppedResponseHeader(std::string_view name,
                             const std::vector<std::string>& connection_options) {
  // cpp-httplib writes its own framing (Content-Length or Transfer-Encoding: chunked) and the
  // Content-Type passed to set_content / the content provider; a copy would duplicate them.
  return EqualsIgnoreCase(name, "Content-Length") || EqualsIgnoreCase(name, "Content-Type") ||
         IsHopByHop(name, connection_options);
}

}  // namespace corral::dataplane
