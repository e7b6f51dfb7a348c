// HttpListener's front door: a real listener on 127.0.0.1 serving httplib handlers in its own
// thread, spoken to over raw sockets with exactly the bytes each test chooses. Each test is one
// promise of http_listener.h: the raw head a handler reads, refusals made before httplib sees a
// request, the head check, chunked bodies re-framed, the per-client cap, the body deadline, and
// a connection refused on a thread that holds RefuseConnectionsHere.
#include "common/http_listener.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/client_socket.h"

namespace corral {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using namespace std::string_literals;

constexpr milliseconds kWait{10000};  // the most any condition here may take
// The most an answer "at once" may take: well under the listener's read timeout (5 s), which
// an answer waiting for a body that never comes would have to run out first.
constexpr milliseconds kAtOnce{3000};

// Polls `done` until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& done, milliseconds timeout = kWait) {
  const auto deadline = steady_clock::now() + timeout;
  while (!done()) {
    if (steady_clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// One answer as it came off the wire.
struct Reply {
  bool complete = false;  // a whole head, and the body its Content-Length announced
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string raw;  // the head and body as received

  std::string Header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A client connection to the listener on a raw socket: it writes exactly what a test gives it
// and reads answers back one at a time (interim ones such as `100 Continue` included).
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    // Each Send leaves as its own segment, so a body sent in pieces arrives in pieces.
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }

  // False when the server stopped taking bytes (it closed, or reset the connection).
  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads the next answer: its head, then a body of its Content-Length (none for 1xx).
  // Incomplete when the connection ended or `timeout` passed first.
  Reply Read(milliseconds timeout = kWait) {
    const auto deadline = steady_clock::now() + timeout;
    Reply reply;
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return reply;
    }
    head_end += 4;
    const std::string head = buffer_.substr(0, head_end);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() >= 12 && status_line.compare(0, 5, "HTTP/") == 0) {
      reply.status = std::atoi(status_line.c_str() + 9);
    }
    for (size_t at = line_end + 2; at < head_end - 2; at = line_end + 2) {
      line_end = head.find("\r\n", at);
      const std::string line = head.substr(at, line_end - at);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers[name] = std::string(Trim(line.substr(colon + 1)));
    }
    size_t body_size = 0;
    if (reply.status >= 200)
      body_size = std::strtoull(reply.Header("content-length").c_str(), nullptr, 10);
    while (buffer_.size() < head_end + body_size) {
      if (!Fill(deadline)) {
        reply.raw = buffer_;
        return reply;
      }
    }
    reply.body = buffer_.substr(head_end, body_size);
    reply.raw = buffer_.substr(0, head_end + body_size);
    buffer_.erase(0, head_end + body_size);
    reply.complete = true;
    return reply;
  }

  // True when the server ends the connection (end of stream or reset) within `timeout`; what
  // it still sends is dropped.
  bool WaitClosed(milliseconds timeout = kWait) {
    const auto deadline = steady_clock::now() + timeout;
    while (Fill(deadline)) buffer_.clear();
    return closed_;
  }

  // Bytes received and not yet read as an answer (none: the server sent nothing more).
  bool Pending(milliseconds timeout) {
    const auto deadline = steady_clock::now() + timeout;
    return !buffer_.empty() || Fill(deadline);
  }

  // True once the listener has taken from its socket every byte sent so far: what is sent
  // next reaches it in a later read. Looks at the server's end of this connection (in this
  // process) without reading from it.
  bool WaitServerTookAll(milliseconds timeout = kWait) {
    const auto deadline = steady_clock::now() + timeout;
    if (server_fd_ < 0) {
      std::string local;
      std::string peer;
      int local_port = 0;
      int peer_port = 0;
      if (!LocalAddress(fd_, &local, &local_port) || !PeerAddress(fd_, &peer, &peer_port)) {
        return false;
      }
      // The listener's end exists once it accepted the connection.
      WaitUntil(
          [&] { return (server_fd_ = FindClientSocket(local, local_port, peer, peer_port)) >= 0; },
          timeout);
      if (server_fd_ < 0) return false;
    }
    return WaitUntil(
        [&] {
          int unread = 0;
          return ::ioctl(server_fd_, FIONREAD, &unread) == 0 && unread == 0;
        },
        std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()));
  }

 private:
  static std::string_view Trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  }

  // Appends what arrives before `deadline`. False at the end of the stream, on an error or
  // when nothing came in time.
  bool Fill(steady_clock::time_point deadline) {
    if (closed_) return false;
    // Polls once even when the deadline has passed: a timeout of 0 looks without waiting.
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count()))) <= 0) return false;
    char chunk[16384];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  int server_fd_ = -1;  // the listener's end of this connection, once looked up
  bool closed_ = false;
  std::string buffer_;
};

