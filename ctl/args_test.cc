#include "ctl/args.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "common/duration.h"

namespace corral::ctl {
namespace {

using Kind = ParseOutcome::Kind;

ParseOutcome Parse(std::vector<std::string> args) { return ParseArgs(args); }

// Parses a command that must succeed and returns its invocation.
Invocation MustRun(std::vector<std::string> args) {
  ParseOutcome outcome = Parse(args);
  EXPECT_EQ(outcome.kind, Kind::kRun) << outcome.text;
  return outcome.invocation;
}

// A usage error whose message contains `needle`.
void ExpectUsage(std::vector<std::string> args, const std::string& needle) {
  ParseOutcome outcome = Parse(args);
  std::string joined;
  for (const auto& a : args) joined += a + " ";
  EXPECT_EQ(outcome.kind, Kind::kUsageError) << "args: " << joined;
  EXPECT_NE(outcome.text.find(needle), std::string::npos)
      << "args: " << joined << "\nwanted '" << needle << "' in:\n"
      << outcome.text;
  EXPECT_NE(outcome.text.find("usage:"), std::string::npos) << outcome.text;
}

// ---- every command ----

TEST(ArgsTest, NodeAddWithEveryFlag) {
  Invocation inv = MustRun({"node", "add", "gpu1", "http://10.0.0.5:11434", "--priority", "2",
                            "--weight=3", "--max-parallel", "4", "--max-memory-gb", "23.5",
                            "--label", "zone=a", "--label", "gpu=4090"});
  EXPECT_EQ(inv.kind, CommandKind::kNodeAdd);
  EXPECT_EQ(inv.create.name(), "gpu1");
  EXPECT_EQ(inv.create.url(), "http://10.0.0.5:11434");
  EXPECT_EQ(inv.create.priority(), 2);
  EXPECT_EQ(inv.create.weight(), 3);
  EXPECT_EQ(inv.create.max_parallel(), 4);
  EXPECT_DOUBLE_EQ(inv.create.max_memory_gb(), 23.5);
  ASSERT_EQ(inv.create.labels().size(), 2u);
  EXPECT_EQ(inv.create.labels().at("zone"), "a");
  EXPECT_EQ(inv.create.labels().at("gpu"), "4090");
}

TEST(ArgsTest, NodeAddPassesNegativeLimitsToTheServerToJudge) {
  // The control plane owns validation (and names the problem); the CLI only checks syntax.
  Invocation inv = MustRun({"node", "add", "n", "http://h:1", "--max-parallel", "-1", "--weight",
                            "-2", "--max-memory-gb", "-1.5"});
  EXPECT_EQ(inv.create.max_parallel(), -1);
  EXPECT_EQ(inv.create.weight(), -2);
  EXPECT_DOUBLE_EQ(inv.create.max_memory_gb(), -1.5);
}

TEST(ArgsTest, NodeAddLabelValueMayContainEquals) {
  Invocation inv = MustRun({"node", "add", "n", "h:1", "--label", "note=a=b", "--label", "=x"});
  EXPECT_EQ(inv.create.labels().at("note"), "a=b");
  EXPECT_EQ(inv.create.labels().at(""), "x");  // empty key: the server rejects it
}

TEST(ArgsTest, NodeListGetRemoveDrainEnableDisable) {
  EXPECT_EQ(MustRun({"node", "list"}).kind, CommandKind::kNodeList);
  const std::map<std::string, CommandKind> by_name = {{"get", CommandKind::kNodeGet},
                                                      {"remove", CommandKind::kNodeRemove},
                                                      {"drain", CommandKind::kNodeDrain},
                                                      {"enable", CommandKind::kNodeEnable},
                                                      {"disable", CommandKind::kNodeDisable}};
  for (const auto& [word, kind] : by_name) {
    Invocation inv = MustRun({"node", word, "gpu1"});
    EXPECT_EQ(inv.kind, kind) << word;
    EXPECT_EQ(inv.node_name, "gpu1") << word;
  }
}

TEST(ArgsTest, NodeUpdateSetsOnlyWhatIsGiven) {
  Invocation inv = MustRun({"node", "update", "gpu1", "--weight", "5", "--label", "zone=b",
                            "--remove-label", "old", "--remove-label", "older"});
  EXPECT_EQ(inv.kind, CommandKind::kNodeUpdate);
  EXPECT_EQ(inv.update.name(), "gpu1");
  EXPECT_TRUE(inv.update.has_weight());
  EXPECT_EQ(inv.update.weight(), 5);
  EXPECT_FALSE(inv.update.has_url());
  EXPECT_FALSE(inv.update.has_priority());
  EXPECT_FALSE(inv.update.has_max_parallel());
  EXPECT_FALSE(inv.update.has_max_memory_gb());
  EXPECT_EQ(inv.update.set_labels().at("zone"), "b");
  ASSERT_EQ(inv.update.remove_labels_size(), 2);
  EXPECT_EQ(inv.update.remove_labels(0), "old");
  EXPECT_EQ(inv.update.remove_labels(1), "older");
}

TEST(ArgsTest, NodeUpdateUrlAndZeroValuesArePresent) {
  Invocation inv = MustRun({"node", "update", "gpu1", "--url", "http://h:2", "--priority", "0",
                            "--max-parallel", "0", "--max-memory-gb", "0"});
  EXPECT_EQ(inv.update.url(), "http://h:2");
  EXPECT_TRUE(inv.update.has_priority());
  EXPECT_TRUE(inv.update.has_max_parallel());
  EXPECT_TRUE(inv.update.has_max_memory_gb());
}

TEST(ArgsTest, StrategyGetAndSet) {
  EXPECT_EQ(MustRun({"strategy", "get"}).kind, CommandKind::kStrategyGet);
  const std::map<std::string, corral::v1::Strategy> names = {
      {"least_active", corral::v1::STRATEGY_LEAST_ACTIVE},
      {"lowest_latency", corral::v1::STRATEGY_LOWEST_LATENCY},
      {"round_robin", corral::v1::STRATEGY_ROUND_ROBIN},
      {"weighted", corral::v1::STRATEGY_WEIGHTED},
      {"priority", corral::v1::STRATEGY_PRIORITY}};
  for (const auto& [name, value] : names) {
    Invocation inv = MustRun({"strategy", "set", name});
    EXPECT_EQ(inv.kind, CommandKind::kStrategySet);
    EXPECT_EQ(inv.strategy, value);
    EXPECT_TRUE(inv.strategy_overrides.empty());
    EXPECT_EQ(StrategyName(value), name);
  }
  EXPECT_EQ(StrategyName(corral::v1::STRATEGY_UNSPECIFIED), "least_active");
}

TEST(ArgsTest, StrategySetPolicyFlags) {
  Invocation inv = MustRun({"strategy", "set", "round_robin", "--max-attempts", "2",
                            "--connect-timeout-ms", "1500", "--first-byte-timeout-ms", "60000",
                            "--idle-timeout-ms=30000", "--eject-after", "5"});
  const StrategyOverrides& o = inv.strategy_overrides;
  EXPECT_EQ(o.max_attempts, 2);
  EXPECT_EQ(o.connect_ms, 1500);
  EXPECT_EQ(o.first_byte_ms, 60000);
  EXPECT_EQ(o.idle_ms, 30000);
  EXPECT_EQ(o.eject_after_failures, 5);
}

TEST(ArgsTest, NumParallelOnAddAndUpdate) {
  Invocation add = MustRun({"node", "add", "gpu1", "http://h:1", "--num-parallel", "4"});
  EXPECT_EQ(add.create.num_parallel(), 4);
  Invocation update = MustRun({"node", "update", "gpu1", "--num-parallel=0"});
  EXPECT_TRUE(update.update.has_num_parallel());  // 0 is a value: back to the default
  EXPECT_EQ(update.update.num_parallel(), 0);
  EXPECT_FALSE(MustRun({"node", "update", "gpu1", "--weight", "2"}).update.has_num_parallel());
  ExpectUsage({"node", "add", "n", "http://h:1", "--num-parallel", "two"},
              "--num-parallel needs a whole number, got 'two'");
}

TEST(ArgsTest, StrategySetQueueFlagsWithOrWithoutAName) {
  Invocation inv =
      MustRun({"strategy", "set", "--queue-length", "64", "--queue-wait", "2m", "--queue", "off"});
  EXPECT_EQ(inv.kind, CommandKind::kStrategySet);
  EXPECT_EQ(inv.strategy, corral::v1::STRATEGY_UNSPECIFIED);  // the strategy stays
  const StrategyOverrides& o = inv.strategy_overrides;
  EXPECT_EQ(o.queue_length, 64);
  EXPECT_EQ(o.queue_wait_ms, 120000);
  EXPECT_EQ(o.queue_disabled, true);
  EXPECT_FALSE(o.empty());
  EXPECT_FALSE(o.queue_empty());

  Invocation named = MustRun({"strategy", "set", "weighted", "--queue=on"});
  EXPECT_EQ(named.strategy, corral::v1::STRATEGY_WEIGHTED);
  EXPECT_EQ(named.strategy_overrides.queue_disabled, false);
  EXPECT_FALSE(named.strategy_overrides.queue_length.has_value());
  EXPECT_EQ(MustRun({"strategy", "set", "--queue-wait", "0"}).strategy_overrides.queue_wait_ms, 0);

  ExpectUsage({"strategy", "set", "--queue", "maybe"}, "--queue takes on or off, got 'maybe'");
  ExpectUsage({"strategy", "set", "--queue-wait", "30"},
              "--queue-wait takes a duration like 500ms, 30s or 2m");
  ExpectUsage({"strategy", "set", "--queue-length", "lots"}, "--queue-length needs a whole number");
}

TEST(ArgsTest, QueueWaitDurations) {
  EXPECT_EQ(ParseDurationMs("500ms"), 500);
  EXPECT_EQ(ParseDurationMs("30s"), 30000);
  EXPECT_EQ(ParseDurationMs("2m"), 120000);
  EXPECT_EQ(ParseDurationMs("1h"), 3600000);
  EXPECT_EQ(ParseDurationMs("0"), 0);
  for (const char* bad : {"", "30", "s", "-5s", "0s", "1.5s", "5d", "5 s", "1234567890s"}) {
    EXPECT_FALSE(ParseDurationMs(bad).has_value()) << bad;
  }
}

TEST(ArgsTest, PlacementListAddRemove) {
  EXPECT_EQ(MustRun({"placement", "list"}).kind, CommandKind::kPlacementList);
  Invocation add = MustRun({"placement", "add", "llama3:70b*", "--node", "gpu-big", "--node",
                            "gpu-big2", "--label", "gpu=a100", "--hard"});
  EXPECT_EQ(add.kind, CommandKind::kPlacementAdd);
  EXPECT_EQ(add.placement_rule.pattern(), "llama3:70b*");
  ASSERT_EQ(add.placement_rule.nodes_size(), 2);
  EXPECT_EQ(add.placement_rule.nodes(1), "gpu-big2");
  EXPECT_EQ(add.placement_rule.labels().at("gpu"), "a100");
  EXPECT_TRUE(add.placement_rule.hard());
  // Soft is the default, and --soft says so explicitly.
  EXPECT_FALSE(
      MustRun({"placement", "add", "qwen*", "--label", "tier=fast"}).placement_rule.hard());
  EXPECT_FALSE(MustRun({"placement", "add", "q*", "--node", "a", "--soft"}).placement_rule.hard());
  Invocation remove = MustRun({"placement", "remove", "qwen*"});
  EXPECT_EQ(remove.kind, CommandKind::kPlacementRemove);
  EXPECT_EQ(remove.rule_key, "qwen*");

  ExpectUsage({"placement"}, "missing placement command");
  ExpectUsage({"placement", "add"}, "missing PATTERN");
  ExpectUsage({"placement", "add", "q*"}, "give at least one --node NAME or --label K=V");
  ExpectUsage({"placement", "add", "q*", "--node", "a", "--hard", "--soft"},
              "--hard and --soft exclude each other");
  ExpectUsage({"placement", "add", "q*", "--label", "novalue"}, "--label wants KEY=VALUE");
  ExpectUsage({"placement", "add", "q*", "--node="}, "--node needs a node name");
  ExpectUsage({"placement", "remove"}, "missing PATTERN");
  ExpectUsage({"placement", "list", "x"}, "unexpected argument 'x'");
}

TEST(ArgsTest, AliasListSetRemove) {
  EXPECT_EQ(MustRun({"alias", "list"}).kind, CommandKind::kAliasList);
  Invocation set = MustRun({"alias", "set", "fast", "llama3.2:1b"});
  EXPECT_EQ(set.kind, CommandKind::kAliasSet);
  EXPECT_EQ(set.alias.alias(), "fast");
  EXPECT_EQ(set.alias.target(), "llama3.2:1b");
  Invocation remove = MustRun({"alias", "remove", "fast"});
  EXPECT_EQ(remove.kind, CommandKind::kAliasRemove);
  EXPECT_EQ(remove.rule_key, "fast");
  ExpectUsage({"alias", "set"}, "missing ALIAS and TARGET");
  ExpectUsage({"alias", "set", "fast"}, "missing TARGET");
  ExpectUsage({"alias", "set", "a", "b", "c"}, "unexpected argument 'c'");
  ExpectUsage({"alias", "remove"}, "missing ALIAS");
}

TEST(ArgsTest, ModelMemoryListSetRemove) {
  EXPECT_EQ(MustRun({"model-memory", "list"}).kind, CommandKind::kModelMemoryList);
  Invocation set = MustRun({"model-memory", "set", "*:70b*", "42.5"});
  EXPECT_EQ(set.kind, CommandKind::kModelMemorySet);
  EXPECT_EQ(set.memory_rule.pattern(), "*:70b*");
  EXPECT_DOUBLE_EQ(set.memory_rule.memory_gb(), 42.5);
  // The control plane judges the size (and names the rule); the CLI only checks it is a number.
  EXPECT_DOUBLE_EQ(MustRun({"model-memory", "set", "x", "-1"}).memory_rule.memory_gb(), -1);
  Invocation remove = MustRun({"model-memory", "remove", "*:70b*"});
  EXPECT_EQ(remove.kind, CommandKind::kModelMemoryRemove);
  EXPECT_EQ(remove.rule_key, "*:70b*");
  ExpectUsage({"model-memory", "set", "x"}, "missing GB");
  ExpectUsage({"model-memory", "set", "x", "big"}, "GB needs a number, got 'big'");
  ExpectUsage({"model-memory", "remove"}, "missing PATTERN");
}

TEST(ArgsTest, FleetViews) {
  EXPECT_EQ(MustRun({"state"}).kind, CommandKind::kState);
  EXPECT_EQ(MustRun({"models"}).kind, CommandKind::kModels);
  EXPECT_EQ(MustRun({"proxies"}).kind, CommandKind::kProxies);
}

TEST(ArgsTest, PullOneNodeOrAll) {
  Invocation one = MustRun({"pull", "llama3.2", "--node", "gpu1"});
  EXPECT_EQ(one.kind, CommandKind::kPull);
  EXPECT_EQ(one.pull.model(), "llama3.2");
  EXPECT_EQ(one.pull.node(), "gpu1");
  EXPECT_FALSE(one.pull.all());

  Invocation all = MustRun({"pull", "llama3.2", "--all", "--insecure"});
  EXPECT_TRUE(all.pull.all());
  EXPECT_TRUE(all.pull.node().empty());
  EXPECT_TRUE(all.pull.insecure());

  // No target means every enabled node.
  EXPECT_TRUE(MustRun({"pull", "llama3.2"}).pull.all());
}

TEST(ArgsTest, DiscoveryGetSetOff) {
  EXPECT_EQ(MustRun({"discovery", "get"}).kind, CommandKind::kDiscoveryGet);

  Invocation set = MustRun({"discovery", "set", "10.0.0.5:11434-11441", "gpu-host:11434",
                            "[::1]:2000-2010", "--interval-ms", "5000"});
  EXPECT_EQ(set.kind, CommandKind::kDiscoverySet);
  ASSERT_EQ(set.discovery.ranges_size(), 3);
  EXPECT_EQ(set.discovery.ranges(0).host(), "10.0.0.5");
  EXPECT_EQ(set.discovery.ranges(0).port_from(), 11434);
  EXPECT_EQ(set.discovery.ranges(0).port_to(), 11441);
  EXPECT_EQ(set.discovery.ranges(1).host(), "gpu-host");
  EXPECT_EQ(set.discovery.ranges(1).port_from(), 11434);
  EXPECT_EQ(set.discovery.ranges(1).port_to(), 11434);
  EXPECT_EQ(set.discovery.ranges(2).host(), "::1");
  EXPECT_EQ(set.discovery.ranges(2).port_from(), 2000);
  EXPECT_EQ(set.discovery.interval_ms(), 5000);

  Invocation off = MustRun({"discovery", "off"});
  EXPECT_EQ(off.kind, CommandKind::kDiscoveryOff);
  EXPECT_EQ(off.discovery.ranges_size(), 0);
}

TEST(ArgsTest, TokenCreateListRevoke) {
  Invocation created = MustRun({"token", "create", "team-a", "--model", "llama3.2", "--model",
                                "qwen3:8b", "--value", "s3cret"});
  EXPECT_EQ(created.kind, CommandKind::kTokenCreate);
  EXPECT_EQ(created.token.name(), "team-a");
  ASSERT_EQ(created.token.models_size(), 2);
  EXPECT_EQ(created.token.models(1), "qwen3:8b");
  EXPECT_EQ(created.token.token(), "s3cret");
  EXPECT_FALSE(created.global.token.has_value());  // --value is not the admin --token

  Invocation generated = MustRun({"token", "create", "ci"});
  EXPECT_TRUE(generated.token.token().empty());
  EXPECT_EQ(generated.token.models_size(), 0);

  EXPECT_EQ(MustRun({"token", "list"}).kind, CommandKind::kTokenList);
  Invocation revoked = MustRun({"token", "revoke", "team-a"});
  EXPECT_EQ(revoked.kind, CommandKind::kTokenRevoke);
  EXPECT_EQ(revoked.token_name, "team-a");
}

TEST(ArgsTest, UsageByAndSince) {
  Invocation inv = MustRun({"usage"});
  EXPECT_EQ(inv.kind, CommandKind::kUsage);
  EXPECT_EQ(inv.usage.by(), "");
  EXPECT_EQ(inv.usage.since_seconds(), 24 * 3600) << "the default window is a day";

  inv = MustRun({"usage", "--by", "token", "--since", "7d", "--json"});
  EXPECT_EQ(inv.usage.by(), "token");
  EXPECT_EQ(inv.usage.since_seconds(), 7 * 24 * 3600);
  EXPECT_TRUE(inv.global.json);
  EXPECT_EQ(MustRun({"usage", "--by=model", "--since=30m"}).usage.since_seconds(), 1800);
  EXPECT_EQ(MustRun({"usage", "--by", "node"}).usage.by(), "node");
  EXPECT_EQ(MustRun({"usage", "--by", "all"}).usage.by(), "");
  EXPECT_EQ(MustRun({"usage", "--since", "all"}).usage.since_seconds(), 0);

  ExpectUsage({"usage", "--by", "tenant"}, "--by takes token, model or node, got 'tenant'");
  ExpectUsage({"usage", "--since", "yesterday"}, "--since takes a duration like 30m, 24h or 7d");
  ExpectUsage({"usage", "--since", "0h"}, "--since takes a duration");
  ExpectUsage({"usage", "--since"}, "--since");
  ExpectUsage({"usage", "extra"}, "unexpected argument 'extra'");
}

TEST(ArgsTest, DurationsAreSecondsOrOneUnit) {
  EXPECT_EQ(ParseDurationSeconds("24"), 24);
  EXPECT_EQ(ParseDurationSeconds("90s"), 90);
  EXPECT_EQ(ParseDurationSeconds("30m"), 1800);
  EXPECT_EQ(ParseDurationSeconds("24h"), 86400);
  EXPECT_EQ(ParseDurationSeconds("7d"), 604800);
  EXPECT_EQ(ParseDurationSeconds("2w"), 1209600);
  for (const char* bad :
       {"", "h", "24x", "-1h", "1.5h", "0d", "0", "1h30m", " 1h", "9999999999d"}) {
    EXPECT_EQ(ParseDurationSeconds(bad), std::nullopt) << bad;
  }
}

TEST(ArgsTest, GlobalOptionsBeforeOrAfterTheCommand) {
  Invocation before = MustRun({"--control", "10.0.0.1:11400", "--token=abc", "--json", "--data-dir",
                               "/srv/corral", "node", "list"});
  EXPECT_EQ(before.global.control, "10.0.0.1:11400");
  EXPECT_EQ(before.global.token, "abc");
  EXPECT_EQ(before.global.data_dir, "/srv/corral");
  EXPECT_TRUE(before.global.json);

  Invocation after = MustRun({"node", "list", "--json", "--control=h:1"});
  EXPECT_TRUE(after.global.json);
  EXPECT_EQ(after.global.control, "h:1");
  EXPECT_FALSE(after.global.token.has_value());
}

TEST(ArgsTest, TlsOptionsAreGlobal) {
  Invocation inv = MustRun(
      {"--tls-ca", "/etc/corral/ca.crt", "node", "list", "--tls-cert=c.pem", "--tls-key", "k.pem"});
  EXPECT_EQ(inv.global.tls_ca, "/etc/corral/ca.crt");
  EXPECT_EQ(inv.global.tls_cert, "c.pem");
  EXPECT_EQ(inv.global.tls_key, "k.pem");
  Invocation none = MustRun({"node", "list"});
  EXPECT_FALSE(none.global.tls_ca.has_value());
  EXPECT_FALSE(none.global.tls_cert.has_value());
  EXPECT_FALSE(none.global.tls_key.has_value());
  EXPECT_EQ(Parse({"node", "list", "--tls-ca"}).kind, Kind::kUsageError);
  EXPECT_EQ(Parse({"node", "list", "--tls-ca="}).kind, Kind::kUsageError);
}

// ---- help ----

TEST(ArgsTest, HelpForEverythingGroupsAndEachCommand) {
  ParseOutcome top = Parse({"--help"});
  ASSERT_EQ(top.kind, Kind::kHelp);
  for (const char* word :
       {"node add", "strategy set", "state", "models", "proxies", "pull", "discovery set",
        "placement add", "alias set", "model-memory set", "--num-parallel", "--queue-wait",
        "--control", "--token", "--json", "--tls-ca", "--tls-cert", "--tls-key", "CORRAL_TLS_CA"}) {
    EXPECT_NE(top.text.find(word), std::string::npos) << word;
  }
  EXPECT_EQ(Parse({"help"}).kind, Kind::kHelp);
  EXPECT_EQ(Parse({"-h"}).kind, Kind::kHelp);

  ParseOutcome node = Parse({"node", "--help"});
  ASSERT_EQ(node.kind, Kind::kHelp);
  EXPECT_NE(node.text.find("node drain NAME"), std::string::npos);
  EXPECT_EQ(node.text.find("strategy set"), std::string::npos);

  const std::vector<std::vector<std::string>> commands = {{"node", "add"},
                                                          {"node", "list"},
                                                          {"node", "get"},
                                                          {"node", "update"},
                                                          {"node", "remove"},
                                                          {"node", "drain"},
                                                          {"node", "enable"},
                                                          {"node", "disable"},
                                                          {"strategy", "get"},
                                                          {"strategy", "set"},
                                                          {"state"},
                                                          {"models"},
                                                          {"proxies"},
                                                          {"pull"},
                                                          {"discovery", "get"},
                                                          {"discovery", "set"},
                                                          {"discovery", "off"},
                                                          {"token", "create"},
                                                          {"token", "list"},
                                                          {"token", "revoke"},
                                                          {"token", "require"},
                                                          {"placement", "list"},
                                                          {"placement", "add"},
                                                          {"placement", "remove"},
                                                          {"alias", "list"},
                                                          {"alias", "set"},
                                                          {"alias", "remove"},
                                                          {"model-memory", "list"},
                                                          {"model-memory", "set"},
                                                          {"model-memory", "remove"}};
  for (auto args : commands) {
    std::string path;
    for (const auto& a : args) path += (path.empty() ? "" : " ") + a;
    args.push_back("--help");
    ParseOutcome help = Parse(args);
    ASSERT_EQ(help.kind, Kind::kHelp) << path;
    EXPECT_NE(help.text.find("usage: corralctl [global options] " + path), std::string::npos)
        << help.text;
  }
  // --help wins over missing arguments; "help <command>" works too.
  EXPECT_EQ(Parse({"node", "add", "--help"}).kind, Kind::kHelp);
  ParseOutcome help_pull = Parse({"help", "pull"});
  ASSERT_EQ(help_pull.kind, Kind::kHelp);
  EXPECT_NE(help_pull.text.find("--all"), std::string::npos);
  EXPECT_NE(Parse({"strategy", "set", "--help"}).text.find("least_active, lowest_latency"),
            std::string::npos);
}

// ---- every usage error ----

TEST(ArgsTest, MissingOrUnknownCommand) {
  ExpectUsage({}, "missing command");
  ExpectUsage({"--json"}, "missing command");
  ExpectUsage({"frobnicate"}, "unknown command 'frobnicate'");
  ExpectUsage({"node"}, "missing node command");
  ExpectUsage({"node", "launch", "x"}, "unknown node command 'launch'");
  ExpectUsage({"strategy"}, "missing strategy command");
  ExpectUsage({"strategy", "pick"}, "unknown strategy command 'pick'");
  ExpectUsage({"discovery"}, "missing discovery command");
  ExpectUsage({"discovery", "on"}, "unknown discovery command 'on'");
}

TEST(ArgsTest, GlobalOptionErrors) {
  ExpectUsage({"node", "list", "--control"}, "--control needs a value");
  ExpectUsage({"--token"}, "--token needs a value");
  ExpectUsage({"--token=", "state"}, "--token needs a value");
  ExpectUsage({"--data-dir"}, "--data-dir needs a value");
  ExpectUsage({"--json=yes", "state"}, "--json takes no value");
}

TEST(ArgsTest, NodeAddErrors) {
  ExpectUsage({"node", "add"}, "missing NAME and URL");
  ExpectUsage({"node", "add", "gpu1"}, "missing URL");
  ExpectUsage({"node", "add", "gpu1", "h:1", "extra"}, "unexpected argument 'extra'");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--priority"}, "--priority needs a value");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--priority", "high"},
              "--priority needs a whole number, got 'high'");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--weight", "1.5"},
              "--weight needs a whole number, got '1.5'");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--max-parallel", "99999999999"},
              "--max-parallel: 99999999999 is out of range");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--max-memory-gb", "lots"},
              "--max-memory-gb needs a number, got 'lots'");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--max-memory-gb", "inf"},
              "--max-memory-gb needs a number");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--label", "zone"},
              "--label wants KEY=VALUE, got 'zone'");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--colour", "red"}, "unknown option --colour");
  ExpectUsage({"node", "add", "gpu1", "h:1", "--remove-label", "x"},
              "unknown option --remove-label");
}

