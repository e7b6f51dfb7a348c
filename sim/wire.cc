#include "sim/wire.h"

#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "common/ascii.h"
#include "common/client_socket.h"

namespace corral::sim {
namespace {

std::string FormatFraction(int nanos) {
  if (nanos <= 0) return "";
  char buf[16];
  std::snprintf(buf, sizeof buf, ".%09d", nanos);
  std::string frac(buf);
  while (frac.back() == '0') frac.pop_back();
  return frac;
}

std::string FormatCalendar(int64_t unix_seconds) {
  std::time_t secs = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

std::string GoQuote(std::string_view s) {
  std::string quoted;
  quoted.reserve(s.size() + 2);
  quoted.push_back('"');
  quoted.append(s);
  quoted.push_back('"');
  return quoted;
}

}  // namespace

std::string GoJson(const Json& value) {
  const std::string raw = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string out;
  out.reserve(raw.size() + 16);
  // These characters only occur inside strings in compact JSON, so replacing them everywhere is
  // exactly Go's escaping.
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '<') {
      out += "\\u003c";
    } else if (c == '>') {
      out += "\\u003e";
    } else if (c == '&') {
      out += "\\u0026";
    } else if (c == '\xe2' && i + 2 < raw.size() && raw[i + 1] == '\x80' &&
               (raw[i + 2] == '\xa8' || raw[i + 2] == '\xa9')) {
      out += raw[i + 2] == '\xa8' ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatUtc(int64_t unix_ns) {
  int64_t secs = unix_ns / 1000000000;
  int64_t nanos = unix_ns % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    secs -= 1;
  }
  return FormatCalendar(secs) + FormatFraction(static_cast<int>(nanos)) + "Z";
}

std::string FormatUtc(WallTime t) { return FormatUtc(UnixNanos(t)); }

std::string FormatLocal(int64_t unix_seconds, int nanos) {
  return FormatCalendar(unix_seconds - 7 * 3600) + FormatFraction(nanos) + "-07:00";
}

int64_t UnixNanos(WallTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

bool ParseGoDuration(std::string_view text, std::chrono::nanoseconds* out, std::string* error) {
  const std::string orig(text);
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") {
    *out = std::chrono::nanoseconds(0);
    return true;
  }
  if (s.empty()) {
    *error = "time: invalid duration " + GoQuote(orig);
    return false;
  }
  double total_ns = 0;
  while (!s.empty()) {
    if (!(s[0] == '.' || std::isdigit(static_cast<unsigned char>(s[0])))) {
      *error = "time: invalid duration " + GoQuote(orig);
      return false;
    }
    size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    const std::string number(s.substr(0, i));
    if (number == "." || std::count(number.begin(), number.end(), '.') > 1) {
      *error = "time: invalid duration " + GoQuote(orig);
      return false;
    }
    s.remove_prefix(i);
    size_t u = 0;
    while (u < s.size() && s[u] != '.' && !std::isdigit(static_cast<unsigned char>(s[u]))) ++u;
    if (u == 0) {
      *error = "time: missing unit in duration " + GoQuote(orig);
      return false;
    }
    const std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    double scale;
    if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs") {
      scale = 1e3;
    } else if (unit == "ms") {
      scale = 1e6;
    } else if (unit == "s") {
      scale = 1e9;
    } else if (unit == "m") {
      scale = 60e9;
    } else if (unit == "h") {
      scale = 3600e9;
    } else {
      *error = "time: unknown unit " + GoQuote(unit) + " in duration " + GoQuote(orig);
      return false;
    }
    total_ns += std::strtod(number.c_str(), nullptr) * scale;
  }
  if (total_ns > 9.2e18) {
    *error = "time: invalid duration " + GoQuote(orig);
    return false;
  }
  *out = std::chrono::nanoseconds(static_cast<int64_t>(negative ? -total_ns : total_ns));
  return true;
}

bool ParseKeepAlive(const Json& value, KeepAlive* out, std::string* error) {
  *out = KeepAlive{};
  if (value.is_number()) {
    const double seconds = value.get<double>();
    if (seconds < 0) {
      out->forever = true;
    } else {
      out->duration = std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9));
    }
    return true;
  }
  if (value.is_string()) {
    std::chrono::nanoseconds d;
    if (!ParseGoDuration(value.get<std::string>(), &d, error)) return false;
    if (d.count() < 0) {
      out->forever = true;
    } else {
      out->duration = d;
    }
    return true;
  }
  *error = std::string("Unsupported type: '") + value.type_name() + "'";
  return false;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

const Json* FindField(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(std::string(key));
  if (it != object.end()) return &*it;
  for (auto item = object.begin(); item != object.end(); ++item) {
    if (EqualsIgnoreCase(item.key(), key)) return &item.value();
  }
  return nullptr;
}

std::string FirstNonEmptyString(const Json& object, std::initializer_list<std::string_view> keys) {
  for (std::string_view key : keys) {
    const Json* field = FindField(object, key);
    if (field != nullptr && field->is_string() && !field->get<std::string>().empty()) {
      return field->get<std::string>();
    }
  }
  return "";
}

std::optional<Json> ParseRequestBody(const std::string& body, std::string* error) {
  size_t first = 0;
  while (first < body.size() && std::isspace(static_cast<unsigned char>(body[first]))) ++first;
  if (first == body.size()) {
    *error = "missing request body";
    return std::nullopt;
  }
  Json parsed;
  try {
    parsed = Json::parse(body);
  } catch (const Json::parse_error& e) {
    const size_t at = e.byte == 0 ? 0 : e.byte - 1;
    if (at >= body.size()) {
      *error = "unexpected EOF";
    } else {
      *error = std::string("invalid character '") + body[at] + "' looking for beginning of value";
    }
    return std::nullopt;
  }
  if (parsed.is_null()) return Json::object();
  if (!parsed.is_object()) {
    *error = std::string("json: cannot unmarshal ") + parsed.type_name() +
             " into Go value of type api.Request";
    return std::nullopt;
  }
  return parsed;
}

ConnectionWatch::ConnectionWatch(const httplib::Request& req)
    : remote_addr_(req.remote_addr),
      remote_port_(req.remote_port),
      local_addr_(req.local_addr),
      local_port_(req.local_port) {}

int ConnectionWatch::Fd() {
  if (fd_ == -2) fd_ = FindClientSocket(remote_addr_, remote_port_, local_addr_, local_port_);
  return fd_;
}

bool ConnectionWatch::ClientGone() {
  const int fd = Fd();
  if (fd < 0) return false;
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
  }
  return false;
}

std::string Base64(const std::string& bytes) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  while (i + 2 < bytes.size()) {
    const uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
    i += 3;
  }
  if (i < bytes.size()) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace corral::sim
