#include "tests/support/recording_node.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace corral::testing {

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string Printable(std::string_view bytes, size_t max = 600) {
  std::string out;
  for (char c : bytes.substr(0, max)) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n\n";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
      out += hex;
    } else {
      out += c;
    }
  }
  if (bytes.size() > max) out += "...";
  return out;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

bool SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

constexpr size_t kSendPiece = 256 * 1024;

}  // namespace

// ---- RecordedRequest ----

const std::string* RecordedRequest::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsIgnoreCase(n, name)) return &v;
  }
  return nullptr;
}

bool RecordedRequest::HasRawHeaderLine(std::string_view name) const {
  size_t pos = 0;
  while (pos < raw_head.size()) {
    size_t end = raw_head.find('\n', pos);
    if (end == std::string::npos) end = raw_head.size();
    std::string_view line = std::string_view(raw_head).substr(pos, end - pos);
    // A line starting with white space would be folded into the one before by a lenient
    // parser; what counts is the name at the very start.
    if (line.size() > name.size() && line[name.size()] == ':' &&
        EqualsIgnoreCase(line.substr(0, name.size()), name)) {
      return true;
    }
    pos = end + 1;
  }
  return false;
}

std::string RecordedRequest::Summary() const {
  std::ostringstream out;
  out << "connection " << connection << ": " << method << " " << target
      << (complete ? "" : " (incomplete)") << ", body " << body.size() << " bytes; head:\n"
      << Printable(raw_head);
  return out.str();
}

// ---- NodeReply ----

NodeReply NodeReply::Json(int status, std::string body) {
  NodeReply reply;
  reply.status = status;
  reply.body = std::move(body);
  return reply;
}

NodeReply NodeReply::LargeGenerate(uint64_t size) {
  const std::string prefix =
      R"({"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","response":")";
  const std::string suffix = R"(","done":true,"done_reason":"stop"})";
  NodeReply reply;
  reply.generated_size = std::max<uint64_t>(size, prefix.size() + suffix.size());
  const uint64_t filler = reply.generated_size - prefix.size() - suffix.size();
  reply.make_body = [prefix, suffix, filler]() -> BodyWriter {
    auto left = std::make_shared<uint64_t>(filler);
    auto started = std::make_shared<bool>(false);
    return [prefix, suffix, left, started](std::string* out) {
      if (!*started) {
        *started = true;
        out->append(prefix);
      }
      const uint64_t n = std::min<uint64_t>(*left, 64 * 1024);
      out->append(n, 'x');
      *left -= n;
      if (*left > 0) return true;
      out->append(suffix);
      return false;
    };
  };
  return reply;
}

NodeReply NodeReply::LargeTags(uint64_t approx_size) {
  constexpr size_t kEntrySize = 1024;
  const std::string prefix =
      R"({"models":[{"name":"llama3.2:latest","model":"llama3.2:latest",)"
      R"("modified_at":"2025-01-01T00:00:00Z","size":2019393189,)"
      R"("digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",)"
      R"("details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],)"
      R"("parameter_size":"3.2B","quantization_level":"Q4_K_M"}})";
  const std::string suffix = "]}";
  // Each made-up model is exactly kEntrySize bytes, its name and digest numbered, padded by a
  // field no client reads.
  const auto entry = [](uint64_t i) {
    char head[400];
    std::snprintf(head, sizeof head,
                  R"(,{"name":"m%07llu:latest","model":"m%07llu:latest",)"
                  R"("modified_at":"2025-01-01T00:00:00Z","size":1000,"digest":"%064llx",)"
                  R"("details":{"parent_model":"","format":"gguf","family":"llama",)"
                  R"("families":["llama"],"parameter_size":"1B","quantization_level":"Q4_K_M",)"
                  R"("note":")",
                  static_cast<unsigned long long>(i), static_cast<unsigned long long>(i),
                  static_cast<unsigned long long>(i));
    std::string text = head;
    const std::string tail = "\"}}";
    text.append(kEntrySize - text.size() - tail.size(), 'p');
    text.append(tail);
    return text;
  };
  const uint64_t fixed = prefix.size() + suffix.size();
  const uint64_t count = approx_size > fixed ? (approx_size - fixed) / kEntrySize : 0;
  NodeReply reply;
  reply.generated_size = fixed + count * kEntrySize;
  reply.make_body = [prefix, suffix, entry, count]() -> BodyWriter {
    auto next = std::make_shared<uint64_t>(0);
    auto started = std::make_shared<bool>(false);
    return [prefix, suffix, entry, count, next, started](std::string* out) {
      if (!*started) {
        *started = true;
        out->append(prefix);
      }
      for (int i = 0; i < 256 && *next < count; ++i) out->append(entry((*next)++));
      if (*next < count) return true;
      out->append(suffix);
      return false;
    };
  };
  return reply;
}

