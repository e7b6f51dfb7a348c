#include "ctl/args.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/duration.h"

namespace corral::ctl {
namespace {

using corral::v1::Strategy;

// ---- the command table: usage lines and help texts, one place for both ----

struct CommandSpec {
  const char* path;   // command words, e.g. "node add"
  const char* usage;  // everything after "corralctl "
  const char* summary;
  const char* details;  // options and notes, may be empty
};

constexpr char kNodeFlags[] =
    "  --priority N         tier for the priority strategy; lower is preferred (default 0)\n"
    "  --weight N           share under the weighted strategy (0 or unset = 1)\n"
    "  --max-parallel N     most concurrent requests a proxy sends the node (0 = no limit)\n"
    "  --max-memory-gb G    memory budget of the node in GB (0 = not set)\n"
    "  --num-parallel N     requests the node runs at once per loaded model, its\n"
    "                       OLLAMA_NUM_PARALLEL (0 = default 1)\n"
    "  --label K=V          set a label; repeatable\n";

const CommandSpec kCommands[] = {
    {"node add",
     "node add NAME URL [--priority N] [--weight N] [--max-parallel N] [--max-memory-gb G] "
     "[--num-parallel N] [--label K=V]...",
     "register an Ollama node",
     "NAME is [A-Za-z0-9_.-]{1,64}; URL is http://host:port (or host:port).\n"
     "The node is probed at once and reaches every proxy with the next snapshot.\n"},
    {"node list", "node list", "list every node with its state, health and load", ""},
    {"node get", "node get NAME", "show one node in full: limits, labels, models, last probe", ""},
    {"node update",
     "node update NAME [--url URL] [--priority N] [--weight N] [--max-parallel N] "
     "[--max-memory-gb G] [--num-parallel N] [--label K=V]... [--remove-label K]...",
     "change a node's settings; only the options given change",
     "  --url URL            move the node to a new address (its health is re-probed)\n"
     "  --remove-label K     drop a label; repeatable\n"},
    {"node remove", "node remove NAME", "remove a node from the fleet", ""},
    {"node drain", "node drain NAME",
     "let the node finish its in-flight requests and take no new ones", ""},
    {"node enable", "node enable NAME", "let the node take requests again", ""},
    {"node disable", "node disable NAME", "take the node out of routing at once", ""},
    {"strategy get", "strategy get",
     "show the routing strategy, the retry, timeout and queue policy, and the routing rules' "
     "counts",
     ""},
    {"strategy set",
     "strategy set [NAME] [--max-attempts N] [--connect-timeout-ms N] [--first-byte-timeout-ms N] "
     "[--idle-timeout-ms N] [--eject-after N] [--queue-length N] [--queue-wait DURATION] "
     "[--queue on|off]",
     "choose the routing strategy and, optionally, the retry, timeout and queue policy",
     "NAME is one of: least_active, lowest_latency, round_robin, weighted, priority; without it\n"
     "the strategy stays and only the options given change.\n"
     "  --max-attempts N           nodes one request may try, the first included (0 = default 3)\n"
     "  --connect-timeout-ms N     TCP connect to a node (0 = default 2000)\n"
     "  --first-byte-timeout-ms N  request sent to response headers (0 = default 600000)\n"
     "  --idle-timeout-ms N        longest silence inside a response (0 = default 300000)\n"
     "  --eject-after N            consecutive failures before a proxy ejects a node "
     "(0 = default 3)\n"
     "  --queue-length N           requests one proxy holds waiting for a free slot when every\n"
     "                             node that could serve them is full (0 = default 1024)\n"
     "  --queue-wait DURATION      longest wait in that queue before a 503 with Retry-After:\n"
     "                             500ms, 30s, 2m (0 = default 30s; at most 1h)\n"
     "  --queue on|off             off: answer 503 at once when every node is full\n"
     "Policy options not given keep their current values.\n"},
    {"placement list", "placement list", "list the placement rules: where each model pattern runs",
     ""},
    {"placement add", "placement add PATTERN (--node NAME | --label K=V)... [--hard | --soft]",
     "run models matching PATTERN on the nodes named or labelled",
     "PATTERN is a glob over model names in lower case: * any run of characters, ? one\n"
     "(llama3*, *:70b*, hf.co/*). It matches a model's full name\n"
     "(registry.ollama.ai/library/llama3:8b) or its short form (llama3:8b).\n"
     "  --node NAME   a node the models go to; repeatable\n"
     "  --label K=V   nodes carrying this label; repeatable (a node must carry every one)\n"
     "  --hard        only these nodes serve the models\n"
     "  --soft        prefer these nodes, use others when they cannot serve (the default)\n"
     "A rule for a PATTERN already listed is replaced where it stands. Rules apply in order: the\n"
     "first matching hard rule decides.\n"},
    {"placement remove", "placement remove PATTERN", "remove the placement rule for PATTERN", ""},
    {"alias list", "alias list", "list the fleet-wide model aliases", ""},
    {"alias set", "alias set ALIAS TARGET", "route requests for model ALIAS to model TARGET",
     "Both are model names (llama3, llama3:8b, hf.co/ns/model:q4). The request body reaches the\n"
     "node unchanged, so the nodes must hold TARGET. An alias may not point at another alias.\n"
     "Setting an ALIAS already listed replaces its target.\n"},
    {"alias remove", "alias remove ALIAS", "remove a model alias", ""},
    {"model-memory list", "model-memory list",
     "list the memory rules: what a model needs when loaded, by name pattern", ""},
    {"model-memory set", "model-memory set PATTERN GB",
     "say how much memory models matching PATTERN need when loaded",
     "For models whose size the nodes do not report, or to override it. PATTERN is a glob as\n"
     "in 'placement add'; the first matching rule wins. GB is above 0 and at most 4096.\n"
     "Setting a PATTERN already listed replaces its size.\n"},
    {"model-memory remove", "model-memory remove PATTERN", "remove the memory rule for PATTERN",
     ""},
    {"state", "state",
     "every node: pool, health, latency, in-flight, models, loaded models; and the snapshot "
     "version",
     ""},
    {"models", "models", "the fleet-wide model list and where each model lives", ""},
    {"proxies", "proxies", "connected proxies and the snapshot version each applied", ""},
    {"pull", "pull MODEL [--node NAME | --all] [--insecure]",
     "pull a model onto one node or every enabled node, streaming progress",
     "Without --node the model is pulled onto every enabled node (--all).\n"
     "Exits 1 if the pull failed on any node.\n"},
    {"discovery get", "discovery get", "show the port ranges scanned for new nodes", ""},
    {"discovery set", "discovery set HOST:FROM-TO [HOST:FROM-TO]... [--interval-ms N]",
     "scan port ranges; nodes that answer like Ollama join the fleet",
     "HOST:PORT scans a single port; IPv6 hosts go in brackets: [::1]:11434-11440.\n"
     "  --interval-ms N      time between two scans (0 = default 30000)\n"},
    {"discovery off", "discovery off", "stop scanning for new nodes", ""},
    {"token create", "token create NAME [--model M]... [--value TEXT]",
     "create an inference token the proxies accept on the Ollama API",
     "The token text is printed once and stored nowhere (only its SHA-256 reaches the registry\n"
     "and the proxies). With no token defined, proxies are open, like Ollama itself.\n"
     "  --model M            a model the token may use; repeatable (default: every model)\n"
     "  --value TEXT         accept this text as the token (default: 32 random bytes as hex)\n"},
    {"token list", "token list",
     "list inference tokens (names, hashes, models) and whether the fleet is open", ""},
    {"token revoke", "token revoke NAME", "revoke an inference token", ""},
    {"token require", "token require on|off",
     "whether proxies require a token even when none is defined",
     "Creating the first token turns it on, so revoking the last token keeps the fleet closed\n"
     "(every request that needs a token is refused). 'off' with tokens defined changes nothing\n"
     "for the proxies (the tokens still apply); 'off' with no token opens the fleet.\n"},
    {"usage", "usage [--by token|model|node] [--since DURATION]",
     "requests and tokens the proxies counted, per token, model and node",
     "  --by KEY          sum by token, model or node (default: one row per token, model and\n"
     "                    node)\n"
     "  --since DURATION  how far back: 30m, 24h, 7d, 4w (default 24h); 'all' for everything\n"
     "                    kept. Whole hours are counted: the window starts at the top of the\n"
     "                    hour DURATION ago.\n"
     "Requests without a token (an open fleet) show as '(none)'.\n"},
};

constexpr char kGlobalHelp[] =
    "Global options (before or after the command):\n"
    "  --control ADDR   control plane address (default $CORRAL_CONTROL, else 127.0.0.1:11400)\n"
    "  --token T        admin token (default $CORRAL_TOKEN, else DATA_DIR/admin.token)\n"
    "  --data-dir DIR   where to find admin.token (default $CORRAL_DATA_DIR, else ./var)\n"
    "  --tls-ca FILE    use TLS, trusting this PEM CA for the control plane's certificate\n"
    "                   (default $CORRAL_TLS_CA; none = plaintext)\n"
    "  --tls-cert FILE  client certificate for a control plane that requires one (mTLS)\n"
    "                   (default $CORRAL_TLS_CERT)\n"
    "  --tls-key FILE   private key of --tls-cert (default $CORRAL_TLS_KEY)\n"
    "  --json           machine-readable JSON output (see docs/corralctl.md)\n"
    "  -h, --help       help for corralctl or for a command\n"
    "Exit status: 0 ok, 1 the call failed, 2 usage error.\n";

const CommandSpec* FindSpec(const std::string& path) {
  for (const auto& spec : kCommands) {
    if (path == spec.path) return &spec;
  }
  return nullptr;
}

bool IsGroup(const std::string& word) {
  return word == "node" || word == "strategy" || word == "discovery" || word == "token" ||
         word == "placement" || word == "alias" || word == "model-memory";
}

std::string CommandHelp(const CommandSpec& spec) {
  return absl::StrCat("usage: corralctl [global options] ", spec.usage, "\n\n", spec.summary, "\n",
                      spec.details[0] ? "\n" : "", spec.details, "\n", kGlobalHelp);
}

// Help for a group ("node") or for everything (empty prefix).
std::string ListHelp(const std::string& group) {
  std::string out;
  if (group.empty()) {
    out =
        "usage: corralctl [--control ADDR] [--token T] [--tls-ca F] [--json] <command>\n\n"
        "Manage a Corral fleet through corral-control's Admin API.\n\nCommands:\n";
  } else {
    out = absl::StrCat("usage: corralctl [global options] ", group, " <command>\n\nCommands:\n");
  }
  for (const auto& spec : kCommands) {
    if (!group.empty() && !absl::StartsWith(spec.path, group + " ")) continue;
    absl::StrAppend(&out, "  ", spec.usage, "\n      ", spec.summary, "\n");
  }
  absl::StrAppend(&out, "\nRun 'corralctl <command> --help' for a command's options.\n\n",
                  kGlobalHelp);
  return out;
}

ParseOutcome UsageError(const std::string& message, const std::string& path) {
  ParseOutcome outcome;
  outcome.kind = ParseOutcome::Kind::kUsageError;
  const CommandSpec* spec = FindSpec(path);
  std::string usage;
  if (spec != nullptr) {
    usage = absl::StrCat("usage: corralctl ", spec->usage, "\n");
  } else if (IsGroup(path)) {
    for (const auto& s : kCommands) {
      if (absl::StartsWith(s.path, path + " "))
        absl::StrAppend(&usage, "       corralctl ", s.usage, "\n");
    }
    usage.replace(0, 6, "usage:");
  } else {
    usage = "usage: corralctl [--control ADDR] [--token T] [--json] <command> [args]\n";
  }
  outcome.text = absl::StrCat("corralctl: ", message, "\n", usage, "Run 'corralctl ",
                              path.empty() ? "" : path + " ", "--help' for more.\n");
  return outcome;
}

// ---- command options ----

struct FlagSpec {
  const char* name;  // with the leading "--"
  bool takes_value;
};

struct ParsedFlags {
  std::vector<std::string> positionals;
  std::vector<std::pair<std::string, std::string>> flags;  // in order, repeats kept

