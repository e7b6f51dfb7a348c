#include "dataplane/control_client.h"

#include <algorithm>
#include <random>
#include <utility>

#include "common/grpc_limits.h"
#include "common/grpc_tls.h"
#include "common/log.h"

namespace corral::dataplane {
namespace {

// Keepalive on an idle Watch stream: ping every 30 s (not below the control plane's minimum
// receive interval, or it answers GOAWAY too_many_pings), give up after 10 s without an answer,
// and keep pinging without data frames (the default stops after two pings). The channel's own
// reconnect backoff follows our bounds so the two loops agree.
std::shared_ptr<grpc::Channel> MakeChannel(const ControlClientOptions& options,
                                           std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  // A snapshot grows with the fleet; gRPC's default 4 MiB would break every Watch at once.
  args.SetMaxReceiveMessageSize(corral::kMaxGrpcMessageBytes);
  args.SetMaxSendMessageSize(corral::kMaxGrpcMessageBytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(options.backoff_initial.count()));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.backoff_initial.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options.backoff_max.count()));
  return grpc::CreateCustomChannel(options.address, std::move(credentials), args);
}

void ToProto(const UsageBatch& batch, corral::v1::UsageBatch* out) {
  out->set_instance_id(batch.instance_id);
  out->set_sequence(batch.sequence);
  out->mutable_entries()->Reserve(static_cast<int>(batch.entries.size()));
  for (const UsageEntry& e : batch.entries) {
    corral::v1::UsageEntry* entry = out->add_entries();
    entry->set_hour_start(e.hour_start);
    entry->set_token(e.token);
    entry->set_model(e.model);
    entry->set_node(e.node);
    entry->set_requests(e.counts.requests);
    entry->set_errors(e.counts.errors);
    entry->set_input_tokens(e.counts.input_tokens);
    entry->set_output_tokens(e.counts.output_tokens);
  }
}

}  // namespace

ControlClient::ControlClient(ControlClientOptions options, ApplyFn apply, LoadFn load)
    : options_(std::move(options)), apply_(std::move(apply)), load_(std::move(load)) {
  ClientTlsFiles files;
  files.ca_file = options_.tls_ca_file;
  files.cert_file = options_.tls_cert_file;
  files.key_file = options_.tls_key_file;
  files.flag_prefix = "--control-tls-";
  absl::StatusOr<ClientSecurity> security = MakeChannelCredentials(files);
  if (!security.ok()) {
    init_status_ = security.status();
    CORRAL_LOG(kError, "control") << "cannot watch the control plane at " << options_.address
                                  << ": " << init_status_.message();
    return;
  }
  security_ = TransportSecurityName(security->security);
  channel_ = MakeChannel(options_, std::move(security->credentials));
  stub_ = corral::v1::Discovery::NewStub(channel_);
}

ControlClient::~ControlClient() { Stop(); }

void ControlClient::Start(uint64_t served_version) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || watch_thread_.joinable() || !init_status_.ok()) return;
  applied_version_ = served_version;
  CORRAL_LOG(kInfo, "control") << "connecting to the control plane at " << options_.address << " ("
                               << security_ << ")";
  watch_thread_ = std::thread([this] { WatchLoop(); });
  report_thread_ = std::thread([this] { ReportLoop(); });
}

void ControlClient::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
    if (report_ctx_ != nullptr) report_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (report_thread_.joinable()) report_thread_.join();
  connected_ = false;
}

void ControlClient::AddAuth(grpc::ClientContext* ctx) const {
  if (!options_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options_.token);
}

bool ControlClient::SleepUnlessStopping(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, d, [this] { return stopping_; });
}