std::string Summary(const Reply& reply) {
  return "status " + std::to_string(reply.status) + (reply.complete ? "" : " (incomplete)") +
         ", raw: " + reply.raw;
}

// What the head check saw and decided, shared with the handlers (the check runs on the
// connection's worker thread).
struct Ticket {
  std::string path;
};

// A listener serving a few handlers that report what they were given, in the body of their
// answer; started per test after its configuration.
class HttpListenerTest : public ::testing::Test {
 protected:
  void Start() {
    listener_.set_keep_alive_timeout(5);
    listener_.Get("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      ++handled_;
      ++echoed_;
      const RequestHead* head = ServedRequestHead();
      const std::string* raw = head == nullptr ? nullptr : head->Find("X-A");
      res.set_content(
          (raw == nullptr ? std::string("(none)") : *raw) + "|" + req.get_header_value("X-A"),
          "text/plain");
    });
    listener_.Get("/ticket", [this](const httplib::Request&, httplib::Response& res) {
      ++handled_;
      const auto& ticket = ServedRequestTicket();
      res.set_content(ticket == nullptr ? "(none)" : static_cast<Ticket*>(ticket.get())->path,
                      "text/plain");
    });
    listener_.Post("/plain", [this](const httplib::Request& req, httplib::Response& res) {
      ++handled_;
      res.set_content(req.body, "application/octet-stream");
    });
    listener_.Post("/reader", [this](const httplib::Request&, httplib::Response& res,
                                     const httplib::ContentReader& reader) {
      ++handled_;
      std::string body;
      const auto started = steady_clock::now();
      const bool ok = reader([&](const char* data, size_t size) {
        body.append(data, size);
        return true;
      });
      const auto took =
          std::chrono::duration_cast<milliseconds>(steady_clock::now() - started).count();
      if (ok) {
        res.set_content(body, "application/octet-stream");
      } else {
        res.status = 400;
        res.set_header("Connection", "close");
        res.set_content("failed timed_out=" + std::to_string(ClientReadTimedOut()) +
                            " ms=" + std::to_string(took) + " error=" + ClientBodyError(),
                        "text/plain");
      }
    });
    // Answers with the body it was sent, and ends the connection.
    listener_.Post("/closing", [this](const httplib::Request& req, httplib::Response& res) {
      ++handled_;
      res.set_header("Connection", "close");
      res.set_content(req.body, "application/octet-stream");
    });
    // Answers without reading the body it was sent.
    listener_.Post("/ignore", [this](const httplib::Request&, httplib::Response& res,
                                     const httplib::ContentReader&) {
      ++handled_;
      res.set_content("ignored", "text/plain");
    });
    const auto port = listener_.Bind({"127.0.0.1", 0});
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
    thread_ = std::thread([this] { listener_.Run(); });
    ASSERT_TRUE(WaitUntil([this] { return listener_.is_running(); }));
  }

  void TearDown() override {
    if (thread_.joinable()) {
      listener_.stop();
      thread_.join();
    }
  }

  // A request with a Host, `extra` header lines (each ending in CRLF) and `body` with its
  // Content-Length when not empty.
  static std::string Request(const std::string& method, const std::string& target,
                             const std::string& extra = "", const std::string& body = "") {
    std::string out = method + " " + target + " HTTP/1.1\r\nHost: corral\r\n" + extra;
    if (!body.empty()) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    return out + "\r\n" + body;
  }

  HttpListener listener_{8, 64};
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> handled_{0};  // requests any handler was given
  std::atomic<int> echoed_{0};   // requests /echo was given
};

// ---------------------------------------------------------------------------------------------
// 1. The raw head.