  bool Has(const std::string& name) const {
    for (const auto& [n, v] : flags) {
      if (n == name) return true;
    }
    return false;
  }
  std::optional<std::string> Last(const std::string& name) const {
    std::optional<std::string> value;
    for (const auto& [n, v] : flags) {
      if (n == name) value = v;
    }
    return value;
  }
  std::vector<std::string> All(const std::string& name) const {
    std::vector<std::string> values;
    for (const auto& [n, v] : flags) {
      if (n == name) values.push_back(v);
    }
    return values;
  }
};

// Splits a command's arguments into positionals and known flags (`--flag value` or
// `--flag=value`). An empty string means success; otherwise the message of the usage error.
std::string SplitFlags(const std::vector<std::string>& args, const std::vector<FlagSpec>& known,
                       ParsedFlags* parsed) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-' || arg == "-") {
      parsed->positionals.push_back(arg);
      continue;
    }
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (auto eq = arg.find('='); eq != std::string::npos && absl::StartsWith(arg, "--")) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const FlagSpec* spec = nullptr;
    for (const auto& f : known) {
      if (name == f.name) spec = &f;
    }
    if (spec == nullptr) {
      // A negative number is a value, not an option: let the positional checks judge it.
      if (arg.size() > 1 && (std::isdigit(static_cast<unsigned char>(arg[1])) != 0)) {
        parsed->positionals.push_back(arg);
        continue;
      }
      return absl::StrCat("unknown option ", name);
    }
    if (!spec->takes_value) {
      if (inline_value) return absl::StrCat(name, " takes no value");
      parsed->flags.emplace_back(name, "");
      continue;
    }
    if (inline_value) {
      parsed->flags.emplace_back(name, *inline_value);
    } else if (i + 1 < args.size()) {
      parsed->flags.emplace_back(name, args[++i]);
    } else {
      return absl::StrCat(name, " needs a value");
    }
  }
  return "";
}

