#include "ctl/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ctl/args.h"

namespace corral::ctl {
namespace {

using corral::v1::NodeInfo;

std::string Dash(const std::string& s) { return s.empty() ? "-" : s; }

std::string ModelNames(const corral::v1::Node& node) {
  std::vector<std::string> names;
  for (const auto& m : node.models()) names.push_back(m.name());
  return names.empty() ? "-" : absl::StrJoin(names, ",");
}

std::string LoadedNames(const corral::v1::Node& node) {
  std::vector<std::string> names;
  for (const auto& m : node.loaded_models()) names.push_back(m.name());
  return names.empty() ? "-" : absl::StrJoin(names, ",");
}

std::string Limit(int64_t value) { return value == 0 ? "-" : absl::StrCat(value); }

// Requests a node runs at once per loaded model: 0 stands for Ollama's default, 1.
int32_t NumParallel(const corral::v1::Node& node) {
  return node.num_parallel() == 0 ? 1 : node.num_parallel();
}

// A policy value with the default it stands for when 0, as the proto defines them.
std::string WithDefault(int64_t value, int64_t def, const char* unit) {
  if (value == 0) return absl::StrCat(def, unit, " (default)");
  return absl::StrCat(value, unit);
}

// Key/value lines with the keys aligned.
std::string RenderFields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [k, v] : fields) width = std::max(width, k.size());
  std::string out;
  for (const auto& [k, v] : fields) {
    absl::StrAppend(&out, k, ":", std::string(width - k.size() + 1, ' '), v, "\n");
  }
  return out;
}

}  // namespace

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    // Only possible for malformed Any fields, which the API does not use.
    return absl::StrCat("{\"error\":\"cannot render JSON: ", status.message().ToString(), "\"}\n");
  }
  out.push_back('\n');
  return out;
}

std::string RenderTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  };
  measure(headers);
  for (const auto& row : rows) measure(row);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      line += cell;
      if (i + 1 < widths.size()) line += std::string(widths[i] - cell.size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(headers);
  for (const auto& row : rows) emit(row);
  return out;
}

std::string AdminStateName(corral::v1::AdminState state) {
  switch (state) {
    case corral::v1::ADMIN_STATE_ENABLED:
      return "enabled";
    case corral::v1::ADMIN_STATE_DRAINING:
      return "draining";
    case corral::v1::ADMIN_STATE_DISABLED:
      return "disabled";
    default:
      return "unspecified";
  }
}

std::string HealthName(corral::v1::Health health) {
  switch (health) {
    case corral::v1::HEALTH_HEALTHY:
      return "healthy";
    case corral::v1::HEALTH_UNHEALTHY:
      return "unhealthy";
    default:
      return "unknown";
  }
}

std::string PoolName(const corral::v1::Node& node) {
  return node.health() == corral::v1::HEALTH_UNHEALTHY ? "standby" : "active";
}

std::string FormatLatency(double ms) {
  if (ms <= 0) return "-";
  if (ms < 10) return absl::StrFormat("%.2fms", ms);
  if (ms < 1000) return absl::StrFormat("%.1fms", ms);
  return absl::StrFormat("%.2fs", ms / 1000);
}

std::string FormatBytes(int64_t bytes) {
  if (bytes <= 0) return "-";
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.1f %s", value, units[unit]);
}

std::string FormatNodeList(const corral::v1::ListNodesResponse& list) {
  if (list.nodes().empty()) return "no nodes registered\n";
  std::vector<std::vector<std::string>> rows;
  for (const NodeInfo& info : list.nodes()) {
    const auto& n = info.node();
    rows.push_back({n.name(), n.url(), AdminStateName(n.admin_state()), HealthName(n.health()),
                    absl::StrCat(n.priority()), absl::StrCat(n.weight() == 0 ? 1 : n.weight()),
                    Limit(n.max_parallel()), absl::StrCat(NumParallel(n)),
                    absl::StrCat(n.models_size()), absl::StrCat(n.loaded_models_size()),
                    FormatLatency(n.latency_ms()), absl::StrCat(info.in_flight())});
  }
  return RenderTable({"NAME", "URL", "STATE", "HEALTH", "PRIORITY", "WEIGHT", "MAX_PAR", "NUM_PAR",
                      "MODELS", "LOADED", "LATENCY", "INFLIGHT"},
                     rows);
}

