// Fuzzes node URL parsing (common/node_url.h): operator input to corralctl and corral-control,
// and every node address a proxy loads from a snapshot.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/node_url.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string shown(text);
  const auto url = corral::ParseNodeUrl(text);

  if (!url.ok()) {
    FUZZ_CHECK(url.status().code() == absl::StatusCode::kInvalidArgument, "[%s] code %d",
               shown.c_str(), static_cast<int>(url.status().code()));
    const std::string message(url.status().message());
    const std::string prefix = "node URL \"" + shown + "\" ";
    FUZZ_CHECK(text.empty() ? message == "node URL is empty" : message.starts_with(prefix),
               "[%s] message: %.*s", shown.c_str(), static_cast<int>(message.size()),
               message.data());
    return 0;
  }

  FUZZ_CHECK(url->port >= 1 && url->port <= 65535, "[%s] port %d", shown.c_str(), url->port);
  FUZZ_CHECK(!url->host.empty(), "[%s] empty host", shown.c_str());
  for (char c : url->host) {
    FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "[%s] host %s not lower-case", shown.c_str(),
               url->host.c_str());
    FUZZ_CHECK(c != '/' && c != '@' && c != '[' && c != ']' && c != '?' && c != '#' &&
                   static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f,
               "[%s] host %s has byte 0x%02x", shown.c_str(), url->host.c_str(),
               static_cast<unsigned char>(c));
  }

  // Normalized() is the one spelling of the address: it parses back to the same address and
  // normalises to itself.
  const std::string normalized = url->Normalized();
  FUZZ_CHECK(normalized.starts_with("http://"), "[%s] -> %s", shown.c_str(), normalized.c_str());
  const auto again = corral::ParseNodeUrl(normalized);
  FUZZ_CHECK(again.ok(), "[%s] -> %s does not parse: %s", shown.c_str(), normalized.c_str(),
             std::string(again.status().message()).c_str());
  FUZZ_CHECK(
      again->host == url->host && again->port == url->port && again->Normalized() == normalized,
      "[%s] -> %s -> %s", shown.c_str(), normalized.c_str(), again->Normalized().c_str());
  // With a trailing slash it is the same address.
  const auto slashed = corral::ParseNodeUrl(normalized + "/");
  FUZZ_CHECK(slashed.ok() && slashed->Normalized() == normalized, "[%s] + '/'", shown.c_str());
  return 0;
}