template <typename Int>
std::string ParseInt(const std::string& flag, const std::string& text, Int* out) {
  Int value{};
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (text.empty() || ec == std::errc::result_out_of_range) {
    if (ec == std::errc::result_out_of_range) {
      return absl::StrCat(flag, ": ", text, " is out of range");
    }
    return absl::StrCat(flag, " needs a whole number, got '", text, "'");
  }
  if (ec != std::errc() || ptr != end) {
    return absl::StrCat(flag, " needs a whole number, got '", text, "'");
  }
  *out = value;
  return "";
}

std::string ParseDouble(const std::string& flag, const std::string& text, double* out) {
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(value)) {
    return absl::StrCat(flag, " needs a number, got '", text, "'");
  }
  *out = value;
  return "";
}

std::string ParseLabel(const std::string& text, std::string* key, std::string* value) {
  auto eq = text.find('=');
  if (eq == std::string::npos) {
    return absl::StrCat("--label wants KEY=VALUE, got '", text, "'");
  }
  *key = text.substr(0, eq);
  *value = text.substr(eq + 1);
  return "";
}

std::string ParseRange(const std::string& text, corral::v1::DiscoveryRange* range) {
  const std::string bad = absl::StrCat("a range is HOST:FROM-TO or HOST:PORT, got '", text, "'");
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad;
  std::string host = text.substr(0, colon);
  std::string ports = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return absl::StrCat(bad, " (put an IPv6 host in brackets)");
  }
  std::string from_text = ports, to_text = ports;
  if (auto dash = ports.find('-'); dash != std::string::npos) {
    from_text = ports.substr(0, dash);
    to_text = ports.substr(dash + 1);
  }
  int32_t from = 0, to = 0;
  if (!ParseInt<int32_t>("port", from_text, &from).empty() ||
      !ParseInt<int32_t>("port", to_text, &to).empty()) {
    return bad;
  }
  range->set_host(host);
  range->set_port_from(from);
  range->set_port_to(to);
  return "";
}