std::string FormatNodeDetail(const NodeInfo& info) {
  const auto& n = info.node();
  std::vector<std::string> labels;
  std::map<std::string, std::string> sorted(n.labels().begin(), n.labels().end());
  for (const auto& [k, v] : sorted) labels.push_back(absl::StrCat(k, "=", v));
  std::string out = RenderFields({
      {"name", n.name()},
      {"url", n.url()},
      {"state", AdminStateName(n.admin_state())},
      {"health", absl::StrCat(HealthName(n.health()), " (", PoolName(n), " pool)")},
      {"version", Dash(n.version())},
      {"latency", FormatLatency(n.latency_ms())},
      {"in flight", absl::StrCat(info.in_flight())},
      {"passive failures", absl::StrCat(info.passive_failures())},
      {"priority", absl::StrCat(n.priority())},
      {"weight", absl::StrCat(n.weight() == 0 ? 1 : n.weight())},
      {"max parallel", n.max_parallel() == 0 ? "no limit" : absl::StrCat(n.max_parallel())},
      {"num parallel",
       n.num_parallel() == 0 ? "1 (default)" : absl::StrCat(n.num_parallel(), " per model")},
      {"max memory", n.max_memory_gb() == 0 ? "not set" : absl::StrCat(n.max_memory_gb(), " GB")},
      {"labels", labels.empty() ? "-" : absl::StrJoin(labels, ", ")},
      {"discovered", info.discovered() ? "yes" : "no"},
      {"created", Dash(info.created_at())},
      {"updated", Dash(info.updated_at())},
      {"last probe", Dash(info.last_probe_at())},
      {"last error", Dash(info.last_error())},
  });
  if (n.models().empty()) {
    out += "models: none\n";
  } else {
    out += "models:\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : n.models()) {
      bool loaded = false;
      for (const auto& l : n.loaded_models()) loaded = loaded || l.name() == m.name();
      rows.push_back({"  " + m.name(), FormatBytes(m.size()), m.digest().substr(0, 12),
                      loaded ? "loaded" : ""});
    }
    out += RenderTable({"  NAME", "SIZE", "DIGEST", "LOADED"}, rows);
  }
  if (!n.loaded_models().empty()) {
    out += "loaded:\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& l : n.loaded_models()) {
      rows.push_back({"  " + l.name(), FormatBytes(l.size_vram()), Dash(l.expires_at())});
    }
    out += RenderTable({"  NAME", "VRAM", "EXPIRES"}, rows);
  }
  return out;
}

std::string FormatNodeChange(const std::string& verb, const NodeInfo& info) {
  const auto& n = info.node();
  return absl::StrCat("node \"", n.name(), "\" ", verb, ": ", n.url(), ", ",
                      AdminStateName(n.admin_state()), ", ", HealthName(n.health()), "\n");
}

std::string FormatStrategy(const corral::v1::StrategyConfig& config) {
  const auto& r = config.retry();
  const auto& t = config.timeouts();
  return RenderFields({
      {"strategy", StrategyName(config.strategy())},
      {"max attempts", WithDefault(r.max_attempts(), 3, "")},
      {"eject after", WithDefault(r.eject_after_failures(), 3, " failures")},
      {"eject base", WithDefault(r.eject_base_ms(), 5000, " ms")},
      {"eject max", WithDefault(r.eject_max_ms(), 60000, " ms")},
      {"connect timeout", WithDefault(t.connect_ms(), 2000, " ms")},
      {"first byte timeout", WithDefault(t.first_byte_ms(), 600000, " ms")},
      {"idle timeout", WithDefault(t.idle_ms(), 300000, " ms")},
      {"queue", config.queue().disabled() ? "off (503 at once when every node is full)" : "on"},
      {"queue length", WithDefault(config.queue().max_length(), 1024, " requests")},
      {"queue wait", WithDefault(config.queue().max_wait_ms(), 30000, " ms")},
      {"placement rules", absl::StrCat(config.placement_size())},
      {"aliases", absl::StrCat(config.aliases_size())},
      {"model memory rules", absl::StrCat(config.model_memory_size())},
  });
}

std::string FormatPlacement(const corral::v1::StrategyConfig& config) {
  if (config.placement().empty()) return "no placement rules: every model may run on any node\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& rule : config.placement()) {
    std::map<std::string, std::string> sorted(rule.labels().begin(), rule.labels().end());
    std::vector<std::string> labels;
    for (const auto& [k, v] : sorted) labels.push_back(absl::StrCat(k, "=", v));
    rows.push_back({rule.pattern(), rule.hard() ? "hard" : "soft",
                    rule.nodes().empty() ? "-" : absl::StrJoin(rule.nodes(), ","),
                    labels.empty() ? "-" : absl::StrJoin(labels, ",")});
  }
  return RenderTable({"PATTERN", "MODE", "NODES", "LABELS"}, rows);
}

