#include "tests/hostile/raw_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace corral::hostile {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

int MillisLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1000 * 1000));
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Decodes a chunked body from `text`. Returns the bytes of `text` it used, or 0 while the
// last chunk has not arrived (or the framing is broken).
size_t Dechunk(std::string_view text, std::string* body) {
  size_t pos = 0;
  while (true) {
    const size_t line_end = text.find("\r\n", pos);
    if (line_end == std::string_view::npos) return 0;
    size_t size = 0;
    std::istringstream hex(std::string(text.substr(pos, line_end - pos)));
    if (!(hex >> std::hex >> size)) return 0;
    pos = line_end + 2;
    if (size == 0) {
      // Trailers, if any, end with an empty line.
      const size_t end = text.find("\r\n", pos);
      if (end == std::string_view::npos) return 0;
      if (end == pos) return end + 2;
      const size_t blank = text.find("\r\n\r\n", pos);
      return blank == std::string_view::npos ? 0 : blank + 4;
    }
    if (text.size() < pos + size + 2) return 0;
    body->append(text.substr(pos, size));
    pos += size + 2;
  }
}

}  // namespace

std::string Answer::Summary() const {
  std::ostringstream out;
  out << "status " << status << (complete ? ", complete" : ", incomplete")
      << (closed ? ", closed" : "") << (timed_out ? ", timed out" : "") << ", " << raw.size()
      << " bytes: " << raw.substr(0, 400);
  return out.str();
}

std::unique_ptr<RawConnection> RawConnection::Open(int port, milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      ::close(fd);
      return nullptr;
    }
    pollfd pfd{fd, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof(error);
    if (::poll(&pfd, 1, static_cast<int>(timeout.count())) != 1 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
      ::close(fd);
      return nullptr;
    }
  }
  return std::unique_ptr<RawConnection>(new RawConnection(fd));
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

size_t RawConnection::Send(std::string_view bytes, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd_, POLLOUT, 0};
      if (::poll(&pfd, 1, MillisLeft(deadline)) == 1) continue;
    }
    break;
  }
  return sent;
}

bool RawConnection::Drain() {
  char buf[65536];
  while (true) {
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      raw_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    eof_ = true;  // 0: the server's end of stream; an error (a reset) ends it as well
    return false;
  }
}

Answer RawConnection::Parse() const {
  Answer answer;
  answer.raw = raw_;
  answer.closed = eof_;
  const size_t head_end = raw_.find("\r\n\r\n");
  if (head_end == std::string::npos) return answer;
  std::istringstream head(raw_.substr(0, head_end));
  std::string line;
  std::getline(head, line);
  if (line.rfind("HTTP/1.", 0) == 0 && line.size() >= 12) {
    answer.status = std::atoi(line.c_str() + 9);
  }
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    answer.headers[Lower(line.substr(0, colon))] = value;
  }
  const std::string_view rest = std::string_view(raw_).substr(head_end + 4);
  if (Lower(answer.headers["transfer-encoding"]) == "chunked") {
    answer.complete = Dechunk(rest, &answer.body) > 0;
  } else if (answer.headers.count("content-length")) {
    const size_t length = std::strtoull(answer.headers["content-length"].c_str(), nullptr, 10);
    answer.body = std::string(rest.substr(0, length));
    answer.complete = rest.size() >= length;
  } else {
    answer.body = std::string(rest);
    answer.complete = eof_;
  }
  return answer;
}

Answer RawConnection::Read(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    Drain();
    Answer answer = Parse();
    if (answer.complete || eof_) {
      // What follows this answer (a next one on the connection) stays for the next Read.
      const size_t head_end = raw_.find("\r\n\r\n");
      if (answer.complete && head_end != std::string::npos &&
          answer.headers.count("content-length")) {
        raw_.erase(0, std::min(raw_.size(), head_end + 4 + answer.body.size()));
      } else {
        raw_.clear();
      }
      return answer;
    }
    pollfd pfd{fd_, POLLIN, 0};
    if (MillisLeft(deadline) == 0 || ::poll(&pfd, 1, MillisLeft(deadline)) == 0) {
      answer.timed_out = true;
      return answer;
    }
  }
}