const std::vector<FlagSpec> kNodeAddFlags = {{"--priority", true},     {"--weight", true},
                                             {"--max-parallel", true}, {"--max-memory-gb", true},
                                             {"--num-parallel", true}, {"--label", true}};

// The flags shared by `node add` and `node update`, applied through setters so one parser
// serves both requests.
template <typename Request>
std::string ApplyNodeFlags(const ParsedFlags& flags, Request* req,
                           google::protobuf::Map<std::string, std::string>* labels) {
  std::string err;
  if (auto v = flags.Last("--priority")) {
    int32_t n = 0;
    if (!(err = ParseInt(std::string("--priority"), *v, &n)).empty()) return err;
    req->set_priority(n);
  }
  if (auto v = flags.Last("--weight")) {
    int32_t n = 0;
    if (!(err = ParseInt(std::string("--weight"), *v, &n)).empty()) return err;
    req->set_weight(n);
  }
  if (auto v = flags.Last("--max-parallel")) {
    int32_t n = 0;
    if (!(err = ParseInt(std::string("--max-parallel"), *v, &n)).empty()) return err;
    req->set_max_parallel(n);
  }
  if (auto v = flags.Last("--max-memory-gb")) {
    double g = 0;
    if (!(err = ParseDouble("--max-memory-gb", *v, &g)).empty()) return err;
    req->set_max_memory_gb(g);
  }
  if (auto v = flags.Last("--num-parallel")) {
    int32_t n = 0;
    if (!(err = ParseInt(std::string("--num-parallel"), *v, &n)).empty()) return err;
    req->set_num_parallel(n);
  }
  for (const auto& text : flags.All("--label")) {
    std::string key, value;
    if (!(err = ParseLabel(text, &key, &value)).empty()) return err;
    (*labels)[key] = value;
  }
  return "";
}

ParseOutcome Run(const GlobalOptions& global, CommandKind kind) {
  ParseOutcome outcome;
  outcome.kind = ParseOutcome::Kind::kRun;
  outcome.invocation.global = global;
  outcome.invocation.kind = kind;
  return outcome;
}

ParseOutcome Help(const std::string& text) {
  ParseOutcome outcome;
  outcome.kind = ParseOutcome::Kind::kHelp;
  outcome.text = text;
  return outcome;
}