TEST(ArgsTest, NodeNameCommandErrors) {
  for (const char* word : {"get", "remove", "drain", "enable", "disable"}) {
    ExpectUsage({"node", word}, "missing NAME");
    ExpectUsage({"node", word, "a", "b"}, "unexpected argument 'b'");
    ExpectUsage({"node", word, "a", "--force"}, "unknown option --force");
  }
  ExpectUsage({"node", "list", "extra"}, "unexpected argument 'extra'");
  ExpectUsage({"node", "list", "--all"}, "unknown option --all");
}

TEST(ArgsTest, NodeUpdateErrors) {
  ExpectUsage({"node", "update"}, "missing NAME");
  ExpectUsage({"node", "update", "gpu1"}, "nothing to change");
  ExpectUsage({"node", "update", "gpu1", "http://h:1"}, "unexpected argument 'http://h:1'");
  ExpectUsage({"node", "update", "gpu1", "--url"}, "--url needs a value");
  ExpectUsage({"node", "update", "gpu1", "--weight", "x"}, "--weight needs a whole number");
  ExpectUsage({"node", "update", "gpu1", "--label", "novalue"}, "--label wants KEY=VALUE");
}

TEST(ArgsTest, StrategyErrors) {
  ExpectUsage({"strategy", "set"}, "missing NAME (least_active, lowest_latency");
  ParseOutcome bad = Parse({"strategy", "set", "fastest"});
  EXPECT_EQ(bad.kind, Kind::kUsageError);
  EXPECT_NE(bad.text.find("unknown strategy 'fastest'; valid strategies: least_active, "
                          "lowest_latency, round_robin, weighted, priority"),
            std::string::npos)
      << bad.text;
  ExpectUsage({"strategy", "set", "LEAST_ACTIVE"}, "unknown strategy 'LEAST_ACTIVE'");
  ExpectUsage({"strategy", "set", "weighted", "priority"}, "unexpected argument 'priority'");
  ExpectUsage({"strategy", "set", "weighted", "--max-attempts", "many"},
              "--max-attempts needs a whole number");
  ExpectUsage({"strategy", "set", "weighted", "--idle-timeout-ms", "5s"},
              "--idle-timeout-ms needs a whole number, got '5s'");
  ExpectUsage({"strategy", "set", "weighted", "--weight", "1"}, "unknown option --weight");
  ExpectUsage({"strategy", "get", "now"}, "unexpected argument 'now'");
}

