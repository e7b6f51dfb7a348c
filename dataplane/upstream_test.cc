// UpstreamConnection and UpstreamPool against a scripted node on a real loopback socket.
#include "dataplane/upstream.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <future>
#include <thread>

#include "dataplane/upstream_pool.h"
#include "tests/support/process.h"

namespace corral::dataplane {
namespace {

using std::chrono::milliseconds;

// A one-connection server: accepts, then runs `script` with the connected socket.
class ScriptedNode {
 public:
  explicit ScriptedNode(std::function<void(int fd)> script) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, script] {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      script(fd);
      ::close(fd);
    });
  }
  ~ScriptedNode() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

// Reads one request head (and a Content-Length body) from `fd`; returns it.
std::string ReadRequest(int fd) {
  std::string data;
  char buf[4096];
  while (data.find("\r\n\r\n") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return data;
    data.append(buf, static_cast<size_t>(n));
  }
  const size_t head_end = data.find("\r\n\r\n") + 4;
  size_t length = 0;
  const size_t cl = data.find("Content-Length: ");
  if (cl != std::string::npos && cl < head_end) length = std::stoul(data.substr(cl + 16));
  while (data.size() < head_end + length) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

void Send(int fd, const std::string& text) {
  ASSERT_EQ(::send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
}

std::unique_ptr<UpstreamConnection> ConnectTo(int port) {
  auto conn = UpstreamConnection::Connect("127.0.0.1", port, milliseconds(2000));
  EXPECT_TRUE(conn.ok()) << conn.status();
  return conn.ok() ? *std::move(conn) : nullptr;
}

// Reads until the head (or the whole message) is parsed; false on failure or after 5 s.
bool ReadUntil(UpstreamConnection& conn, bool whole_message) {
  for (int i = 0; i < 50; ++i) {
    if (whole_message ? conn.message_complete() : conn.head_complete()) return true;
    if (conn.Wait(milliseconds(100), nullptr) != WaitOutcome::kReadable) continue;
    const ReadOutcome r = conn.ReadSome();
    if (r == ReadOutcome::kClosed || r == ReadOutcome::kError) return false;
  }
  return false;
}

TEST(UpstreamConnectionTest, ContentLengthResponseAndKeepAliveReuse) {
  ScriptedNode node([](int fd) {
    for (int i = 0; i < 2; ++i) {
      const std::string request = ReadRequest(fd);
      const std::string body = "{\"n\":" + std::to_string(i) + "}";
      Send(fd,
           "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
           "Content-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body);
    }
  });
  auto conn = ConnectTo(node.port());
  ASSERT_NE(conn, nullptr);
  for (int i = 0; i < 2; ++i) {
    conn->BeginResponse(false);
    ASSERT_TRUE(
        conn->WriteAll({"POST /api/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", "{}"},
                       milliseconds(1000))
            .ok());
    ASSERT_TRUE(ReadUntil(*conn, true)) << conn->error();
    EXPECT_EQ(conn->status(), 200);
    EXPECT_TRUE(conn->has_content_length());
    EXPECT_EQ(conn->Header("content-type"), "application/json; charset=utf-8");
    EXPECT_EQ(conn->TakeBody(), "{\"n\":" + std::to_string(i) + "}");
    EXPECT_TRUE(conn->keep_alive());
  }
}

TEST(UpstreamConnectionTest, ChunkedBodyArrivesPieceByPiece) {
  std::promise<void> first_seen;
  auto first_seen_future = first_seen.get_future();
  ScriptedNode node([&](int fd) {
    ReadRequest(fd);
    Send(fd,
         "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
         "Transfer-Encoding: chunked\r\n\r\n8\r\n{\"a\":1}\n\r\n");
    first_seen_future.wait();  // the second piece leaves only after the first was parsed
    Send(fd, "8\r\n{\"b\":2}\n\r\n0\r\n\r\n");
  });
  auto conn = ConnectTo(node.port());
  ASSERT_NE(conn, nullptr);
  conn->BeginResponse(false);
  ASSERT_TRUE(conn->WriteAll({"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, milliseconds(1000)).ok());
  ASSERT_TRUE(ReadUntil(*conn, false));
  EXPECT_FALSE(conn->has_content_length());
  while (!conn->has_body()) {
    ASSERT_EQ(conn->Wait(milliseconds(5000), nullptr), WaitOutcome::kReadable);
    conn->ReadSome();
  }
  EXPECT_EQ(conn->TakeBody(), "{\"a\":1}\n");
  EXPECT_FALSE(conn->message_complete());
  first_seen.set_value();
  ASSERT_TRUE(ReadUntil(*conn, true));
  EXPECT_EQ(conn->TakeBody(), "{\"b\":2}\n");
  EXPECT_TRUE(conn->keep_alive());
}

TEST(UpstreamConnectionTest, BodyEndedByCloseIsCompleteButNotReusable) {
  ScriptedNode node([](int fd) {
    ReadRequest(fd);
    Send(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it");
  });
  auto conn = ConnectTo(node.port());
  ASSERT_NE(conn, nullptr);
  conn->BeginResponse(false);
  ASSERT_TRUE(conn->WriteAll({"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, milliseconds(1000)).ok());
  ASSERT_TRUE(ReadUntil(*conn, true)) << conn->error();
  EXPECT_EQ(conn->TakeBody(), "all of it");
  EXPECT_FALSE(conn->keep_alive());
}

TEST(UpstreamConnectionTest, CloseBeforeTheEndIsAnError) {
  ScriptedNode node([](int fd) {
    ReadRequest(fd);
    Send(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  });
  auto conn = ConnectTo(node.port());
  ASSERT_NE(conn, nullptr);
  conn->BeginResponse(false);
  ASSERT_TRUE(conn->WriteAll({"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, milliseconds(1000)).ok());
  EXPECT_FALSE(ReadUntil(*conn, true));
  EXPECT_TRUE(conn->head_complete());
  EXPECT_EQ(conn->TakeBody(), "hello");
  EXPECT_FALSE(conn->message_complete());
  EXPECT_NE(conn->error().find("before the end"), std::string::npos) << conn->error();
}

TEST(UpstreamConnectionTest, HeadResponseHasNoBody) {
  ScriptedNode node([](int fd) {
    ReadRequest(fd);
    Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n");
  });
  auto conn = ConnectTo(node.port());
  ASSERT_NE(conn, nullptr);
  conn->BeginResponse(true);
  ASSERT_TRUE(
      conn->WriteAll({"HEAD /api/blobs/x HTTP/1.1\r\nHost: x\r\n\r\n"}, milliseconds(1000)).ok());
  ASSERT_TRUE(ReadUntil(*conn, true)) << conn->error();
  EXPECT_EQ(conn->status(), 200);
  EXPECT_FALSE(conn->has_body());
  EXPECT_TRUE(conn->keep_alive());
}

TEST(UpstreamConnectionTest, GarbageIsAnError) {
  ScriptedNode node([](int fd) {
    ReadRequest(fd);
    Send(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz-not-a-size\r\n");
  });
  auto conn = ConnectTo(node.port());
  ASSERT_NE(conn, nullptr);
  conn->BeginResponse(false);
  ASSERT_TRUE(conn->WriteAll({"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, milliseconds(1000)).ok());
  EXPECT_FALSE(ReadUntil(*conn, true));
  EXPECT_NE(conn->error().find("invalid response"), std::string::npos) << conn->error();
}

TEST(UpstreamConnectionTest, ConnectToAClosedPortFails) {
  int port = 0;
  {
    ScriptedNode node([](int) {});
    port = node.port();
    auto conn = ConnectTo(port);  // lets the scripted node finish
  }
  auto conn = UpstreamConnection::Connect("127.0.0.1", port, milliseconds(2000));
  EXPECT_FALSE(conn.ok());
}

TEST(UpstreamPoolTest, ReusesALiveConnectionAndDropsAClosedOne) {
  std::promise<void> close_now;
  auto close_future = close_now.get_future();
  ScriptedNode node([&](int fd) {
    ReadRequest(fd);
    Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    close_future.wait();
  });
  // Every connection is probed before it is handed out, however briefly it was idle.
  UpstreamPool pool(64, std::chrono::seconds(60), milliseconds(0));
  const std::string endpoint = UpstreamPool::Endpoint("127.0.0.1", node.port());
  auto conn = ConnectTo(node.port());
  ASSERT_NE(conn, nullptr);
  conn->BeginResponse(false);
  ASSERT_TRUE(conn->WriteAll({"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, milliseconds(1000)).ok());
  ASSERT_TRUE(ReadUntil(*conn, true));
  UpstreamConnection* raw = conn.get();
  pool.Give(endpoint, std::move(conn));
  EXPECT_EQ(pool.IdleCount(endpoint), 1u);
  auto again = pool.Take(endpoint);
  ASSERT_EQ(again.get(), raw);
  EXPECT_TRUE(again->reused());
  pool.Give(endpoint, std::move(again));
  close_now.set_value();  // the node closes its end
  // Once the FIN arrives, the pool must not hand the connection out.
  ASSERT_TRUE(corral::testing::WaitFor([&] { return !raw->LooksAlive(); }, milliseconds(5000),
                                       "the node's close to arrive"));
  EXPECT_EQ(pool.Take(endpoint), nullptr);
}

// A node that holds its one connection open until the proxy's side closes it.
void HoldOpen(int fd) {
  char c;
  while (::recv(fd, &c, 1, 0) > 0) {
  }
}

TEST(UpstreamPoolTest, HandsOutTheMostRecentAndKeepsAtMostTheBound) {
  ScriptedNode first(HoldOpen);
  ScriptedNode second(HoldOpen);
  UpstreamPool pool(1);
  const std::string endpoint = "node:1";
  auto a = ConnectTo(first.port());
  auto b = ConnectTo(second.port());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  UpstreamConnection* newest = b.get();
  pool.Give(endpoint, std::move(a));
  pool.Give(endpoint, std::move(b));
  EXPECT_EQ(pool.IdleCount(endpoint), 1u);
  auto taken = pool.Take(endpoint);
  EXPECT_EQ(taken.get(), newest);
  EXPECT_EQ(pool.Take(endpoint), nullptr);
}

TEST(UpstreamPoolTest, DropsConnectionsIdleLongerThanTheMaxAge) {
  ScriptedNode node(HoldOpen);
  UpstreamPool pool(64, milliseconds(0), milliseconds(0));
  const std::string endpoint = "node:1";
  auto conn = ConnectTo(node.port());
  ASSERT_NE(conn, nullptr);
  pool.Give(endpoint, std::move(conn));
  EXPECT_EQ(pool.Take(endpoint), nullptr);
  EXPECT_EQ(pool.IdleCount(endpoint), 0u);
}

}  // namespace
}  // namespace corral::dataplane