// Parses one command: `path` names it ("node add"), `args` are the words after it.
ParseOutcome ParseCommand(const GlobalOptions& global, const std::string& path,
                          const std::vector<std::string>& args) {
  auto expect = [&](const std::vector<FlagSpec>& known, size_t min_pos, size_t max_pos,
                    ParsedFlags* flags, std::string* err) {
    *err = SplitFlags(args, known, flags);
    if (!err->empty()) return false;
    const size_t n = flags->positionals.size();
    if (n < min_pos) {
      *err = "missing arguments";
      return false;
    }
    if (n > max_pos) {
      *err = absl::StrCat("unexpected argument '", flags->positionals[max_pos], "'");
      return false;
    }
    return true;
  };
  ParsedFlags flags;
  std::string err;

  // Commands that take one node name and nothing else.
  static const std::map<std::string, CommandKind> kByName = {
      {"node get", CommandKind::kNodeGet},         {"node remove", CommandKind::kNodeRemove},
      {"node drain", CommandKind::kNodeDrain},     {"node enable", CommandKind::kNodeEnable},
      {"node disable", CommandKind::kNodeDisable},
  };
  static const std::map<std::string, CommandKind> kNoArgs = {
      {"node list", CommandKind::kNodeList},
      {"strategy get", CommandKind::kStrategyGet},
      {"state", CommandKind::kState},
      {"models", CommandKind::kModels},
      {"proxies", CommandKind::kProxies},
      {"discovery get", CommandKind::kDiscoveryGet},
      {"discovery off", CommandKind::kDiscoveryOff},
      {"token list", CommandKind::kTokenList},
      {"placement list", CommandKind::kPlacementList},
      {"alias list", CommandKind::kAliasList},
      {"model-memory list", CommandKind::kModelMemoryList},
  };

  if (auto it = kNoArgs.find(path); it != kNoArgs.end()) {
    if (!expect({}, 0, 0, &flags, &err)) return UsageError(err, path);
    return Run(global, it->second);
  }
  if (auto it = kByName.find(path); it != kByName.end()) {
    if (!expect({}, 1, 1, &flags, &err)) {
      return UsageError(err == "missing arguments" ? "missing NAME" : err, path);
    }
    ParseOutcome out = Run(global, it->second);
    out.invocation.node_name = flags.positionals[0];
    return out;
  }
  if (path == "token revoke") {
    if (!expect({}, 1, 1, &flags, &err)) {
      return UsageError(err == "missing arguments" ? "missing NAME" : err, path);
    }
    ParseOutcome out = Run(global, CommandKind::kTokenRevoke);
    out.invocation.token_name = flags.positionals[0];
    return out;
  }
  if (path == "token require") {
    if (!expect({}, 1, 1, &flags, &err)) {
      return UsageError(err == "missing arguments" ? "missing on or off" : err, path);
    }
    const std::string& word = flags.positionals[0];
    if (word != "on" && word != "off") {
      return UsageError(absl::StrCat("expected on or off, got '", word, "'"), path);
    }
    ParseOutcome out = Run(global, CommandKind::kTokenRequire);
    out.invocation.require_tokens = word == "on";
    return out;
  }
  if (path == "usage") {
    if (!expect({{"--by", true}, {"--since", true}}, 0, 0, &flags, &err)) {
      return UsageError(err, path);
    }
    ParseOutcome out = Run(global, CommandKind::kUsage);
    auto& req = out.invocation.usage;
    if (auto by = flags.Last("--by")) {
      if (*by != "token" && *by != "model" && *by != "node" && *by != "all") {
        return UsageError(absl::StrCat("--by takes token, model or node, got '", *by, "'"), path);
      }
      if (*by != "all") req.set_by(*by);
    }
    req.set_since_seconds(24 * 3600);
    if (auto since = flags.Last("--since")) {
      if (*since == "all") {
        req.set_since_seconds(0);
      } else if (auto seconds = ParseDurationSeconds(*since)) {
        req.set_since_seconds(*seconds);
      } else {
        return UsageError(
            absl::StrCat("--since takes a duration like 30m, 24h or 7d, got '", *since, "'"), path);
      }
    }
    return out;
  }
  if (path == "token create") {
    if (!expect({{"--model", true}, {"--value", true}}, 1, 1, &flags, &err)) {
      return UsageError(err == "missing arguments" ? "missing NAME" : err, path);
    }
    ParseOutcome out = Run(global, CommandKind::kTokenCreate);
    auto& req = out.invocation.token;
    req.set_name(flags.positionals[0]);
    for (const auto& model : flags.All("--model")) {
      if (model.empty()) return UsageError("--model needs a model name", path);
      req.add_models(model);
    }
    if (auto v = flags.Last("--value")) {
      if (v->empty()) return UsageError("--value needs the token text", path);
      req.set_token(*v);
    }
    return out;
  }
  if (path == "node add") {
    if (!expect(kNodeAddFlags, 2, 2, &flags, &err)) {
      if (err == "missing arguments") {
        err = flags.positionals.empty() ? "missing NAME and URL" : "missing URL";
      }
      return UsageError(err, path);
    }
    ParseOutcome out = Run(global, CommandKind::kNodeAdd);
    auto& req = out.invocation.create;
    req.set_name(flags.positionals[0]);
    req.set_url(flags.positionals[1]);
    if (!(err = ApplyNodeFlags(flags, &req, req.mutable_labels())).empty()) {
      return UsageError(err, path);
    }
    return out;
  }
  if (path == "node update") {
    std::vector<FlagSpec> known = kNodeAddFlags;
    known.push_back({"--url", true});
    known.push_back({"--remove-label", true});
    if (!expect(known, 1, 1, &flags, &err)) {
      return UsageError(err == "missing arguments" ? "missing NAME" : err, path);
    }
    if (flags.flags.empty()) {
      return UsageError("nothing to change: give at least one option", path);
    }
    ParseOutcome out = Run(global, CommandKind::kNodeUpdate);
    auto& req = out.invocation.update;
    req.set_name(flags.positionals[0]);
    if (auto v = flags.Last("--url")) req.set_url(*v);
    if (!(err = ApplyNodeFlags(flags, &req, req.mutable_set_labels())).empty()) {
      return UsageError(err, path);
    }
    for (const auto& key : flags.All("--remove-label")) req.add_remove_labels(key);
    return out;
  }
  if (path == "strategy set") {
    const std::vector<FlagSpec> known = {{"--max-attempts", true},
                                         {"--connect-timeout-ms", true},
                                         {"--first-byte-timeout-ms", true},
                                         {"--idle-timeout-ms", true},
                                         {"--eject-after", true},
                                         {"--queue-length", true},
                                         {"--queue-wait", true},
                                         {"--queue", true}};
    if (!expect(known, 0, 1, &flags, &err)) return UsageError(err, path);
    if (flags.positionals.empty() && flags.flags.empty()) {
      return UsageError(
          absl::StrCat("missing NAME (", ValidStrategyNames(), ") or an option to change"), path);
    }
    ParseOutcome out = Run(global, CommandKind::kStrategySet);
    if (!flags.positionals.empty()) {
      auto strategy = ParseStrategyName(flags.positionals[0]);
      if (!strategy) {
        return UsageError(absl::StrCat("unknown strategy '", flags.positionals[0],
                                       "'; valid strategies: ", ValidStrategyNames()),
                          path);
      }
      out.invocation.strategy = *strategy;
    }
    auto& o = out.invocation.strategy_overrides;
    auto int32_flag = [&](const char* name, std::optional<int32_t>* slot) {
      if (auto v = flags.Last(name)) {
        int32_t n = 0;
        if (std::string e = ParseInt(std::string(name), *v, &n); !e.empty()) return e;
        *slot = n;
      }
      return std::string();
    };
    auto int64_flag = [&](const char* name, std::optional<int64_t>* slot) {
      if (auto v = flags.Last(name)) {
        int64_t n = 0;
        if (std::string e = ParseInt(std::string(name), *v, &n); !e.empty()) return e;
        *slot = n;
      }
      return std::string();
    };
    for (const std::string& e : {int32_flag("--max-attempts", &o.max_attempts),
                                 int32_flag("--eject-after", &o.eject_after_failures),
                                 int64_flag("--connect-timeout-ms", &o.connect_ms),
                                 int64_flag("--first-byte-timeout-ms", &o.first_byte_ms),
                                 int64_flag("--idle-timeout-ms", &o.idle_ms),
                                 int32_flag("--queue-length", &o.queue_length)}) {
      if (!e.empty()) return UsageError(e, path);
    }
    if (auto v = flags.Last("--queue-wait")) {
      o.queue_wait_ms = ParseDurationMs(*v);
      if (!o.queue_wait_ms) {
        return UsageError(absl::StrCat("--queue-wait takes a duration like 500ms, 30s or 2m "
                                       "(0 = the default), got '",
                                       *v, "'"),
                          path);
      }
    }
    if (auto v = flags.Last("--queue")) {
      if (*v != "on" && *v != "off") {
        return UsageError(absl::StrCat("--queue takes on or off, got '", *v, "'"), path);
      }
      o.queue_disabled = *v == "off";
    }
    return out;
  }
  if (path == "placement add") {
    const std::vector<FlagSpec> known = {
        {"--node", true}, {"--label", true}, {"--hard", false}, {"--soft", false}};
    if (!expect(known, 1, 1, &flags, &err)) {
      return UsageError(err == "missing arguments" ? "missing PATTERN" : err, path);
    }
    if (flags.Has("--hard") && flags.Has("--soft")) {
      return UsageError("--hard and --soft exclude each other", path);
    }
    ParseOutcome out = Run(global, CommandKind::kPlacementAdd);
    auto& rule = out.invocation.placement_rule;
    rule.set_pattern(flags.positionals[0]);
    for (const auto& node : flags.All("--node")) {
      if (node.empty()) return UsageError("--node needs a node name", path);
      rule.add_nodes(node);
    }
    for (const auto& text : flags.All("--label")) {
      std::string key, value;
      if (!(err = ParseLabel(text, &key, &value)).empty()) return UsageError(err, path);
      (*rule.mutable_labels())[key] = value;
    }
    if (rule.nodes().empty() && rule.labels().empty()) {
      return UsageError("give at least one --node NAME or --label K=V", path);
    }
    rule.set_hard(flags.Has("--hard"));
    return out;
  }
  if (path == "alias set") {
    if (!expect({}, 2, 2, &flags, &err)) {
      if (err == "missing arguments") {
        err = flags.positionals.empty() ? "missing ALIAS and TARGET" : "missing TARGET";
      }
      return UsageError(err, path);
    }
    ParseOutcome out = Run(global, CommandKind::kAliasSet);
    out.invocation.alias.set_alias(flags.positionals[0]);
    out.invocation.alias.set_target(flags.positionals[1]);
    return out;
  }
  if (path == "model-memory set") {
    if (!expect({}, 2, 2, &flags, &err)) {
      if (err == "missing arguments") {
        err = flags.positionals.empty() ? "missing PATTERN and GB" : "missing GB";
      }
      return UsageError(err, path);
    }
    ParseOutcome out = Run(global, CommandKind::kModelMemorySet);
    double gb = 0;
    if (!(err = ParseDouble("GB", flags.positionals[1], &gb)).empty()) {
      return UsageError(err, path);
    }
    out.invocation.memory_rule.set_pattern(flags.positionals[0]);
    out.invocation.memory_rule.set_memory_gb(gb);
    return out;
  }
  static const std::map<std::string, std::pair<CommandKind, const char*>> kRemoves = {
      {"placement remove", {CommandKind::kPlacementRemove, "PATTERN"}},
      {"alias remove", {CommandKind::kAliasRemove, "ALIAS"}},
      {"model-memory remove", {CommandKind::kModelMemoryRemove, "PATTERN"}},
  };
  if (auto it = kRemoves.find(path); it != kRemoves.end()) {
    if (!expect({}, 1, 1, &flags, &err)) {
      return UsageError(
          err == "missing arguments" ? absl::StrCat("missing ", it->second.second) : err, path);
    }
    ParseOutcome out = Run(global, it->second.first);
    out.invocation.rule_key = flags.positionals[0];
    return out;
  }
  if (path == "pull") {
    if (!expect({{"--node", true}, {"--all", false}, {"--insecure", false}}, 1, 1, &flags, &err)) {
      return UsageError(err == "missing arguments" ? "missing MODEL" : err, path);
    }
    auto node = flags.Last("--node");
    if (node && flags.Has("--all")) {
      return UsageError("--node and --all exclude each other", path);
    }
    if (node && node->empty()) return UsageError("--node needs a node name", path);
    ParseOutcome out = Run(global, CommandKind::kPull);
    auto& req = out.invocation.pull;
    req.set_model(flags.positionals[0]);
    if (node) {
      req.set_node(*node);
    } else {
      req.set_all(true);
    }
    req.set_insecure(flags.Has("--insecure"));
    return out;
  }
  if (path == "discovery set") {
    if (!expect({{"--interval-ms", true}}, 1, SIZE_MAX, &flags, &err)) {
      return UsageError(err == "missing arguments" ? "missing HOST:FROM-TO" : err, path);
    }
    ParseOutcome out = Run(global, CommandKind::kDiscoverySet);
    auto& req = out.invocation.discovery;
    for (const auto& text : flags.positionals) {
      if (!(err = ParseRange(text, req.add_ranges())).empty()) return UsageError(err, path);
    }
    if (auto v = flags.Last("--interval-ms")) {
      int64_t n = 0;
      if (!(err = ParseInt(std::string("--interval-ms"), *v, &n)).empty()) {
        return UsageError(err, path);
      }
      req.set_interval_ms(n);
    }
    return out;
  }
  return UsageError(absl::StrCat("unknown command '", path, "'"), "");
}

}  // namespace