TEST(ArgsTest, TokenErrors) {
  ExpectUsage({"token"}, "missing token command");
  ExpectUsage({"token", "rotate", "x"}, "unknown token command 'rotate'");
  ExpectUsage({"token", "create"}, "missing NAME");
  ExpectUsage({"token", "create", "a", "b"}, "unexpected argument 'b'");
  ExpectUsage({"token", "create", "a", "--model"}, "--model needs a value");
  ExpectUsage({"token", "create", "a", "--model="}, "--model needs a model name");
  ExpectUsage({"token", "create", "a", "--value="}, "--value needs the token text");
  ExpectUsage({"token", "create", "a", "--scope", "x"}, "unknown option --scope");
  ExpectUsage({"token", "list", "x"}, "unexpected argument 'x'");
  ExpectUsage({"token", "revoke"}, "missing NAME");
  ExpectUsage({"token", "revoke", "a", "b"}, "unexpected argument 'b'");
  ExpectUsage({"token", "require"}, "missing on or off");
  ExpectUsage({"token", "require", "yes"}, "expected on or off, got 'yes'");
  ExpectUsage({"token", "require", "on", "off"}, "unexpected argument 'off'");
}

TEST(ArgsTest, TokenRequireOnOff) {
  Invocation on = MustRun({"token", "require", "on"});
  EXPECT_EQ(on.kind, CommandKind::kTokenRequire);
  EXPECT_TRUE(on.require_tokens);
  Invocation off = MustRun({"--json", "token", "require", "off"});
  EXPECT_EQ(off.kind, CommandKind::kTokenRequire);
  EXPECT_FALSE(off.require_tokens);
  EXPECT_TRUE(off.global.json);
}

