// corralctl: the admin CLI. Parses the command line, finds the control plane and the admin
// token, and runs the command; the work lives in args, commands and format.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "ctl/args.h"
#include "ctl/commands.h"

int main(int argc, char** argv) {
  using corral::ctl::ParseOutcome;
  const std::vector<std::string> args(argv + 1, argv + argc);
  ParseOutcome parsed = corral::ctl::ParseArgs(args);
  switch (parsed.kind) {
    case ParseOutcome::Kind::kHelp:
      std::cout << parsed.text;
      return corral::ctl::kExitOk;
    case ParseOutcome::Kind::kUsageError:
      std::cerr << parsed.text;
      return corral::ctl::kExitUsage;
    case ParseOutcome::Kind::kRun:
      break;
  }
  auto conn = corral::ctl::ResolveConnection(
      parsed.invocation.global, [](const std::string& name) -> std::optional<std::string> {
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) return std::nullopt;
        return std::string(value);
      });
  if (!conn.ok()) {
    std::cerr << "corralctl: " << conn.status().message() << "\n";
    return corral::ctl::kExitFailed;
  }
  return corral::ctl::RunCommand(parsed.invocation, *conn, std::cout, std::cerr);
}