// ---- RecordingNode ----

struct RecordingNode::Connection {
  int index = 0;
  int fd = -1;        // guarded by RecordingNode::mu_; -1 once the serving thread closed it
  std::string bytes;  // guarded by RecordingNode::mu_
  std::thread thread;
};

RecordingNode::RecordingNode() {
  const std::string tags =
      R"({"models":[{"name":"llama3.2:latest","model":"llama3.2:latest",)"
      R"("modified_at":"2025-01-01T00:00:00Z","size":2019393189,)"
      R"("digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",)"
      R"("details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],)"
      R"("parameter_size":"3.2B","quantization_level":"Q4_K_M"}}]})";
  NodeReply root = NodeReply::Json(200, "Ollama is running");
  root.content_type = "text/plain; charset=utf-8";
  replies_["/"] = root;
  replies_["/api/version"] = NodeReply::Json(200, R"({"version":"0.12.3"})");
  replies_["/api/tags"] = NodeReply::Json(200, tags);
  replies_["/api/ps"] = NodeReply::Json(200, R"({"models":[]})");
  replies_["/api/generate"] = NodeReply::Json(
      200, R"({"model":"llama3.2","created_at":"2025-01-01T00:00:00Z",)"
           R"("response":"Hello from the recording node.","done":true,"done_reason":"stop",)"
           R"("context":[1,2,3],"total_duration":1000,"load_duration":100,"prompt_eval_count":1,)"
           R"("prompt_eval_duration":100,"eval_count":5,"eval_duration":500})");
  replies_["/api/chat"] = NodeReply::Json(
      200,
      R"({"model":"llama3.2","created_at":"2025-01-01T00:00:00Z",)"
      R"("message":{"role":"assistant","content":"Hello from the recording node."},)"
      R"("done":true,"done_reason":"stop","total_duration":1000,"load_duration":100,)"
      R"("prompt_eval_count":1,"prompt_eval_duration":100,"eval_count":5,"eval_duration":500})");
  replies_["/v1/chat/completions"] = NodeReply::Json(
      200, R"({"id":"chatcmpl-1","object":"chat.completion","created":1735689600,)"
           R"("model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,)"
           R"("message":{"role":"assistant","content":"Hello from the recording node."},)"
           R"("finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":5,)"
           R"("total_tokens":6}})");
  NodeReply empty = NodeReply::Json(200, "");
  empty.content_type = "";
  replies_["/api/delete"] = empty;  // Ollama answers a delete with an empty 200
  NodeReply created = empty;
  created.status = 201;
  replies_["/api/blobs/*"] = created;  // a blob upload: 201 Created, no body
}

RecordingNode::~RecordingNode() { Stop(); }

::testing::AssertionResult RecordingNode::Start() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return ::testing::AssertionFailure() << "socket: " << std::strerror(errno);
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 512) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ::testing::AssertionFailure() << "bind/listen: " << std::strerror(errno);
  }
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return ::testing::AssertionSuccess();
}

