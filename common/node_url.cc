#include "common/node_url.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"

namespace corral {
namespace {

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

absl::Status Invalid(std::string_view text, std::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("node URL \"", std::string(text), "\" ", std::string(problem)));
}

bool IsHostNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

bool IsIpv6Char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
}

}  // namespace

std::string NodeUrl::Normalized() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return absl::StrCat("http://", ipv6 ? "[" : "", host, ipv6 ? "]" : "", ":", port);
}

absl::StatusOr<NodeUrl> ParseNodeUrl(std::string_view text) {
  std::string_view rest = text;
  if (rest.empty()) return absl::InvalidArgumentError("node URL is empty");
  for (char c : rest) {
    if (std::isspace(static_cast<unsigned char>(c)) ||
        std::iscntrl(static_cast<unsigned char>(c))) {
      return Invalid(text, "must not contain spaces or control characters");
    }
  }

  bool explicit_scheme = false;
  if (const size_t sep = rest.find("://"); sep != std::string_view::npos) {
    const std::string scheme = ToLower(rest.substr(0, sep));
    if (scheme != "http") {
      return Invalid(text, scheme == "https" ? "must use http: corral talks plain HTTP to nodes"
                                             : "must use http (e.g. http://10.0.0.5:11434)");
    }
    explicit_scheme = true;
    rest.remove_prefix(sep + 3);
  }
  // One trailing "/" is the root path; anything longer is a path Ollama does not serve from.
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return Invalid(text, "must not have a query or fragment");
  }
  if (rest.find('/') != std::string_view::npos) {
    return Invalid(text, "must not have a path (give only http://host:port)");
  }
  if (rest.find('@') != std::string_view::npos) {
    return Invalid(text, "must not carry user info (user@ or user:password@)");
  }
  if (rest.empty()) return Invalid(text, "has no host");

  NodeUrl url;
  std::string_view port_text;
  bool has_port = false;
  if (rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return Invalid(text, "has an unclosed '[' in the host");
    const std::string_view host = rest.substr(1, close - 1);
    if (host.empty() || host.find(':') == std::string_view::npos ||
        !std::all_of(host.begin(), host.end(), IsIpv6Char)) {
      return Invalid(text, "has an invalid IPv6 address in brackets");
    }
    url.host = ToLower(host);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Invalid(text, "has text after the ']' of its IPv6 address");
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const size_t colon = rest.find(':');
    const std::string_view host = rest.substr(0, colon);
    if (colon != std::string_view::npos) {
      if (rest.find(':', colon + 1) != std::string_view::npos) {
        return Invalid(text, "has more than one ':'; write an IPv6 address as [addr]:port");
      }
      has_port = true;
      port_text = rest.substr(colon + 1);
    }
    if (host.empty()) return Invalid(text, "has no host");
    if (!std::all_of(host.begin(), host.end(), IsHostNameChar) || host.front() == '-' ||
        host.front() == '.') {
      return Invalid(text, absl::StrCat("has an invalid host \"", std::string(host),
                                        "\" (letters, digits, '-', '.' and '_' only)"));
    }
    if (host.size() > 253) return Invalid(text, "has a host name longer than 253 characters");
    url.host = ToLower(host);
  }

  if (!has_port) {
    // Like OLLAMA_HOST: an explicit "http://" without a port means HTTP's port; a bare host
    // means Ollama's own.
    url.port = explicit_scheme ? 80 : 11434;
    return url;
  }
  if (port_text.empty()) return Invalid(text, "has an empty port after ':'");
  if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(),
                                           [](char c) { return c >= '0' && c <= '9'; })) {
    return Invalid(text,
                   absl::StrCat("has an invalid port \"", std::string(port_text), "\" (1-65535)"));
  }
  int port = 0;
  for (char c : port_text) port = port * 10 + (c - '0');
  if (port < 1 || port > 65535) {
    return Invalid(text, absl::StrCat("has port ", port, " outside 1-65535"));
  }
  url.port = port;
  return url;
}

}  // namespace corral