void ControlClient::WatchLoop() {
  std::mt19937_64 rng(std::random_device{}());
  std::chrono::milliseconds backoff = options_.backoff_initial;
  while (true) {
    const bool delivered = WatchOnce();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    if (delivered) backoff = options_.backoff_initial;
    // Full jitter over the upper half, so proxies cut off together do not return together.
    std::uniform_int_distribution<int64_t> pick(backoff.count() / 2, backoff.count());
    const std::chrono::milliseconds delay(pick(rng));
    CORRAL_LOG(kInfo, "control-client")
        << "reconnecting to " << options_.address << " in " << delay.count()
        << " ms; serving snapshot version " << applied_version_.load();
    if (!SleepUnlessStopping(delay)) return;
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
}

bool ControlClient::WatchOnce() {
  grpc::ClientContext ctx;
  // Wait for the channel to connect instead of failing at once while the control plane is
  // down; Stop cancels the wait.
  ctx.set_wait_for_ready(true);
  AddAuth(&ctx);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    watch_ctx_ = &ctx;
  }
  corral::v1::WatchRequest request;
  request.set_proxy_id(options_.proxy_id);
  request.set_have_version(applied_version_.load());

  std::unique_ptr<grpc::ClientReader<corral::v1::Snapshot>> reader = stub_->Watch(&ctx, request);
  bool delivered = false;
  corral::v1::Snapshot snapshot;
  while (reader->Read(&snapshot)) {
    if (!delivered) {
      CORRAL_LOG(kInfo, "control-client") << "watching " << options_.address;
    }
    delivered = true;
    connected_ = true;
    HandleSnapshot(snapshot);
  }
  connected_ = false;
  const grpc::Status status = reader->Finish();
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(mu_);
    watch_ctx_ = nullptr;
    stopping = stopping_;
  }
  if (!stopping) {
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
        status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      CORRAL_LOG(kError, "control-client")
          << "control plane " << options_.address
          << " refused this proxy's token: " << status.error_message();
    } else {
      CORRAL_LOG(kWarn, "control-client")
          << "watch stream to " << options_.address << " ended: "
          << (status.ok() ? std::string("closed by the control plane") : status.error_message());
    }
  }
  return delivered;
}

void ControlClient::HandleSnapshot(const corral::v1::Snapshot& snapshot) {
  const uint64_t version = snapshot.version();
  // A snapshot already served (the first message after a reconnect, usually) is only
  // acknowledged: rebuilding the same table gains nothing.
  absl::Status applied = absl::OkStatus();
  if (version == 0 || version != applied_version_.load()) applied = apply_(snapshot);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (applied.ok()) {
      applied_version_ = version;
      if (rejected_version_.load() <= version) {
        rejected_version_ = 0;
        rejected_reason_.clear();
      }
    } else {
      rejected_version_ = version;
      rejected_reason_ = std::string(applied.message());
    }
    report_due_ = true;
  }
  cv_.notify_all();
  if (!applied.ok()) {
    CORRAL_LOG(kWarn, "control-client")
        << "rejected snapshot version " << version << ": " << applied.message()
        << "; still serving version " << applied_version_.load();
  } else {
    CORRAL_LOG(kDebug, "control-client") << "applied snapshot version " << version;
  }
}

void ControlClient::ReportSoon() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    report_due_ = true;
  }
  cv_.notify_all();
}

void ControlClient::ReportLoop() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock<std::mutex> lock(mu_);
  auto next = Clock::now() + options_.report_interval;
  bool was_waiting = false;
  while (true) {
    auto until = next;
    if (options_.waiting && !was_waiting) {
      until = std::min(until, Clock::now() + options_.waiting_poll);
    }
    cv_.wait_until(lock, until, [this] { return stopping_ || report_due_; });
    if (stopping_) return;
    bool due = report_due_ || Clock::now() >= next;
    if (!due && options_.waiting && !was_waiting) {
      // Requests just started waiting: the control plane hears of it now, not an interval on.
      lock.unlock();
      due = options_.waiting() > 0;
      lock.lock();
      if (stopping_) return;
    }
    if (!due) continue;
    report_due_ = false;
    lock.unlock();
    was_waiting = SendReport();
    lock.lock();
    next = Clock::now() + (was_waiting ? options_.busy_report_interval : options_.report_interval);
  }
}