TEST(ArgsTest, ViewCommandsTakeNoArguments) {
  ExpectUsage({"state", "gpu1"}, "unexpected argument 'gpu1'");
  ExpectUsage({"models", "--node", "x"}, "unknown option --node");
  ExpectUsage({"proxies", "x"}, "unexpected argument 'x'");
}

TEST(ArgsTest, PullErrors) {
  ExpectUsage({"pull"}, "missing MODEL");
  ExpectUsage({"pull", "a", "b"}, "unexpected argument 'b'");
  ExpectUsage({"pull", "a", "--node", "gpu1", "--all"}, "--node and --all exclude each other");
  ExpectUsage({"pull", "a", "--node"}, "--node needs a value");
  ExpectUsage({"pull", "a", "--node="}, "--node needs a node name");
  ExpectUsage({"pull", "a", "--all=yes"}, "--all takes no value");
}

TEST(ArgsTest, DiscoveryErrors) {
  ExpectUsage({"discovery", "set"}, "missing HOST:FROM-TO");
  ExpectUsage({"discovery", "set", "10.0.0.5"}, "a range is HOST:FROM-TO or HOST:PORT");
  ExpectUsage({"discovery", "set", ":11434"}, "a range is HOST:FROM-TO");
  ExpectUsage({"discovery", "set", "h:a-b"}, "got 'h:a-b'");
  ExpectUsage({"discovery", "set", "h:1-"}, "got 'h:1-'");
  ExpectUsage({"discovery", "set", "::1:1-2"}, "put an IPv6 host in brackets");
  ExpectUsage({"discovery", "set", "h:1-2", "--interval-ms", "soon"},
              "--interval-ms needs a whole number");
  ExpectUsage({"discovery", "off", "h:1-2"}, "unexpected argument 'h:1-2'");
  ExpectUsage({"discovery", "get", "--interval-ms", "1"}, "unknown option --interval-ms");
}