Answer RawConnection::SendWhileReading(const std::function<std::string()>& next, uint64_t max_bytes,
                                       milliseconds timeout, uint64_t* sent) {
  const auto deadline = Clock::now() + timeout;
  *sent = 0;
  std::string pending;
  size_t offset = 0;
  bool sending = true;
  while (sending && MillisLeft(deadline) > 0) {
    if (offset == pending.size()) {
      pending = *sent < max_bytes ? next() : std::string();
      offset = 0;
      if (pending.empty()) break;
    }
    pollfd pfd{fd_, POLLIN | POLLOUT, 0};
    if (::poll(&pfd, 1, std::min(MillisLeft(deadline), 100)) <= 0) continue;
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      // The answer has started (or the connection ended): a client stops sending.
      if (!Drain() || !raw_.empty()) break;
    }
    if (pfd.revents & POLLOUT) {
      const ssize_t n = ::send(fd_, pending.data() + offset, pending.size() - offset, MSG_NOSIGNAL);
      if (n > 0) {
        offset += static_cast<size_t>(n);
        *sent += static_cast<uint64_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        sending = false;
      }
    }
  }
  return Read(milliseconds(MillisLeft(deadline)));
}

bool RawConnection::ClosedByServer() {
  Drain();
  return eof_;
}

std::string RawConnection::ReadHead(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    Drain();
    const size_t end = raw_.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::string head = raw_.substr(0, end + 4);
      raw_.erase(0, end + 4);
      return head;
    }
    pollfd pfd{fd_, POLLIN, 0};
    if (eof_ || MillisLeft(deadline) == 0 || ::poll(&pfd, 1, MillisLeft(deadline)) == 0) {
      return "";
    }
  }
}

namespace {

// What the response parser of ReadLarge collects.
struct LargeReader {
  RawConnection::LargeAnswer* out = nullptr;
  size_t keep = 0;
  std::string field, value;
  bool in_value = false;
  bool done = false;

  void Flush() {
    if (in_value) out->answer.headers[Lower(field)] = value;
    field.clear();
    value.clear();
    in_value = false;
  }
};

LargeReader* ReaderOf(http_parser* p) { return static_cast<LargeReader*>(p->data); }

}  // namespace

RawConnection::LargeAnswer RawConnection::ReadLarge(milliseconds timeout, size_t keep) {
  const auto deadline = Clock::now() + timeout;
  LargeAnswer out;
  LargeReader reader;
  reader.out = &out;
  reader.keep = keep;
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_header_field = [](http_parser* p, const char* at, size_t n) {
    LargeReader* r = ReaderOf(p);
    if (r->in_value) r->Flush();
    r->field.append(at, n);
    return 0;
  };
  settings.on_header_value = [](http_parser* p, const char* at, size_t n) {
    LargeReader* r = ReaderOf(p);
    r->in_value = true;
    r->value.append(at, n);
    return 0;
  };
  settings.on_headers_complete = [](http_parser* p) {
    LargeReader* r = ReaderOf(p);
    r->Flush();
    r->out->answer.status = static_cast<int>(p->status_code);
    return 0;
  };
  settings.on_body = [](http_parser* p, const char* at, size_t n) {
    LargeReader* r = ReaderOf(p);
    r->out->body_bytes += n;
    std::string& head = r->out->answer.body;
    if (head.size() < r->keep) head.append(at, std::min(n, r->keep - head.size()));
    std::string& tail = r->out->tail;
    tail.append(at, n);
    if (tail.size() > 2 * r->keep) tail.erase(0, tail.size() - r->keep);
    return 0;
  };
  settings.on_message_complete = [](http_parser* p) {
    ReaderOf(p)->done = true;
    http_parser_pause(p, 1);
    return 0;
  };
  http_parser parser;
  http_parser_init(&parser, HTTP_RESPONSE);
  parser.data = &reader;

  const auto feed = [&](const char* data, size_t n) {
    if (out.answer.raw.size() < keep) {
      out.answer.raw.append(data, std::min(n, keep - out.answer.raw.size()));
    }
    const size_t used = http_parser_execute(&parser, &settings, data, n);
    if (reader.done) {
      // What follows this answer stays for the next Read.
      raw_.assign(data + used, n - used);
      return false;
    }
    return HTTP_PARSER_ERRNO(&parser) == HPE_OK;
  };
  std::string pending;
  pending.swap(raw_);
  bool going = pending.empty() || feed(pending.data(), pending.size());
  char buf[65536];
  while (going && !reader.done) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      going = feed(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd_, POLLIN, 0};
      if (MillisLeft(deadline) == 0 || ::poll(&pfd, 1, MillisLeft(deadline)) == 0) {
        out.answer.timed_out = true;
        break;
      }
      continue;
    }
    eof_ = true;
    out.answer.closed = true;
    http_parser_execute(&parser, &settings, nullptr, 0);  // a body that ends at the close
    break;
  }
  reader.Flush();
  if (out.tail.size() > keep) out.tail.erase(0, out.tail.size() - keep);
  out.answer.complete = reader.done;
  return out;
}

