// Runs Prometheus's own linter, `promtool check metrics`, over a rendered exposition text, so
// tests hold the metrics to what Prometheus itself accepts rather than to our reading of the
// format. promtool comes with Debian's `prometheus` package (scripts/install-deps.sh installs it).
//
// Thread safety: any thread; each call uses its own temporary file and child process.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace corral::metrics {

// OK when promtool reports no problem. FailedPrecondition when promtool is not on PATH (never a
// skip: a missing linter must fail the test that needs it), Internal with promtool's own words
// for every problem it found.
absl::Status CheckWithPromtool(std::string_view text);

}  // namespace corral::metrics