// A second process started by mistake on the same port must fail to start, not share the port.
TEST_F(HttpListenerTest, ASecondListenerCannotBindAPortInUse) {
  Start();
  HttpListener second(2, 16);
  const auto bound = second.Bind({"127.0.0.1", port_});
  EXPECT_FALSE(bound.ok()) << "bound port " << port_ << " a second time";
}

TEST_F(HttpListenerTest, HandlerReadsTheRawHeaderValueInBothViews) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Request("GET", "/echo", "X-A: a%0d%0ab\r\n")));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200);
  // ServedRequestHead's value and httplib's (which percent-decodes what it is handed) agree
  // on the bytes the client sent.
  EXPECT_EQ(reply.body, "a%0d%0ab|a%0d%0ab");
}

TEST_F(HttpListenerTest, HandlerReadsPercentSignsAsSentWhateverFollowsThem) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Request("GET", "/echo", "X-A: 100% %25 %zz %\r\n")));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.body, "100% %25 %zz %|100% %25 %zz %");
}

// With framing headers only, httplib is handed nothing but what frames the exchange: it does
// not slice an answer by Range, read a multipart body or see any other header, while the
// handler still reads every header from the listener's own parse.
TEST_F(HttpListenerTest, FramingOnlyHandsHttplibNothingButTheFraming) {
  listener_.set_framing_headers_only(true);
  listener_.Post("/seen", [](const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader& reader) {
    std::string body;
    reader([&](const char* data, size_t size) {
      body.append(data, size);
      return true;
    });
    std::string names;
    for (const auto& [name, value] : req.headers) {
      // httplib adds the connection's addresses itself.
      if (name.find("_ADDR") == std::string::npos && name.find("_PORT") == std::string::npos) {
        names += name + ",";
      }
    }
    const std::string* type = ServedRequestHead()->Find("Content-Type");
    res.set_content(names + "|" + (type == nullptr ? "" : *type) + "|" + body, "text/plain");
  });
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  const std::string body = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--\r\n";
  ASSERT_TRUE(client.Send(Request("POST", "/seen",
                                  "Content-Type: multipart/form-data; boundary=b\r\n"
                                  "Range: bytes=0-1\r\nAccept-Encoding: gzip\r\n",
                                  body)));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200) << "not sliced by Range";
  EXPECT_EQ(reply.body, "Content-Length,|multipart/form-data; boundary=b|" + body);
}

// A header line of kMaxHeaderLine bytes (CRLF included) with `percent_every` bytes a '%'
// (none when 0).
std::string HeaderValueAtTheLimit(size_t percent_every) {
  std::string value(HttpListener::kMaxHeaderLine - std::string("X-A: \r\n").size(), 'v');
  if (percent_every > 0) {
    for (size_t i = 0; i < value.size(); i += percent_every) value[i] = '%';
  }
  return value;
}

TEST_F(HttpListenerTest, HeaderLineAtTheLimitReachesTheHandler) {
  Start();
  const std::string value = HeaderValueAtTheLimit(0);
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Request("GET", "/echo", "X-A: " + value + "\r\n")));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200);
  EXPECT_TRUE(reply.body == value + "|" + value) << "body of " << reply.body.size() << " bytes";
}

// The listener takes a header line up to kMaxHeaderLine, httplib one up to the same size, and
// each '%' reaches httplib as "%25": a line the listener accepted must not grow past what
// httplib takes, or httplib answers 400 by itself (in its own format, not the refusal
// writer's) and no handler runs. Either the handler serves it or the listener refuses it.
TEST_F(HttpListenerTest, HeaderLineThatEscapingLengthensIsNeverRefusedByHttplib) {
  listener_.set_refusal_writer([](int status, std::string_view, std::string_view) {
    return HttpListener::Refusal{"application/json",
                                 "{\"refused\":" + std::to_string(status) + "}"};
  });
  Start();
  const std::string value = HeaderValueAtTheLimit(64);
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Request("GET", "/echo", "X-A: " + value + "\r\n")));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  const bool served = reply.status == 200 && reply.body == value + "|" + value;
  const bool refused = reply.status == 431 && reply.body == "{\"refused\":431}";
  EXPECT_TRUE(served || refused) << Summary(reply).substr(0, 400);
}

// ---------------------------------------------------------------------------------------------
// 2. Heads the listener refuses by itself.

struct BadHead {
  std::string name;
  std::string bytes;
};