// ---- connection ----

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string TempDirWithToken(const std::string& content) {
  static int counter = 0;
  std::string dir = ::testing::TempDir() + "/ctl-args-" + std::to_string(::getpid()) + "-" +
                    std::to_string(counter++);
  // Each test runs in a process of its own, so a recycled pid names a directory an earlier run
  // left behind, possibly with a token in it: start from an empty one.
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  if (!content.empty()) std::ofstream(dir + "/admin.token") << content;
  return dir;
}

TEST(ResolveConnectionTest, FlagsWinOverEnvironment) {
  GlobalOptions g;
  g.control = "flag:1";
  g.token = "flag-token";
  auto conn = ResolveConnection(g, Env({{"CORRAL_CONTROL", "env:2"}, {"CORRAL_TOKEN", "env"}}));
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_EQ(conn->address, "flag:1");
  EXPECT_EQ(conn->token, "flag-token");
}

TEST(ResolveConnectionTest, TlsFilesFromFlagsElseEnvironmentElsePlaintext) {
  GlobalOptions g;
  g.token = "t";
  auto plain = ResolveConnection(g, Env({}));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->tls_ca_file, "");
  EXPECT_EQ(plain->tls_cert_file, "");
  EXPECT_EQ(plain->tls_key_file, "");

  const auto env = Env({{"CORRAL_TLS_CA", "/env/ca.crt"},
                        {"CORRAL_TLS_CERT", "/env/client.crt"},
                        {"CORRAL_TLS_KEY", "/env/client.key"}});
  auto from_env = ResolveConnection(g, env);
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->tls_ca_file, "/env/ca.crt");
  EXPECT_EQ(from_env->tls_cert_file, "/env/client.crt");
  EXPECT_EQ(from_env->tls_key_file, "/env/client.key");

  g.tls_ca = "/flag/ca.crt";
  g.tls_cert = "/flag/client.crt";
  g.tls_key = "/flag/client.key";
  auto from_flags = ResolveConnection(g, env);
  ASSERT_TRUE(from_flags.ok()) << from_flags.status();
  EXPECT_EQ(from_flags->tls_ca_file, "/flag/ca.crt");
  EXPECT_EQ(from_flags->tls_cert_file, "/flag/client.crt");
  EXPECT_EQ(from_flags->tls_key_file, "/flag/client.key");
}