std::optional<int64_t> ParseDurationMs(const std::string& text) {
  if (text == "0") return 0;
  size_t unit_start = text.find_first_not_of("0123456789");
  if (unit_start == 0 || unit_start == std::string::npos || unit_start > 9) return std::nullopt;
  const std::string unit = text.substr(unit_start);
  int64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60 * 1000;
  } else if (unit == "h") {
    scale = 3600 * 1000;
  } else {
    return std::nullopt;
  }
  const int64_t n = std::stoll(text.substr(0, unit_start));
  if (n <= 0) return std::nullopt;
  return n * scale;
}

std::optional<Strategy> ParseStrategyName(const std::string& name) {
  if (name == "least_active") return corral::v1::STRATEGY_LEAST_ACTIVE;
  if (name == "lowest_latency") return corral::v1::STRATEGY_LOWEST_LATENCY;
  if (name == "round_robin") return corral::v1::STRATEGY_ROUND_ROBIN;
  if (name == "weighted") return corral::v1::STRATEGY_WEIGHTED;
  if (name == "priority") return corral::v1::STRATEGY_PRIORITY;
  return std::nullopt;
}

std::string StrategyName(Strategy strategy) {
  switch (strategy) {
    case corral::v1::STRATEGY_UNSPECIFIED:
    case corral::v1::STRATEGY_LEAST_ACTIVE:
      return "least_active";
    case corral::v1::STRATEGY_LOWEST_LATENCY:
      return "lowest_latency";
    case corral::v1::STRATEGY_ROUND_ROBIN:
      return "round_robin";
    case corral::v1::STRATEGY_WEIGHTED:
      return "weighted";
    case corral::v1::STRATEGY_PRIORITY:
      return "priority";
    default:
      return absl::StrCat("unknown(", static_cast<int>(strategy), ")");
  }
}