std::string FormatAliases(const corral::v1::StrategyConfig& config) {
  if (config.aliases().empty()) return "no model aliases\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : config.aliases()) rows.push_back({a.alias(), a.target()});
  return RenderTable({"ALIAS", "TARGET"}, rows);
}

std::string FormatModelMemory(const corral::v1::StrategyConfig& config) {
  if (config.model_memory().empty()) {
    return "no model memory rules: models' sizes come from the nodes\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : config.model_memory()) {
    rows.push_back({m.pattern(), absl::StrCat(m.memory_gb(), " GB")});
  }
  return RenderTable({"PATTERN", "MEMORY"}, rows);
}

std::string FormatFleetState(const corral::v1::FleetState& state) {
  int active = 0, standby = 0;
  std::vector<std::vector<std::string>> rows;
  for (const NodeInfo& info : state.nodes()) {
    const auto& n = info.node();
    (PoolName(n) == "active" ? active : standby)++;
    rows.push_back({n.name(), PoolName(n), AdminStateName(n.admin_state()), HealthName(n.health()),
                    FormatLatency(n.latency_ms()), absl::StrCat(info.in_flight()),
                    absl::StrCat(info.passive_failures()), ModelNames(n), LoadedNames(n)});
  }
  std::string out =
      absl::StrCat("snapshot version ", state.snapshot_version(), ", strategy ",
                   StrategyName(state.strategy().strategy()), ", ", state.nodes_size(),
                   state.nodes_size() == 1 ? " node (" : " nodes (", active, " active, ", standby,
                   " standby)\n");
  if (rows.empty()) return out;
  out += "\n";
  out += RenderTable(
      {"NAME", "POOL", "STATE", "HEALTH", "LATENCY", "INFLIGHT", "FAILURES", "MODELS", "LOADED"},
      rows);
  return out;
}

std::string FormatModels(const corral::v1::ListModelsResponse& models) {
  if (models.models().empty()) return "no models in the fleet\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : models.models()) {
    std::vector<std::string> nodes, loaded;
    int64_t size = 0;
    for (const auto& loc : m.locations()) {
      nodes.push_back(loc.node());
      if (loc.loaded()) loaded.push_back(loc.node());
      size = std::max(size, loc.size());
    }
    rows.push_back({m.name(), FormatBytes(size), absl::StrJoin(nodes, ","),
                    loaded.empty() ? "-" : absl::StrJoin(loaded, ",")});
  }
  return RenderTable({"MODEL", "SIZE", "NODES", "LOADED_ON"}, rows);
}

std::string FormatProxies(const corral::v1::ListProxiesResponse& proxies) {
  std::string out =
      absl::StrCat("snapshot version ", proxies.snapshot_version(), ", ", proxies.proxies_size(),
                   proxies.proxies_size() == 1 ? " proxy\n" : " proxies\n");
  if (proxies.proxies().empty()) return out;
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : proxies.proxies()) {
    std::string rejected = "-";
    if (p.rejected_version() != 0) {
      rejected = absl::StrCat(p.rejected_version(), " (", p.rejected_reason(), ")");
    }
    rows.push_back({p.id(), Dash(p.peer()), p.connected() ? "yes" : "no",
                    absl::StrCat(p.applied_version()),
                    p.applied_version() == proxies.snapshot_version() ? "yes" : "no", rejected,
                    Dash(p.last_report_at())});
  }
  out += "\n";
  out += RenderTable({"ID", "PEER", "CONNECTED", "APPLIED", "CURRENT", "REJECTED", "LAST_REPORT"},
                     rows);
  return out;
}

std::string FormatDiscovery(const corral::v1::DiscoveryConfig& config) {
  if (config.ranges().empty()) return "discovery off\n";
  std::vector<std::string> ranges;
  for (const auto& r : config.ranges()) {
    const std::string host =
        r.host().find(':') != std::string::npos ? absl::StrCat("[", r.host(), "]") : r.host();
    ranges.push_back(r.port_from() == r.port_to()
                         ? absl::StrCat(host, ":", r.port_from())
                         : absl::StrCat(host, ":", r.port_from(), "-", r.port_to()));
  }
  return RenderFields({
      {"ranges", absl::StrJoin(ranges, " ")},
      {"interval", WithDefault(config.interval_ms(), 30000, " ms")},
  });
}