class RefusedHeadTest : public HttpListenerTest, public ::testing::WithParamInterface<BadHead> {};

TEST_P(RefusedHeadTest, Gets400WithConnectionCloseAndNoHandlerRuns) {
  listener_.set_refusal_writer([](int status, std::string_view target, std::string_view) {
    return HttpListener::Refusal{
        "application/json",
        "{\"refused\":" + std::to_string(status) + ",\"target\":\"" + std::string(target) + "\"}"};
  });
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(GetParam().bytes));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 400);
  EXPECT_EQ(reply.Header("connection"), "close");
  EXPECT_EQ(reply.Header("content-type"), "application/json");
  EXPECT_EQ(reply.body, "{\"refused\":400,\"target\":\"/echo\"}");
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(handled_.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Rules, RefusedHeadTest,
    ::testing::Values(
        BadHead{"RawCrInValue", "GET /echo HTTP/1.1\r\nHost: corral\r\nX-A: a\rb\r\n\r\n"},
        BadHead{"NulInValue", "GET /echo HTTP/1.1\r\nHost: corral\r\nX-A: a\0b\r\n\r\n"s},
        BadHead{"BareLfEndsAHeaderLine", "GET /echo HTTP/1.1\r\nHost: corral\nX-A: a\r\n\r\n"},
        BadHead{"BareLfEndsTheHead", "GET /echo HTTP/1.1\r\nHost: corral\r\n\n"},
        BadHead{"ObsFold", "GET /echo HTTP/1.1\r\nHost: corral\r\nX-A: a\r\n b\r\n\r\n"},
        BadHead{"ContentLengthWithTransferEncoding",
                "POST /echo HTTP/1.1\r\nHost: corral\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"}),
    [](const ::testing::TestParamInfo<BadHead>& info) { return info.param.name; });

TEST_F(HttpListenerTest, RefusalWithoutWriterIsItsMessageAsPlainText) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET /echo HTTP/1.1\r\nHost: corral\r\nX-A: a\r\n b\r\n\r\n"));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 400);
  EXPECT_EQ(reply.Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_FALSE(reply.body.empty());
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(handled_.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. The head check.

// Refuses every path under /private with 401; admits the rest with a ticket naming the path.
HeadVerdict CheckPrivate(const RequestHead& head, const std::string&) {
  HeadVerdict verdict;
  if (head.path().substr(0, 8) == "/private") {
    verdict.status = 401;
    verdict.content_type = "text/plain";
    verdict.body = "no token";
    verdict.headers = {{"WWW-Authenticate", "Bearer"}};
    return verdict;
  }
  verdict.ticket = std::make_shared<Ticket>(Ticket{std::string(head.target)});
  return verdict;
}

TEST_F(HttpListenerTest, CheckRefusalWithoutBodyKeepsTheConnection) {
  listener_.set_head_check(CheckPrivate);
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Request("GET", "/private/echo")));
  const Reply refused = client.Read();
  ASSERT_TRUE(refused.complete) << Summary(refused);
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(refused.body, "no token");
  EXPECT_EQ(refused.Header("www-authenticate"), "Bearer");
  EXPECT_NE(refused.Header("connection"), "close");

  ASSERT_TRUE(client.Send(Request("GET", "/echo", "X-A: again\r\n")));
  const Reply served = client.Read();
  ASSERT_TRUE(served.complete) << Summary(served);
  EXPECT_EQ(served.status, 200);
  EXPECT_EQ(served.body, "again|again");
  EXPECT_EQ(handled_.load(), 1);
}

TEST_F(HttpListenerTest, CheckRefusalOfAnAnnouncedBodyComesAtOnceThenCloses) {
  listener_.set_head_check(CheckPrivate);
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  // 100 MB announced, not one byte of it sent: the answer cannot be waiting for the body.
  ASSERT_TRUE(
      client.Send("POST /private/plain HTTP/1.1\r\nHost: corral\r\n"
                  "Content-Length: 100000000\r\n\r\n"));
  const Reply reply = client.Read(kAtOnce);
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 401);
  EXPECT_EQ(reply.Header("connection"), "close");
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(HttpListenerTest, HandlerReadsTheTicketOfItsOwnRequest) {
  listener_.set_head_check(CheckPrivate);
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  for (const std::string target : {"/ticket?first", "/ticket?second"}) {
    ASSERT_TRUE(client.Send(Request("GET", target)));
    const Reply reply = client.Read();
    ASSERT_TRUE(reply.complete) << Summary(reply);
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.body, target);
  }
}