bool ControlClient::ApplyGrants(const corral::v1::ReportResponse& response) {
  if (options_.grants == nullptr || response.lease_ms() <= 0) return false;
  options_.grants->Apply(response);
  ++grants_applied_;
  bool lowered = false;
  std::map<std::string, AppliedGrant> now;
  for (const corral::v1::SlotGrant& grant : response.grants()) {
    AppliedGrant& g = now[grant.node()];
    g.max_parallel = grant.max_parallel();
    g.default_model_slots = grant.default_model_slots();
    for (const auto& m : grant.models()) g.models[m.model()] = m.num_parallel();
    auto before = applied_grants_.find(grant.node());
    if (before == applied_grants_.end()) continue;
    const AppliedGrant& b = before->second;
    if (g.max_parallel < b.max_parallel || g.default_model_slots < b.default_model_slots) {
      lowered = true;
    }
    for (const auto& [model, slots] : b.models) {
      auto it = g.models.find(model);
      if ((it != g.models.end() ? it->second : g.default_model_slots) < slots) lowered = true;
    }
  }
  applied_grants_ = std::move(now);
  return lowered;
}

bool ControlClient::SendReport() {
  corral::v1::ReportRequest request;
  request.set_proxy_id(options_.proxy_id);
  bool waiting = false;
  if (load_) {
    for (corral::v1::NodeLoad& load : load_()) {
      if (load.waiting() > 0) waiting = true;
      *request.add_nodes() = std::move(load);
    }
  }
  if (options_.waiting && options_.waiting() > 0) waiting = true;
  uint64_t usage_sequence = 0;
  const auto started = std::chrono::steady_clock::now();
  // A batch waiting for its acknowledgement goes with every Report; a new one at most every
  // usage_interval, so faster Reports do not mean more, smaller batches to store.
  if (options_.usage != nullptr &&
      (usage_pending_ != 0 || started - last_usage_ >= options_.usage_interval)) {
    const UsageBatch batch = options_.usage->Drain();
    if (!batch.empty()) {
      usage_sequence = batch.sequence;
      usage_pending_ = batch.sequence;
      ToProto(batch, request.mutable_usage());
    } else {
      last_usage_ = started;
    }
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + options_.report_timeout);
  AddAuth(&ctx);
  // Only a proxy that applies grants numbers its Reports: the control plane leaves the others
  // out of the division (they enforce every limit alone).
  const uint64_t seq = ++report_seq_;
  if (options_.grants != nullptr) {
    request.set_report_seq(seq);
    request.set_grants_applied(applied_seq_);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return waiting;
    // Read together so an ack and a nack never describe two different moments.
    request.set_applied_version(applied_version_.load());
    if (rejected_version_.load() > applied_version_.load()) {
      request.set_rejected_version(rejected_version_.load());
      request.set_rejected_reason(rejected_reason_);
    }
    report_ctx_ = &ctx;
  }
  corral::v1::ReportResponse response;
  const grpc::Status status = stub_->Report(&ctx, request, &response);
  const auto took = std::chrono::steady_clock::now() - started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    report_ctx_ = nullptr;
  }
  if (!status.ok()) {
    CORRAL_LOG(kDebug, "control-client")
        << "report to " << options_.address << " failed: " << status.error_message();
    return waiting;
  }
  if (options_.grants != nullptr && response.lease_ms() > 0) {
    if (took <= options_.max_grant_delay) {
      const bool lowered = ApplyGrants(response);
      applied_seq_ = seq;
      if (options_.on_grants) options_.on_grants();
      // The control plane gives the slots to others only once it hears they were given up.
      if (lowered) ReportSoon();
    } else {
      CORRAL_LOG(kDebug, "control-client")
          << "report answer took "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
          << " ms: its slot grants are not applied";
    }
  }
  if (usage_sequence != 0) {
    if (response.usage_acked_sequence() == usage_sequence) {
      options_.usage->Ack(usage_sequence);
      usage_pending_ = 0;
      last_usage_ = started;
    } else {
      // An older control plane, or the batch could not be stored: it stays pending and goes again.
      CORRAL_LOG(kDebug, "control-client")
          << "usage batch " << usage_sequence << " not acknowledged by " << options_.address;
    }
  }
  return waiting;
}

}  // namespace corral::dataplane