namespace {

// One line on what the token policy means for the proxies.
std::string TokenMode(bool require_tokens, int64_t token_count) {
  if (token_count > 0) {
    return absl::StrCat("require_tokens: ", require_tokens ? "on" : "off",
                        " (closed: proxies require one of the tokens)\n");
  }
  if (require_tokens) {
    return "require_tokens: on (closed: no token is defined, so proxies refuse every request "
           "that needs one)\n";
  }
  return "require_tokens: off (OPEN: proxies serve every request without a token)\n";
}

}  // namespace

std::string FormatTokens(const corral::v1::ListTokensResponse& tokens) {
  const std::string mode = TokenMode(tokens.require_tokens(), tokens.tokens_size());
  if (tokens.tokens().empty()) return absl::StrCat("no inference tokens\n", mode);
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : tokens.tokens()) {
    rows.push_back({t.name(), t.sha256_hex().substr(0, 16),
                    t.models().empty() ? "all" : absl::StrJoin(t.models(), ",")});
  }
  return absl::StrCat(RenderTable({"NAME", "SHA256", "MODELS"}, rows), mode);
}

std::string FormatTokenPolicy(const corral::v1::TokenPolicy& policy) {
  return absl::StrCat(TokenMode(policy.require_tokens(), policy.token_count()), "snapshot version ",
                      policy.snapshot_version(), "\n");
}

std::string FormatTokenCreated(const corral::v1::CreateTokenResponse& created) {
  const auto& t = created.token();
  return absl::StrCat(
      "token \"", t.name(),
      "\" created (models: ", t.models().empty() ? "all" : absl::StrJoin(t.models(), ","),
      "; snapshot version ", created.snapshot_version(), ")\n", created.token_text(),
      "\nThis is the only time the token is shown: store it now.\n");
}

std::string FormatPullProgress(const corral::v1::PullProgress& p) {
  std::string line = absl::StrCat(p.node(), ": ");
  if (!p.error().empty()) return absl::StrCat(line, "error: ", p.error(), "\n");
  line += p.status();
  if (p.total() > 0) {
    const double pct = 100.0 * static_cast<double>(p.completed()) / static_cast<double>(p.total());
    absl::StrAppend(&line, absl::StrFormat(" %3.0f%% (%s / %s)", pct,
                                           p.completed() > 0 ? FormatBytes(p.completed()) : "0 B",
                                           FormatBytes(p.total())));
  }
  return line + "\n";
}

std::string FormatUsage(const corral::v1::GetUsageResponse& usage) {
  std::string window = "all usage kept";
  if (usage.window_start() > 0) {
    const std::time_t start = static_cast<std::time_t>(usage.window_start());
    std::tm tm{};
    gmtime_r(&start, &tm);
    char buf[64];
    std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
    window = absl::StrCat("usage since ", buf);
  }
  const std::string& by = usage.by();
  std::string out =
      absl::StrCat(window, ", by ", by == "all" || by.empty() ? "token, model and node" : by, "\n");
  if (usage.rows().empty()) return out + "no requests recorded\n";
  const bool token = by == "token" || by == "all" || by.empty();
  const bool model = by == "model" || by == "all" || by.empty();
  const bool node = by == "node" || by == "all" || by.empty();
  std::vector<std::string> headers;
  if (token) headers.push_back("TOKEN");
  if (model) headers.push_back("MODEL");
  if (node) headers.push_back("NODE");
  for (const char* h : {"REQUESTS", "ERRORS", "INPUT_TOKENS", "OUTPUT_TOKENS"}) {
    headers.push_back(h);
  }
  auto row_of = [&](const corral::v1::UsageRow& r, bool total) {
    std::vector<std::string> row;
    if (token) row.push_back(total ? "TOTAL" : r.token().empty() ? "(none)" : r.token());
    if (model) row.push_back(total && !token ? "TOTAL" : total ? "" : Dash(r.model()));
    if (node) row.push_back(total && !token && !model ? "TOTAL" : total ? "" : Dash(r.node()));
    for (uint64_t n : {r.requests(), r.errors(), r.input_tokens(), r.output_tokens()}) {
      row.push_back(absl::StrCat(n));
    }
    return row;
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : usage.rows()) rows.push_back(row_of(r, false));
  rows.push_back(row_of(usage.total(), true));
  out += "\n";
  out += RenderTable(headers, rows);
  return out;
}

}  // namespace corral::ctl