TEST_F(HttpListenerTest, TicketIsNullWithoutACheck) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Request("GET", "/ticket")));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.body, "(none)");
}

TEST_F(HttpListenerTest, ExpectContinueRefusedByTheCheckGetsTheRefusalAndNoContinue) {
  listener_.set_head_check(CheckPrivate);
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(
      client.Send("POST /private/plain HTTP/1.1\r\nHost: corral\r\nContent-Length: 5\r\n"
                  "Expect: 100-continue\r\n\r\n"));
  const Reply reply = client.Read(kAtOnce);
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 401) << Summary(reply);
  EXPECT_EQ(reply.raw.find("100 Continue"), std::string::npos);
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(HttpListenerTest, ExpectContinueAdmittedGetsContinueBeforeTheBodyIsSent) {
  listener_.set_head_check(CheckPrivate);
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(
      client.Send("POST /plain HTTP/1.1\r\nHost: corral\r\nContent-Length: 5\r\n"
                  "Expect: 100-continue\r\n\r\n"));
  const Reply interim = client.Read();
  ASSERT_TRUE(interim.complete) << Summary(interim);
  EXPECT_EQ(interim.raw.substr(0, 25), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(client.Send("hello"));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "hello");
}

// ---------------------------------------------------------------------------------------------
// 4. Chunked bodies.

// Both handlers: one reading with a ContentReader, one given req.body by httplib.
class ChunkedBodyTest : public HttpListenerTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string ChunkedHead() const {
    return "POST " + GetParam() + " HTTP/1.1\r\nHost: corral\r\nTransfer-Encoding: chunked\r\n\r\n";
  }
};

TEST_P(ChunkedBodyTest, ExtensionsAreDropped) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(ChunkedHead() +
                          "5;name=value;flag\r\nhello\r\n6 ; q=\"a b\"\r\n world\r\n"
                          "0;last\r\n\r\n"));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "hello world");
}

TEST_P(ChunkedBodyTest, TrailersAreDropped) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(
      client.Send(ChunkedHead() + "4\r\nbody\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n"));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "body");
}

TEST_P(ChunkedBodyTest, ManySmallChunks) {
  Start();
  std::string body;
  std::string chunks;
  for (int i = 0; i < 5000; ++i) {
    const char c = static_cast<char>('a' + i % 26);
    body.push_back(c);
    chunks += "1\r\n";
    chunks.push_back(c);
    chunks += "\r\n";
  }
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(ChunkedHead() + chunks + "0\r\n\r\n"));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, body);
}

// Every byte of the body arrives in its own read: size lines, data, CRLFs and trailers split
// at every point.
TEST_P(ChunkedBodyTest, ChunksSplitAcrossReads) {
  Start();
  const std::string chunked = "3;x=y\r\nabc\r\na\r\n0123456789\r\n0\r\nX-T: v\r\n\r\n";
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(ChunkedHead()));
  for (char c : chunked) {
    ASSERT_TRUE(client.WaitServerTookAll());
    ASSERT_TRUE(client.Send(std::string(1, c)));
  }
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "abc0123456789");
}

TEST_P(ChunkedBodyTest, PipelinedRequestAfterTheBodyIsServed) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(ChunkedHead() + "5\r\nfirst\r\n0\r\nX-T: v\r\n\r\n" +
                          Request("GET", "/echo", "X-A: second\r\n")));
  const Reply first = client.Read();
  ASSERT_TRUE(first.complete) << Summary(first);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, "first");
  const Reply second = client.Read();
  ASSERT_TRUE(second.complete) << Summary(second);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, "second|second");
}

INSTANTIATE_TEST_SUITE_P(Handlers, ChunkedBodyTest, ::testing::Values("/reader", "/plain"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param.substr(1);
                         });