void RecordingNode::Stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  std::vector<std::shared_ptr<Connection>> connections;
  {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    for (const auto& conn : connections_) {
      if (conn->fd >= 0) ::shutdown(conn->fd, SHUT_RDWR);  // wakes recv() and send()
    }
    connections = connections_;
  }
  changed_.notify_all();
  for (const auto& conn : connections) {
    if (conn->thread.joinable()) conn->thread.join();
  }
}

void RecordingNode::AcceptLoop() {
  while (!stopping_.load()) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // the listener was shut down
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto conn = std::make_shared<Connection>();
    conn->fd = fd;
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_.load()) {
      ::close(fd);
      return;
    }
    conn->index = static_cast<int>(connections_.size());
    connections_.push_back(conn);
    conn->thread = std::thread([this, conn] { Serve(conn); });
  }
}

namespace {

// What the parser callbacks of one connection build.
struct ParseState {
  std::mutex* mu = nullptr;
  std::vector<std::shared_ptr<RecordedRequest>>* requests = nullptr;
  std::condition_variable* changed = nullptr;
  int connection = 0;
  const std::string* data = nullptr;  // every byte of the connection so far
  size_t exec_start = 0;              // where the current http_parser_execute call began
  size_t message_start = 0;
  std::shared_ptr<RecordedRequest> current;
  std::string field, value;
  bool in_value = false;
  bool keep_alive = false;

  void FlushHeader() {
    if (!field.empty() || in_value) current->headers.emplace_back(field, value);
    field.clear();
    value.clear();
    in_value = false;
  }
};

ParseState* StateOf(http_parser* p) { return static_cast<ParseState*>(p->data); }

int OnMessageBegin(http_parser* p) {
  ParseState* s = StateOf(p);
  s->message_start = s->exec_start;
  s->current = std::make_shared<RecordedRequest>();
  s->current->connection = s->connection;
  s->field.clear();
  s->value.clear();
  s->in_value = false;
  std::lock_guard<std::mutex> lock(*s->mu);
  s->requests->push_back(s->current);
  return 0;
}

int OnUrl(http_parser* p, const char* at, size_t n) {
  ParseState* s = StateOf(p);
  std::lock_guard<std::mutex> lock(*s->mu);
  s->current->method = http_method_str(static_cast<http_method>(p->method));
  s->current->target.append(at, n);
  return 0;
}

int OnHeaderField(http_parser* p, const char* at, size_t n) {
  ParseState* s = StateOf(p);
  std::lock_guard<std::mutex> lock(*s->mu);
  if (s->in_value) s->FlushHeader();
  s->field.append(at, n);
  return 0;
}

int OnHeaderValue(http_parser* p, const char* at, size_t n) {
  ParseState* s = StateOf(p);
  s->in_value = true;
  s->value.append(at, n);
  return 0;
}

int OnHeadersComplete(http_parser* p) {
  ParseState* s = StateOf(p);
  const std::string& data = *s->data;
  size_t start = s->message_start;
  while (start < data.size() && (data[start] == '\r' || data[start] == '\n')) ++start;
  const size_t crlf = data.find("\r\n\r\n", start);
  const size_t lf = data.find("\n\n", start);
  const size_t end = std::min(crlf == std::string::npos ? data.size() : crlf + 4,
                              lf == std::string::npos ? data.size() : lf + 2);
  std::lock_guard<std::mutex> lock(*s->mu);
  s->FlushHeader();
  s->current->method = http_method_str(static_cast<http_method>(p->method));
  s->current->raw_head = data.substr(start, end - start);
  return 0;
}

int OnBody(http_parser* p, const char* at, size_t n) {
  ParseState* s = StateOf(p);
  std::lock_guard<std::mutex> lock(*s->mu);
  s->current->body.append(at, n);
  return 0;
}

int OnMessageComplete(http_parser* p) {
  ParseState* s = StateOf(p);
  s->keep_alive = http_should_keep_alive(p) != 0;
  {
    std::lock_guard<std::mutex> lock(*s->mu);
    s->current->complete = true;
  }
  s->changed->notify_all();
  // Stops the parser right after this message, so it is answered before the next one is read
  // (and the offset of the next message's first byte is known).
  http_parser_pause(p, 1);
  return 0;
}

}  // namespace