std::string ValidStrategyNames() {
  return "least_active, lowest_latency, round_robin, weighted, priority";
}

ParseOutcome ParseArgs(const std::vector<std::string>& args) {
  GlobalOptions global;
  bool help = false;
  std::vector<std::string> words;  // everything that is not a global option
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (absl::StartsWith(arg, "--")) {
      if (auto eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        inline_value = arg.substr(eq + 1);
      }
    }
    std::optional<std::string>* slot = nullptr;
    if (name == "--control") slot = &global.control;
    if (name == "--token") slot = &global.token;
    if (name == "--data-dir") slot = &global.data_dir;
    if (name == "--tls-ca") slot = &global.tls_ca;
    if (name == "--tls-cert") slot = &global.tls_cert;
    if (name == "--tls-key") slot = &global.tls_key;
    if (slot != nullptr) {
      if (inline_value) {
        *slot = *inline_value;
      } else if (i + 1 < args.size()) {
        *slot = args[++i];
      } else {
        return UsageError(absl::StrCat(name, " needs a value"), "");
      }
      if ((*slot)->empty()) return UsageError(absl::StrCat(name, " needs a value"), "");
      continue;
    }
    if (name == "--json") {
      if (inline_value) return UsageError("--json takes no value", "");
      global.json = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      help = true;
      continue;
    }
    words.push_back(arg);
  }

  if (!words.empty() && words[0] == "help") {
    help = true;
    words.erase(words.begin());
  }
  if (words.empty()) {
    if (help) return Help(ListHelp(""));
    return UsageError("missing command", "");
  }

  // The command path: a group word plus a sub-command, or a single word.
  std::string path = words[0];
  size_t consumed = 1;
  if (IsGroup(words[0])) {
    if (words.size() < 2 || absl::StartsWith(words[1], "-")) {
      if (help) return Help(ListHelp(words[0]));
      return UsageError(absl::StrCat("missing ", words[0], " command"), words[0]);
    }
    path = absl::StrCat(words[0], " ", words[1]);
    consumed = 2;
    if (FindSpec(path) == nullptr) {
      if (help) return Help(ListHelp(words[0]));
      return UsageError(absl::StrCat("unknown ", words[0], " command '", words[1], "'"), words[0]);
    }
  } else if (FindSpec(path) == nullptr) {
    if (help) return Help(ListHelp(""));
    return UsageError(absl::StrCat("unknown command '", path, "'"), "");
  }
  if (help) return Help(CommandHelp(*FindSpec(path)));
  return ParseCommand(global, path,
                      std::vector<std::string>(words.begin() + consumed, words.end()));
}