TEST_F(HttpListenerTest, ChunkSizeLineOverItsLimitFailsTheReader) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(
      client.Send("POST /reader HTTP/1.1\r\nHost: corral\r\nTransfer-Encoding: chunked\r\n"
                  "\r\n1;" +
                  std::string(1100, 'x') + "\r\na\r\n0\r\n\r\n"));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.body.substr(0, 18), "failed timed_out=0") << reply.body;
  EXPECT_NE(reply.body.find("error="), std::string::npos);
  EXPECT_GT(reply.body.size(), reply.body.find("error=") + 6) << "ClientBodyError() is empty";
}

TEST_F(HttpListenerTest, TrailersOverTheirLimitFailTheReader) {
  Start();
  std::string trailers;
  for (int i = 0; i < 100; ++i) {
    trailers += "X-T" + std::to_string(i) + ": " + std::string(100, 'v') + "\r\n";
  }
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(
      client.Send("POST /reader HTTP/1.1\r\nHost: corral\r\nTransfer-Encoding: chunked\r\n"
                  "\r\n1\r\na\r\n0\r\n" +
                  trailers + "\r\n"));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.body.substr(0, 18), "failed timed_out=0") << reply.body;
  EXPECT_GT(reply.body.size(), reply.body.find("error=") + 6) << "ClientBodyError() is empty";
}

// A chunked body the listener could not decode leaves the connection in the middle of that
// body: nothing after it may be read as a request, whatever the handler answered.
TEST_F(HttpListenerTest, NothingAfterABadChunkedBodyIsReadAsARequest) {
  Start();
  // The size line is cut at its limit (1024 bytes, CRLF included); the bytes past it spell a
  // whole request, which a front proxy with no such limit would forward as body bytes.
  const std::string size_line_start = "1;" + std::string(1022, 'x');
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(
      client.Send("POST /plain HTTP/1.1\r\nHost: corral\r\nTransfer-Encoding: chunked\r\n"
                  "\r\n" +
                  size_line_start + Request("GET", "/echo", "X-A: smuggled\r\n")));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 400);
  const Reply next = client.Read();
  EXPECT_FALSE(next.complete) << "a second answer: " << Summary(next);
  EXPECT_EQ(echoed_.load(), 0) << "the bytes after the bad size line were served as a request";
}

// An answer that says `Connection: close` ends the connection, also when a `100 Continue` went
// before it and the body (with a next request behind it) arrived together with the head, so
// that no read came between the two answers.
TEST_F(HttpListenerTest, ConnectionCloseAnswerAfterContinueEndsTheConnection) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Request("POST", "/closing", "Expect: 100-continue\r\n", "hello") +
                          Request("GET", "/echo", "X-A: next\r\n")));
  const Reply interim = client.Read();
  ASSERT_TRUE(interim.complete) << Summary(interim);
  EXPECT_EQ(interim.status, 100);
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "hello");
  EXPECT_EQ(reply.Header("connection"), "close");
  const Reply next = client.Read();
  EXPECT_FALSE(next.complete) << "an answer after Connection: close: " << Summary(next);
  EXPECT_EQ(echoed_.load(), 0) << "the connection went on after an answer that closed it";
}

// A handler that answers without reading the body leaves the body on the connection: its
// bytes must not be read as the next request.
TEST_F(HttpListenerTest, NothingInAnUnreadBodyIsReadAsARequest) {
  Start();
  const std::string inner = Request("GET", "/echo", "X-A: smuggled\r\n");
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Request("POST", "/ignore", "", inner)));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.body, "ignored");
  const Reply next = client.Read();
  EXPECT_FALSE(next.complete) << "a second answer: " << Summary(next);
  EXPECT_EQ(echoed_.load(), 0) << "the body was served as a request";
}

// A body whose read timed out is cut where the reading stopped: the rest of it, arriving after
// the answer, must not be read as a request.
TEST_F(HttpListenerTest, NothingAfterABodyThatTimedOutIsReadAsARequest) {
  listener_.set_body_timeout(milliseconds(500));
  Start();
  const std::string inner = Request("GET", "/echo", "X-A: smuggled\r\n");
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("POST /plain HTTP/1.1\r\nHost: corral\r\nContent-Length: " +
                          std::to_string(10 + inner.size()) + "\r\n\r\n0123456789"));
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 400);
  // The listener may have closed already, and then this send fails: that is the point.
  client.Send(inner);
  const Reply next = client.Read();
  EXPECT_FALSE(next.complete) << "a second answer: " << Summary(next);
  EXPECT_EQ(echoed_.load(), 0) << "the rest of the body was served as a request";
}

