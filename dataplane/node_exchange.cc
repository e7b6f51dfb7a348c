#include "dataplane/node_exchange.h"

#include <algorithm>

#include "common/log.h"

namespace corral::dataplane {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

NodeExchange::NodeExchange(ExchangeOptions options, UpstreamPool& pool,
                           const std::atomic<bool>& aborting)
    : options_(options), pool_(pool), aborting_(aborting) {}

std::string NodeExchange::RequestHead(const ProxyCall& call, const NodeEntry& node,
                                      BodyFraming body, uint64_t length) {
  ForwardSpec spec;
  spec.authority = node.authority;
  spec.client_address = call.req.remote_addr;
  // Corral's token is Corral's: a node never sees it (per-node credentials are a later step).
  spec.drop_authorization = call.table != nullptr && FleetClosed(call.table->snapshot());
  // Origin: the proxy answers CORS itself, and a node would 403 an origin it does not know.
  // Accept-Encoding: bodies pass through as the node writes them.
  spec.drop = {kNodeHeader, "Origin", "Accept-Encoding"};
  // The request's id, the client's or the proxy's own, replaces whatever the client sent.
  spec.request_id = call.admitted.record
                        ? std::string_view(call.admitted.record->record().request_id)
                        : std::string_view();
  spec.body = body;
  spec.body_length = length;
  return BuildForwardHead(call.head, spec);
}

NodeAnswer NodeExchange::Send(ProxyCall& call, const NodeEntry& node) {
  const EffectivePolicy& policy = call.table->policy();
  const std::string& endpoint = node.endpoint;
  const std::string head = RequestHead(
      call, node, call.has_body ? BodyFraming::kLength : BodyFraming::kNone, call.body.size());
  const bool head_request = call.req.method == "HEAD";
  NodeAnswer answer;
  // A pooled connection the node closed while it sat idle fails before any response byte; the
  // request is then sent once more on a fresh connection, and the node is not blamed.
  for (int fresh = 0; fresh < 2; ++fresh) {
    std::unique_ptr<UpstreamConnection> conn;
    if (fresh == 0) conn = pool_.Take(endpoint);
    if (!conn) {
      auto connected =
          UpstreamConnection::Connect(node.host, node.port, milliseconds(policy.connect_ms));
      if (!connected.ok()) {
        answer.error = std::string(connected.status().message());
        return answer;
      }
      conn = *std::move(connected);
      fresh = 1;
    }
    conn->BeginResponse(head_request);
    const auto start = Clock::now();
    const auto written = conn->WriteAll({head, call.body}, options_.upstream_write_timeout);
    if (!written.ok()) {
      if (conn->reused()) continue;
      answer.error = std::string(written.message());
      return answer;
    }
    const auto deadline = start + milliseconds(policy.first_byte_ms);
    bool retry_fresh = false;
    while (!conn->head_complete()) {
      const auto now = Clock::now();
      if (now >= deadline) {
        answer.error = "no response within " + std::to_string(policy.first_byte_ms) + " ms";
        return answer;
      }
      if (aborting_.load()) {
        answer.error = "proxy is stopping";
        return answer;
      }
      // Fast answers never pay for finding the client's socket; slow ones (model loads) watch
      // it so a client that leaves cancels the node's work at once.
      milliseconds slice(1000);
      if (call.client_fd == kClientNotSearched) {
        if (now - start >= options_.client_watch_after) {
          call.ClientFd();
        } else {
          slice = options_.client_watch_after;
        }
      }
      slice = std::min(slice,
                       std::chrono::duration_cast<milliseconds>(deadline - now) + milliseconds(1));
      const WaitOutcome waited = conn->Wait(slice, &call.client_fd);
      if (waited == WaitOutcome::kClientGone) {
        CORRAL_LOG(kDebug, "proxy") << call.req.path << ": client left while node " << node.name
                                    << " was preparing its answer";
        conn->Close();
        answer.kind = NodeAnswer::kClientGone;
        return answer;
      }
      if (waited == WaitOutcome::kTimeout) continue;
      const ReadOutcome read = conn->ReadSome();
      if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
        if (conn->reused() && !conn->received_any() && fresh == 0) {
          retry_fresh = true;
          break;
        }
        answer.error = conn->error();
        return answer;
      }
    }
    if (retry_fresh) continue;
    answer.kind = NodeAnswer::kHead;
    answer.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    answer.sent = start;
    answer.conn = std::move(conn);
    return answer;
  }
  answer.error = "connection lost";
  return answer;
}

bool NodeExchange::ReadWholeBody(ProxyCall& call, UpstreamConnection& conn, size_t limit,
                                 std::string* body, std::string* error) {
  const milliseconds idle(call.table->policy().idle_ms);
  auto last = Clock::now();
  if (conn.has_content_length() && conn.content_length() > limit) {
    conn.Close();
    *error = "answer of " + std::to_string(conn.content_length()) +
             " bytes is larger than the proxy's limit of " + std::to_string(limit) + " bytes";
    return false;
  }
  while (true) {
    if (conn.has_body()) {
      *body += conn.TakeBody();
      if (body->size() > limit) {
        conn.Close();
        *error = "answer is larger than the proxy's limit of " + std::to_string(limit) + " bytes";
        return false;
      }
      last = Clock::now();
    }
    if (conn.message_complete()) return true;
    if (aborting_.load()) {
      *error = "proxy is stopping";
      return false;
    }
    const WaitOutcome waited = conn.Wait(milliseconds(1000), &call.client_fd);
    if (waited == WaitOutcome::kClientGone) {
      conn.Close();
      *error = "client left";
      return false;
    }
    if (waited == WaitOutcome::kTimeout) {
      if (Clock::now() - last > idle) {
        *error = "node sent nothing for " + std::to_string(idle.count()) + " ms";
        return false;
      }
      continue;
    }
    const ReadOutcome read = conn.ReadSome();
    if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
      *error = conn.error();
      return false;
    }
  }
}

std::optional<SavedResponse> NodeExchange::ReadAnswer(ProxyCall& call, UpstreamConnection& conn,
                                                      const std::string& node, size_t limit,
                                                      std::string* error) {
  SavedResponse saved;
  if (!ReadWholeBody(call, conn, limit, &saved.body, error)) return std::nullopt;
  saved.status = conn.status();
  saved.headers = conn.headers();
  saved.content_type = std::string(conn.Header("Content-Type"));
  saved.node = node;
  return saved;
}

void NodeExchange::GiveBack(const NodeEntry& node, std::unique_ptr<UpstreamConnection> conn) {
  if (conn == nullptr) return;
  if (conn->keep_alive() && conn->message_complete()) {
    pool_.Give(node.endpoint, std::move(conn));
  } else {
    conn->Close();
  }
}

}  // namespace corral::dataplane
