#include "dataplane/blob_upload.h"

#include <sys/socket.h>

#include <cstdio>

#include "dataplane/answer_relay.h"
#include "dataplane/forwarder.h"
#include "dataplane/replies.h"

namespace corral::dataplane {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void BlobLocations::Remember(const std::string& digest, const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  if (nodes_.size() > 100000) nodes_.clear();  // bound memory; a miss only re-probes
  nodes_[digest] = {node, Clock::now() + ttl_};
}

std::string BlobLocations::Find(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(digest);
  if (it == nodes_.end()) return "";
  if (it->second.second < Clock::now()) {
    nodes_.erase(it);
    return "";
  }
  return it->second.first;
}

std::vector<std::string> BlobCandidates(const ProxyCall& call, Router& router, BlobLocations& blobs,
                                        const std::string& digest) {
  std::vector<std::string> order;
  if (!call.pinned.empty()) {
    order.push_back(call.pinned);
    return order;
  }
  const std::string cached = blobs.Find(digest);
  if (!cached.empty()) order.push_back(cached);
  for (auto& n : OrderByLoad(*call.table, router, nullptr)) {
    if (n != cached) order.push_back(std::move(n));
  }
  return order;
}

BlobUpload::BlobUpload(NodeExchange& exchange, Router& router, BlobLocations& blobs)
    : exchange_(exchange), router_(router), blobs_(blobs) {}

void BlobUpload::Route(ProxyCall& call, const httplib::ContentReader& reader) {
  const std::string& digest = call.route.param;
  // The front door admitted the request with a snapshot, a token allowed to upload and a slot.
  const std::vector<std::string> order = BlobCandidates(call, router_, blobs_, digest);
  const EffectivePolicy& policy = call.table->policy();
  const milliseconds write_timeout = exchange_.write_timeout();
  const bool chunked = call.head.framing == BodyFraming::kChunked;
  std::string last_error = "no healthy node to upload to";
  // Only the connection can be retried: once body bytes went to a node they cannot be replayed.
  for (const std::string& name : order) {
    const NodeEntry* node = call.table->FindNode(name);
    if (node == nullptr) continue;
    Lease lease = router_.Acquire(call.table, name);
    if (!lease) continue;
    auto connected =
        UpstreamConnection::Connect(node->host, node->port, milliseconds(policy.connect_ms));
    if (!connected.ok()) {
      router_.RecordFailure(name, policy);
      last_error = "node '" + name + "': " + std::string(connected.status().message());
      continue;
    }
    std::unique_ptr<UpstreamConnection> conn = *std::move(connected);
    conn->BeginResponse(false);
    const std::string head = NodeExchange::RequestHead(
        call, *node, chunked ? BodyFraming::kChunked : BodyFraming::kLength,
        call.head.content_length);
    if (!conn->WriteAll({head}, write_timeout).ok()) {
      router_.RecordFailure(name, policy);
      last_error = "node '" + name + "': " + conn->error();
      continue;
    }
    std::string write_error;
    const bool read_ok = reader([&](const char* data, size_t n) {
      absl::Status st;
      if (chunked) {
        char size_line[32];
        const int len = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", n);
        st = conn->WriteAll({std::string_view(size_line, static_cast<size_t>(len)),
                             std::string_view(data, n), "\r\n"},
                            write_timeout);
      } else {
        st = conn->WriteAll({std::string_view(data, n)}, write_timeout);
      }
      if (!st.ok()) write_error = std::string(st.message());
      return st.ok();
    });
    if (read_ok && chunked) {
      const auto st = conn->WriteAll({"0\r\n\r\n"}, write_timeout);
      if (!st.ok()) write_error = std::string(st.message());
    }
    if (!read_ok || !write_error.empty()) {
      // Either the client's body broke off or the node stopped taking it; a node may still
      // have answered early (e.g. 400), which is worth passing on.
      if (write_error.empty()) {
        call.res.status = 400;
        call.res.set_header("Connection", "close");
        return;
      }
    }
    call.has_body = false;
    std::string body, error;
    while (!conn->head_complete()) {
      const WaitOutcome waited = conn->Wait(milliseconds(1000), &call.client_fd);
      if (waited == WaitOutcome::kTimeout) {
        if (exchange_.aborting()) break;
        continue;
      }
      if (waited == WaitOutcome::kClientGone) break;
      const ReadOutcome read = conn->ReadSome();
      if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) break;
    }
    if (!conn->head_complete() ||
        !exchange_.ReadWholeBody(call, *conn, kMaxBufferedAnswer, &body, &error)) {
      router_.RecordFailure(name, policy);
      call.res.set_header("Connection", "close");
      SetErrorReply(call.res, 502,
                    "node '" + name + "' failed during the blob upload: " +
                        (write_error.empty() ? conn->error() : write_error),
                    false);
      return;
    }
    router_.RecordSuccess(name, 0);
    if (conn->status() == 200 || conn->status() == 201) blobs_.Remember(digest, name);
    if (!write_error.empty()) call.res.set_header("Connection", "close");
    AnswerWhole(call, *conn, name, std::move(body));
    return;
  }
  // No node took the body: it is left unread, and the connection ends after this answer.
  call.res.set_header("Connection", "close");
  const int fd = call.ClientFd();
  if (fd >= 0) ::shutdown(fd, SHUT_RD);
  call.res.set_header("Retry-After", "1");
  SetErrorReply(call.res, 503, last_error, false);
}

}  // namespace corral::dataplane