// ---------------------------------------------------------------------------------------------
// 5. The per-client cap.

TEST_F(HttpListenerTest, ConnectionPastTheClientCapGets503AndASlotFreesOnClose) {
  listener_.set_max_connections_per_client(2);
  Start();
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 2; ++i) {
    // Served once: the connection holds a slot.
    held.push_back(std::make_unique<RawClient>(port_));
    ASSERT_TRUE(held.back()->connected());
    ASSERT_TRUE(held.back()->Send(Request("GET", "/echo")));
    const Reply reply = held.back()->Read();
    ASSERT_TRUE(reply.complete) << Summary(reply);
    EXPECT_EQ(reply.status, 200);
  }
  {
    RawClient third(port_);
    ASSERT_TRUE(third.connected());
    const Reply reply = third.Read();
    ASSERT_TRUE(reply.complete) << Summary(reply);
    EXPECT_EQ(reply.status, 503);
    EXPECT_FALSE(reply.Header("retry-after").empty());
    EXPECT_EQ(reply.Header("connection"), "close");
    EXPECT_TRUE(third.WaitClosed());
  }
  EXPECT_EQ(handled_.load(), 2);

  held.pop_back();
  // The slot comes back when the worker sees the close: until then a new connection may
  // still be refused.
  Reply last;
  ASSERT_TRUE(WaitUntil([&] {
    RawClient next(port_);
    if (!next.connected() || !next.Send(Request("GET", "/echo", "X-A: after\r\n"))) return false;
    last = next.Read();
    return last.complete && last.status == 200;
  })) << Summary(last);
  EXPECT_EQ(last.body, "after|after");
}

// ---------------------------------------------------------------------------------------------
// 6. The body deadline.

TEST_F(HttpListenerTest, BodyPastTheDeadlineFailsTheReaderAsATimeout) {
  listener_.set_body_timeout(milliseconds(1000));
  Start();
  // 100 bytes every 50 ms (2000 B/s, over twice kMinBodyRate) for 3 s in all.
  constexpr int kPieces = 60;
  constexpr milliseconds kPace{50};
  const std::string piece(100, 'b');
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("POST /reader HTTP/1.1\r\nHost: corral\r\nContent-Length: " +
                          std::to_string(kPieces * piece.size()) + "\r\n\r\n"));
  const auto started = steady_clock::now();
  int sent = 0;
  // The body goes at its pace until the answer starts (the pace is what is tested, not a wait
  // for a condition).
  while (sent < kPieces && !client.Pending(milliseconds(0))) {
    std::this_thread::sleep_until(started + kPace * sent);
    if (!client.Send(piece)) break;
    ++sent;
  }
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_LT(sent, kPieces) << "the whole body was taken";
  EXPECT_EQ(reply.body.substr(0, 18), "failed timed_out=1") << reply.body;
  const long ms = std::atol(reply.body.c_str() + reply.body.find("ms=") + 3);
  EXPECT_GE(ms, 900);
  EXPECT_LT(ms, 2500);
}

// ---------------------------------------------------------------------------------------------
// 7. RefuseConnectionsHere.

// Runs every connection on the accepting thread, under RefuseConnectionsHere, as a worker pool
// does that could not start a thread for it.
class RefusingQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override {
    const RefuseConnectionsHere refusing;
    fn();
  }
  void shutdown() override {}
};

TEST_F(HttpListenerTest, ConnectionServedUnderRefuseConnectionsHereGets503) {
  listener_.new_task_queue = [] { return new RefusingQueue; };
  listener_.set_refusal_writer([](int status, std::string_view, std::string_view) {
    return HttpListener::Refusal{"application/json",
                                 "{\"refused\":" + std::to_string(status) + "}"};
  });
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  const Reply reply = client.Read();
  ASSERT_TRUE(reply.complete) << Summary(reply);
  EXPECT_EQ(reply.status, 503);
  EXPECT_FALSE(reply.Header("retry-after").empty());
  EXPECT_EQ(reply.Header("connection"), "close");
  EXPECT_EQ(reply.body, "{\"refused\":503}");
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(handled_.load(), 0);
}

}  // namespace
}  // namespace corral
