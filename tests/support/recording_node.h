// RecordingNode: an Ollama node for tests that records every byte it receives and answers from a
// script, on a raw socket on 127.0.0.1 (port 0).
//
// A proxy's promises about what reaches a node ("exactly the request the client sent, no
// smuggled second request, no hop-by-hop header, no Authorization") can only be checked by a
// node that sees the bytes as they arrived, not a library's decoded view of them. So this node
// keeps each connection's bytes as received and splits them into requests with an independent
// parser (nodejs http-parser, strict), the way a real node would read them. A test asserts on
// the requests (method, target, raw head, header lines as received, body), on bytes that parse
// as no request at all, and on parse errors.
//
// It answers like Ollama on /, /api/version, /api/tags (one model, llama3.2:latest), /api/ps,
// /api/generate, /api/chat (non-streamed JSON), /api/delete and /api/blobs; a test may script
// any path: extra response headers, a body of any size generated as it is sent (half a gigabyte
// is never held in memory), an answer held until the test releases it. Connections are kept
// alive like a real node's (many requests on one connection).
//
// Thread safety: every public method may be called from any thread. The node runs an accept
// thread and one thread per connection; Stop() (or the destructor) ends and joins them.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace corral::testing {

// One request as the node read it.
struct RecordedRequest {
  int connection = 0;  // which accepted connection (0, 1, ...) it arrived on
  std::string method;
  std::string target;
  std::string raw_head;  // request line to the blank line, the bytes as received
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
  std::string body;                                          // de-chunked when chunked
  bool complete = false;  // the whole request (head and body) arrived

  // The first header named `name` (case-insensitive), or null.
  const std::string* Header(std::string_view name) const;
  // Whether any line of the raw head starts with `name:` (case-insensitive): what a node's own
  // parser, however lenient, would take for that header.
  bool HasRawHeaderLine(std::string_view name) const;
  std::string Summary() const;  // for failure messages
};

// Produces a body piece by piece: each call appends the next piece to *out; returns false once
// nothing is left. A fresh writer is made for each answer.
using BodyWriter = std::function<bool(std::string* out)>;

// How the node answers a path.
struct NodeReply {
  int status = 200;
  std::string content_type = "application/json; charset=utf-8";
  std::string body;
  // Extra response header lines, sent after the status line, in order.
  std::vector<std::pair<std::string, std::string>> headers;
  // A body generated while it is sent: `generated_size` bytes (the Content-Length) written by
  // make_body(). Replaces `body` when set.
  uint64_t generated_size = 0;
  std::function<BodyWriter()> make_body;
  // The body goes out chunked, with no length announced: a reader must cap it as it reads.
  bool chunked = false;
  // The answer waits until Release() (or Stop()) before its head is sent.
  bool hold = false;

  static NodeReply Json(int status, std::string body);
  // A non-streamed /api/generate answer of exactly `size` bytes: valid JSON whose "response"
  // is filler, generated as it is sent.
  static NodeReply LargeGenerate(uint64_t size);
  // An /api/tags answer of about `approx_size` bytes: valid JSON listing llama3.2:latest and
  // then thousands of made-up models of about 1 KiB each, generated as it is sent.
  static NodeReply LargeTags(uint64_t approx_size);
};

// What became of one answer the node started.
struct SentReply {
  std::string path;
  uint64_t body_bytes_sent = 0;
  bool ended = false;     // the node is done with it
  bool complete = false;  // every byte went out; false at its end: the peer went away first
};

class RecordingNode {
 public:
  RecordingNode();
  ~RecordingNode();  // Stop()
  RecordingNode(const RecordingNode&) = delete;
  RecordingNode& operator=(const RecordingNode&) = delete;

  // Binds 127.0.0.1:0 and starts accepting. False (with the reason in the log) on failure.
  ::testing::AssertionResult Start();
  // Closes the listener and every connection, releases held answers, joins the threads.
  void Stop();

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Scripts the answer to requests whose path (the target without its query) is `path`.
  void SetReply(const std::string& path, NodeReply reply);
  // Lets every held answer, and every later one, go out.
  void Release();

  // Every request begun so far (complete or not), in order of arrival on each connection and
  // of first byte across connections.
  std::vector<RecordedRequest> Requests() const;
  // Only the complete requests for `path` (all of them when `path` is empty).
  std::vector<RecordedRequest> CompleteRequests(const std::string& path = "") const;
  // Every byte received, connection after connection.
  std::string RawBytes() const;
  // Parse errors, one line each ("connection 2 at byte 17: HPE_INVALID_HEADER_TOKEN ...").
  std::vector<std::string> ParseErrors() const;
  // Answers started so far, in order.
  std::vector<SentReply> SentReplies() const;
  int connections() const;

  // Waits until at least `n` complete requests (for `path`, or any path when empty) arrived.
  ::testing::AssertionResult WaitForRequests(size_t n, std::chrono::milliseconds timeout,
                                             const std::string& path = "") const;
  // Waits until at least `n` answers for `path` ended (sent whole, or cut by the peer).
  ::testing::AssertionResult WaitForRepliesEnded(size_t n, const std::string& path,
                                                 std::chrono::milliseconds timeout) const;

  // Forgets every request, byte, error and answer recorded so far. Call it between phases of a
  // test, when no request is half-way through.
  void Clear();

 private:
  struct Connection;
  void AcceptLoop();
  void Serve(const std::shared_ptr<Connection>& conn);
  NodeReply ReplyFor(const std::string& path) const;
  // Answers `req` on `fd` as scripted. False when the connection must end.
  bool Answer(int fd, const RecordedRequest& req, bool keep_alive);

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;   // a request, an answer or a release happened
  std::map<std::string, NodeReply> replies_;  // guarded by mu_
  bool released_ = false;                     // guarded by mu_
  // Guarded by mu_: the connections (their fds, threads and bytes), the requests in arrival
  // order (indices into them stay valid: records are only appended or all cleared), errors and
  // answers.
  std::vector<std::shared_ptr<Connection>> connections_;
  std::vector<std::shared_ptr<RecordedRequest>> requests_;
  std::vector<std::string> errors_;
  std::vector<std::shared_ptr<SentReply>> sent_;
};

}  // namespace corral::testing