std::string Request(const std::string& method, const std::string& path, std::string_view body,
                    const std::string& extra_head) {
  std::string out = method + " " + path + " HTTP/1.1\r\nHost: corral\r\n" + extra_head +
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  out.append(body);
  return out;
}

::testing::AssertionResult IsRouteError(const Answer& answer, const std::string& path) {
  using nlohmann::json;
  const bool openai = path.rfind("/v1/", 0) == 0;
  const auto fail = [&](const std::string& why) {
    return ::testing::AssertionFailure() << path << ": " << why << "; " << answer.Summary();
  };
  const auto type = answer.headers.find("content-type");
  if (type == answer.headers.end() || type->second.rfind("application/json", 0) != 0) {
    return fail("the error is not application/json");
  }
  std::string body = answer.body;
  if (!body.empty() && body.back() == '\n') body.pop_back();
  if (body.find('\n') != std::string::npos) return fail("the error is not one line");
  // nlohmann rejects ill-formed UTF-8, which a client's JSON parser would choke on too.
  const json parsed = json::parse(body, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("error")) return fail("no JSON error object");
  const json& error = parsed["error"];
  if (!openai) {
    if (parsed.size() != 1 || !error.is_string() || error.get<std::string>().empty()) {
      return fail("not {\"error\":\"<message>\"}");
    }
    return ::testing::AssertionSuccess();
  }
  if (!error.is_object() || !error.contains("message") || !error["message"].is_string() ||
      error["message"].get<std::string>().empty() || !error.contains("type") ||
      !error["type"].is_string() || !error.contains("param") || !error["param"].is_null() ||
      !error.contains("code") || !error["code"].is_null()) {
    return fail("not an OpenAI error object {message, type, param: null, code: null}");
  }
  return ::testing::AssertionSuccess();
}

std::string RouteErrorMessage(const Answer& answer) {
  const nlohmann::json parsed = nlohmann::json::parse(answer.body, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("error")) return "";
  const nlohmann::json& error = parsed["error"];
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object() && error.contains("message") && error["message"].is_string()) {
    return error["message"].get<std::string>();
  }
  return "";
}

std::string ProcessView::Summary() const {
  std::ostringstream out;
  out << "rss " << rss_kib / 1024 << " MiB (peak " << peak_rss_kib / 1024 << " MiB), " << threads
      << " threads, " << fds << " fds, " << cpu_s << " s CPU";
  return out.str();
}

ProcessView ReadProcess(pid_t pid) {
  ProcessView view;
  const std::string dir = "/proc/" + std::to_string(pid);
  std::ifstream status(dir + "/status");
  std::string line;
  while (std::getline(status, line)) {
    std::istringstream fields(line);
    std::string key;
    int64_t value = 0;
    fields >> key >> value;
    if (key == "VmRSS:") view.rss_kib = value;
    if (key == "VmHWM:") view.peak_rss_kib = value;
    if (key == "Threads:") {
      view.threads = value;
      view.ok = true;
    }
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++view.fds;
  }
  // /proc/PID/stat: utime and stime are the 14th and 15th fields; the 2nd, the command name in
  // parentheses, may hold spaces, so counting starts after its closing parenthesis.
  std::ifstream stat_file(dir + "/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos) {
    std::istringstream fields(stat.substr(paren + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i >= 14) ticks += std::strtod(field.c_str(), nullptr);
    }
    view.cpu_s = ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  return view;
}

uint64_t RaiseFileLimit(uint64_t want) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < want) {
    limit.rlim_cur = std::min<rlim_t>(want, limit.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

}  // namespace corral::hostile