void RecordingNode::Serve(const std::shared_ptr<Connection>& conn) {
  int fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fd = conn->fd;
  }
  std::string data;
  ParseState state;
  state.mu = &mu_;
  state.requests = &requests_;
  state.changed = &changed_;
  state.connection = conn->index;
  state.data = &data;
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_message_begin = OnMessageBegin;
  settings.on_url = OnUrl;
  settings.on_header_field = OnHeaderField;
  settings.on_header_value = OnHeaderValue;
  settings.on_headers_complete = OnHeadersComplete;
  settings.on_body = OnBody;
  settings.on_message_complete = OnMessageComplete;
  http_parser parser;
  http_parser_init(&parser, HTTP_REQUEST);
  parser.data = &state;

  size_t parsed = 0;
  bool alive = true;
  char buf[65536];
  while (alive && !stopping_.load()) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    {
      std::lock_guard<std::mutex> lock(mu_);
      conn->bytes.append(buf, static_cast<size_t>(n));
    }
    changed_.notify_all();
    while (alive && parsed < data.size()) {
      state.exec_start = parsed;
      parsed += http_parser_execute(&parser, &settings, data.data() + parsed, data.size() - parsed);
      const http_errno err = HTTP_PARSER_ERRNO(&parser);
      if (err == HPE_PAUSED) {
        http_parser_pause(&parser, 0);
        RecordedRequest request;
        {
          std::lock_guard<std::mutex> lock(mu_);
          request = *state.current;
        }
        alive = Answer(fd, request, state.keep_alive) && state.keep_alive;
        continue;
      }
      if (err != HPE_OK) {
        // A real node answers 400 and closes; the bytes are on record for the test to read.
        std::ostringstream line;
        line << "connection " << conn->index << " at byte " << parsed << ": "
             << http_errno_name(err) << " (" << http_errno_description(err) << ") near \""
             << Printable(std::string_view(data).substr(parsed > 40 ? parsed - 40 : 0, 80)) << "\"";
        {
          std::lock_guard<std::mutex> lock(mu_);
          errors_.push_back(line.str());
        }
        SendAll(fd,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Connection: close\r\nContent-Length: 15\r\n\r\n400 Bad Request");
        alive = false;
        break;
      }
      if (parser.upgrade) {
        // An upgrade hands the connection over; this node speaks HTTP only: it records what
        // it got and reads the rest as new requests.
        http_parser_init(&parser, HTTP_REQUEST);
        parser.data = &state;
      }
      break;  // everything received so far is parsed
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  ::close(conn->fd);
  conn->fd = -1;
}

NodeReply RecordingNode::ReplyFor(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = replies_.find(path);
  if (it != replies_.end()) return it->second;
  for (const auto& [key, reply] : replies_) {
    if (!key.empty() && key.back() == '*' && path.rfind(key.substr(0, key.size() - 1), 0) == 0) {
      return reply;
    }
  }
  NodeReply not_found = NodeReply::Json(404, "404 page not found");
  not_found.content_type = "text/plain";
  return not_found;
}

bool RecordingNode::Answer(int fd, const RecordedRequest& req, bool keep_alive) {
  const std::string path = req.target.substr(0, req.target.find('?'));
  const NodeReply reply = ReplyFor(path);
  auto sent = std::make_shared<SentReply>();
  sent->path = path;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (reply.hold) changed_.wait(lock, [&] { return released_; });
    sent_.push_back(sent);
  }
  const bool generated = reply.make_body != nullptr;
  const uint64_t length = generated ? reply.generated_size : reply.body.size();
  std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " " + Reason(reply.status) +
                    "\r\nDate: Wed, 01 Jan 2025 00:00:00 GMT\r\n";
  if (!reply.content_type.empty()) out += "Content-Type: " + reply.content_type + "\r\n";
  for (const auto& [name, value] : reply.headers) out += name + ": " + value + "\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  out += reply.chunked ? std::string("Transfer-Encoding: chunked\r\n\r\n")
                       : "Content-Length: " + std::to_string(length) + "\r\n\r\n";
  bool ok = true;
  uint64_t body_sent = 0;  // payload bytes, framing not counted
  if (req.method == "HEAD") {
    ok = SendAll(fd, out);
  } else {
    const BodyWriter writer = generated ? reply.make_body() : [&reply](std::string* piece) {
      piece->append(reply.body);
      return false;
    };
    uint64_t pending = 0;  // payload bytes in `out`
    bool more = true;
    std::string piece;
    while (ok && more) {
      piece.clear();
      more = writer(&piece);
      if (!piece.empty()) {
        if (reply.chunked) {
          char size[32];
          std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
          out.append(size).append(piece).append("\r\n");
        } else {
          out.append(piece);
        }
        pending += piece.size();
      }
      if (!more && reply.chunked) out.append("0\r\n\r\n");
      if (out.size() >= kSendPiece || !more) {
        ok = SendAll(fd, out);
        if (ok) body_sent += pending;
        pending = 0;
        out.clear();
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    sent->body_bytes_sent = body_sent;
    sent->complete = ok;
    sent->ended = true;
  }
  changed_.notify_all();
  return ok;
}

void RecordingNode::SetReply(const std::string& path, NodeReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  replies_[path] = std::move(reply);
}

void RecordingNode::Release() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
  }
  changed_.notify_all();
}