absl::StatusOr<Connection> ResolveConnection(const GlobalOptions& global, const EnvLookup& env) {
  Connection conn;
  auto non_empty = [](const std::optional<std::string>& v) { return v && !v->empty(); };

  if (global.control) {
    conn.address = *global.control;
  } else if (auto v = env("CORRAL_CONTROL"); non_empty(v)) {
    conn.address = *v;
  } else {
    conn.address = kDefaultControlAddress;
  }
  auto flag_or_env = [&](const std::optional<std::string>& flag, const char* name) {
    if (flag) return *flag;
    if (auto v = env(name); non_empty(v)) return *v;
    return std::string();
  };
  conn.tls_ca_file = flag_or_env(global.tls_ca, "CORRAL_TLS_CA");
  conn.tls_cert_file = flag_or_env(global.tls_cert, "CORRAL_TLS_CERT");
  conn.tls_key_file = flag_or_env(global.tls_key, "CORRAL_TLS_KEY");

  if (global.token) {
    conn.token = *global.token;
    return conn;
  }
  if (auto v = env("CORRAL_TOKEN"); non_empty(v)) {
    conn.token = *v;
    return conn;
  }
  std::string dir = kDefaultDataDir;
  if (global.data_dir) {
    dir = *global.data_dir;
  } else if (auto v = env("CORRAL_DATA_DIR"); non_empty(v)) {
    dir = *v;
  }
  const std::string path = absl::StrCat(dir, "/admin.token");
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no admin token: pass --token, set CORRAL_TOKEN, or point --data-dir / CORRAL_DATA_DIR "
        "at the control plane's data dir (cannot read ",
        path, ")"));
  }
  std::stringstream text;
  text << in.rdbuf();
  conn.token = std::string(absl::StripAsciiWhitespace(text.str()));
  if (conn.token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("no admin token: ", path, " is empty"));
  }
  return conn;
}

}  // namespace corral::ctl