TEST(ResolveConnectionTest, EnvironmentWinsOverTheTokenFile) {
  std::string dir = TempDirWithToken("file-token\n");
  GlobalOptions g;
  g.data_dir = dir;
  auto conn = ResolveConnection(g, Env({{"CORRAL_CONTROL", "env:2"}, {"CORRAL_TOKEN", "env"}}));
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_EQ(conn->address, "env:2");
  EXPECT_EQ(conn->token, "env");
}

TEST(ResolveConnectionTest, DefaultsAndTheTokenFileInTheDataDir) {
  std::string dir = TempDirWithToken("  file-token\n");
  auto conn = ResolveConnection(GlobalOptions(), Env({{"CORRAL_DATA_DIR", dir}}));
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_EQ(conn->address, "127.0.0.1:11400");
  EXPECT_EQ(conn->token, "file-token");

  GlobalOptions g;
  g.data_dir = dir;
  auto from_flag = ResolveConnection(g, Env({{"CORRAL_DATA_DIR", "/nonexistent"}}));
  ASSERT_TRUE(from_flag.ok()) << from_flag.status();
  EXPECT_EQ(from_flag->token, "file-token");
}

TEST(ResolveConnectionTest, NoTokenAnywhereNamesThePlacesLookedAt) {
  std::string dir = TempDirWithToken("");
  GlobalOptions g;
  g.data_dir = dir;
  auto conn = ResolveConnection(g, Env({}));
  ASSERT_FALSE(conn.ok());
  const std::string message(conn.status().message());
  EXPECT_NE(message.find("--token"), std::string::npos) << message;
  EXPECT_NE(message.find("CORRAL_TOKEN"), std::string::npos) << message;
  EXPECT_NE(message.find(dir + "/admin.token"), std::string::npos) << message;

  std::ofstream(dir + "/admin.token") << "\n";
  auto empty = ResolveConnection(g, Env({}));
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(std::string(empty.status().message()).find("is empty"), std::string::npos);
}

}  // namespace
}  // namespace corral::ctl