std::vector<RecordedRequest> RecordingNode::Requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RecordedRequest> out;
  for (const auto& r : requests_) out.push_back(*r);
  return out;
}

std::vector<RecordedRequest> RecordingNode::CompleteRequests(const std::string& path) const {
  std::vector<RecordedRequest> out;
  for (auto& r : Requests()) {
    if (r.complete && (path.empty() || r.target.substr(0, r.target.find('?')) == path)) {
      out.push_back(std::move(r));
    }
  }
  return out;
}

std::string RecordingNode::RawBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& conn : connections_) out += conn->bytes;
  return out;
}

std::vector<std::string> RecordingNode::ParseErrors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return errors_;
}

std::vector<SentReply> RecordingNode::SentReplies() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SentReply> out;
  for (const auto& s : sent_) out.push_back(*s);
  return out;
}

int RecordingNode::connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(connections_.size());
}

::testing::AssertionResult RecordingNode::WaitForRequests(size_t n,
                                                          std::chrono::milliseconds timeout,
                                                          const std::string& path) const {
  const auto count = [&] {
    size_t c = 0;
    for (const auto& r : requests_) {
      if (r->complete && (path.empty() || r->target.substr(0, r->target.find('?')) == path)) ++c;
    }
    return c;
  };
  std::unique_lock<std::mutex> lock(mu_);
  if (changed_.wait_for(lock, timeout, [&] { return count() >= n; })) {
    return ::testing::AssertionSuccess();
  }
  auto failure = ::testing::AssertionFailure()
                 << "the node received " << count() << " complete requests"
                 << (path.empty() ? "" : " for " + path) << " within " << timeout.count()
                 << " ms, not " << n << "; all it has:";
  for (const auto& r : requests_) failure << "\n  " << r->Summary();
  for (const auto& e : errors_) failure << "\n  parse error: " << e;
  return failure;
}

::testing::AssertionResult RecordingNode::WaitForRepliesEnded(
    size_t n, const std::string& path, std::chrono::milliseconds timeout) const {
  const auto count = [&] {
    size_t c = 0;
    for (const auto& s : sent_) c += s->ended && s->path == path ? 1 : 0;
    return c;
  };
  std::unique_lock<std::mutex> lock(mu_);
  if (changed_.wait_for(lock, timeout, [&] { return count() >= n; })) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << count() << " answers to " << path << " ended within "
                                       << timeout.count() << " ms, not " << n;
}

void RecordingNode::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  requests_.clear();
  errors_.clear();
  sent_.clear();
  for (const auto& conn : connections_) conn->bytes.clear();
}

}  // namespace corral::testing
