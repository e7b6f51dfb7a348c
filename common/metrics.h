// Metrics: counters, gauges and histograms with bounded labels, declared once per process in one
// list (dataplane/proxy_metrics.h, controlplane/control_metrics.h) and rendered from that list as
// Prometheus text (exposition format 0.0.4) for `GET /metrics` and as JSON for the state views.
//
// A process declares its metrics as members of one struct whose first member is a Registry and
// whose other members are initialised from it, in declaration order, which is also the order of
// the rendering:
//
//   struct ProxyMetrics {
//     metrics::Registry registry;
//     metrics::LabelDomain& models = registry.AddDomain("model", {"none"});
//     metrics::CounterFamily<1>& requests =
//         registry.AddCounter("corral_requests_total", "Requests answered.", {{"model", models}});
//   };
//
// Labels are bounded. Every label takes its values from a LabelDomain: values fixed by the
// declaration (a route, a status class) plus values the owner sets at run time (the models and
// nodes of the current snapshot). A value outside its domain folds into "other", and a family
// holds at most FamilyOptions::max_series label sets: past that, every new label set folds into
// the one series whose labels are all "other". Series are never removed while the registry lives,
// so a reference returned by Get stays valid as long as the registry does.
//
// Thread safety: Add* and AddCollectHook are called while the owner builds the registry, before
// any other thread sees it. After that every method is safe from any thread:
//   * Counter::Inc, Gauge::Set/Add, Histogram::Observe are relaxed atomic operations;
//   * Family::Get takes no lock once its label set has a series: the series is found in an
//     insert-only table of atomic pointers by the values as given, and if no SetValues ran since
//     those values were last checked (one atomic load) that is all. Otherwise the values are
//     checked against their domains through a per-thread cache of each domain's values (a
//     thread takes the domain's mutex once after each SetValues, to refresh its copy). Only the
//     first Get of a label set takes the family's mutex, to create the series;
//   * LabelDomain::SetValues takes the domain's mutex (once per snapshot);
//   * rendering takes each family's mutex briefly to list its series, never blocking Get on an
//     existing series.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace corral::metrics {

// The value an unknown label value folds into, and every label of the overflow series.
inline constexpr std::string_view kOther = "other";

// The Content-Type of RenderPrometheus's text.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Histogram bucket upper bounds, in the unit of the metric's name (seconds, tokens). Each list is
// strictly increasing; "+Inf" is implied.
namespace buckets {
// Time to first token: a warm model answers in tens of milliseconds, a cold load takes 10-60 s,
// and a queue behind a cold load longer still.
inline constexpr std::array<double, 18> kTimeToFirstToken{
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 15, 20, 30, 45, 60, 120};
// Whole request duration: embeddings in milliseconds up to long generations of ten minutes.
inline constexpr std::array<double, 17> kRequestDuration{
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 240, 480, 600};
// Time per output token after the first: 1000 tokens/s down to a struggling 2 tokens/s.
inline constexpr std::array<double, 14> kTimePerOutputToken{
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1};
// The proxy's own work on a request, before the node gets it: 10 µs to 100 ms.
inline constexpr std::array<double, 13> kProxyOverhead{0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
                                                       0.0005,  0.001,    0.0025,  0.005,  0.01,
                                                       0.025,   0.05,     0.1};
// Token counts of one request: 1 to a 128k context.
inline constexpr std::array<double, 10> kTokens{1,    4,    16,    64,    256,
                                                1024, 4096, 16384, 65536, 131072};
// A network round trip to a node (probes): 1 ms to 10 s.
inline constexpr std::array<double, 12> kNetworkRoundTrip{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                          0.1,   0.25,   0.5,   1,    2.5,   10};
}  // namespace buckets

namespace internal {
class FamilyImpl;
}

// The values one label may take: fixed ones from the declaration plus the owner's current ones.
class LabelDomain {
 public:
  LabelDomain(std::string name, std::vector<std::string> fixed);
  LabelDomain(const LabelDomain&) = delete;
  LabelDomain& operator=(const LabelDomain&) = delete;

  const std::string& name() const { return name_; }

  // Replaces the owner's values (e.g. the models of a new snapshot). Series already created for
  // values no longer in the set keep their last values.
  void SetValues(std::vector<std::string> values);

  // True for "other", a fixed value or one of the owner's current values.
  bool Contains(std::string_view value) const;
  // `value` if Contains(value), else "other".
  std::string_view Fold(std::string_view value) const { return Contains(value) ? value : kOther; }

 private:
  friend class internal::FamilyImpl;  // looks values up with the hash it needs anyway

  // Sorted by hash, then value; unique. A lookup compares integers until the one candidate.
  using Values = std::vector<std::pair<size_t, std::string>>;
  // REQUIRES: hash == std::hash<std::string_view>{}(value).
  bool ContainsHashed(std::string_view value, size_t hash) const;

  const uint64_t id_;  // unique in the process, never reused: keys the per-thread caches
  const std::string name_;
  const Values fixed_;
  std::atomic<uint64_t> generation_{0};  // bumped by each SetValues
  mutable std::mutex mu_;
  std::shared_ptr<const Values> owned_;  // guarded by mu_
};

// One label of a family: its name and where its values come from.
struct Label {
  std::string name;
  const LabelDomain& domain;
};

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  void Inc() { Add(1); }
  void Dec() { Add(-1); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds` must outlive the histogram (its family owns them).
  explicit Histogram(std::span<const double> bounds);

  // Counts `v` in the first bucket whose bound is >= v (Prometheus's `le`). NaN is ignored: it
  // would poison the sum for the life of the process.
  void Observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  // Read without stopping writers: the count is the sum of the buckets read, so `_count` always
  // equals the `+Inf` bucket; `sum` may lag or lead them by the observations in flight.
  Snapshot Read() const;
  std::span<const double> bounds() const { return bounds_; }

 private:
  std::span<const double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; +Inf last
  std::atomic<double> sum_{0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

struct FamilyOptions {
  // Label sets past this many fold into the all-"other" series (which may always exist).
  size_t max_series = 1000;
};

namespace internal {

struct Series {
  Series(std::vector<std::string> values, size_t hash, MetricType type,
         std::span<const double> bounds);
  const std::vector<std::string> values;  // folded label values, in the family's label order
  const size_t hash;
  // The process's domain epoch at which `values` were last all found in their domains (0: not
  // yet): while it is current, a Get naming exactly these values skips the domain check.
  std::atomic<uint64_t> checked_epoch{0};
  // On its own cache line: every Get reads the key above, and writers of the metric must not
  // take that line away from readers on other cores.
  alignas(64) std::variant<Counter, Gauge, Histogram> metric;
};

// The type-erased family: declaration, series table and rendering. Family<M, N> is its typed
// face.
class FamilyImpl {
 public:
  FamilyImpl(MetricType type, std::string name, std::string help, std::vector<Label> labels,
             std::vector<double> bounds, FamilyOptions options);
  virtual ~FamilyImpl();
  FamilyImpl(const FamilyImpl&) = delete;
  FamilyImpl& operator=(const FamilyImpl&) = delete;

  // REQUIRES: values.size() == number of labels (Family<M, N> checks it at compile time).
  Series& GetSeries(std::span<const std::string_view> values);

  MetricType type() const { return type_; }
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<Label>& labels() const { return labels_; }
  std::span<const double> bounds() const { return bounds_; }
  // The series so far, sorted by label values.
  std::vector<const Series*> SortedSeries() const;
  // How many Get calls fell to the overflow series because the family was full.
  uint64_t overflowed() const { return overflowed_.load(std::memory_order_relaxed); }

 private:
  static constexpr size_t kMaxLabels = 8;

  // GetSeries past the lock-free look: checks the values against their domains, folds them, and
  // finds or creates the series. `given` is the series of the values as given, if any.
  Series& GetSeriesChecked(std::span<const std::string_view> values, size_t raw_hash, Series* given,
                           uint64_t epoch);
  [[noreturn]] void WrongLabelCount() const;
  Series* Find(std::span<const std::string_view> values, size_t hash) const;
  Series& Insert(std::span<const std::string_view> values, size_t hash);  // REQUIRES: mu_ held

  const MetricType type_;
  const std::string name_;
  const std::string help_;
  const std::vector<Label> labels_;
  const std::vector<double> bounds_;
  const size_t max_series_;
  // Open addressing, linear probing, insert-only; at least twice the most series there can be
  // (max_series_ + the overflow one), so a probe always ends at an empty slot.
  const size_t mask_;
  const std::unique_ptr<std::atomic<Series*>[]> slots_;
  std::atomic<uint64_t> overflowed_{0};
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Series>> series_;  // guarded by mu_; owns what slots_ point to
};

}  // namespace internal

// A metric with N labels. Get returns the series of a label set, folded to its domains.
template <typename M, size_t N>
class Family final : public internal::FamilyImpl {
 public:
  using internal::FamilyImpl::FamilyImpl;

  // Lock-free once the label set has a series. The reference stays valid while the registry
  // lives, so a caller may resolve a series once and keep it.
  M& Get(const std::array<std::string_view, N>& values) {
    return std::get<M>(GetSeries(values).metric);
  }
};

template <size_t N>
using CounterFamily = Family<Counter, N>;
template <size_t N>
using GaugeFamily = Family<Gauge, N>;
template <size_t N>
using HistogramFamily = Family<Histogram, N>;

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // A label domain. `fixed` values are always allowed; the owner adds its own with SetValues.
  LabelDomain& AddDomain(std::string name, std::vector<std::string> fixed = {});

  // A declaration that breaks Prometheus's rules (a bad or duplicate name, "le" or a duplicate
  // among labels, buckets not strictly increasing) stops the process with a message: it is a bug
  // in the list, and the list's unit test meets it first.
  Counter& AddCounter(std::string name, std::string help);
  template <size_t N>
  CounterFamily<N>& AddCounter(std::string name, std::string help, const Label (&labels)[N],
                               FamilyOptions options = {}) {
    return Add<Counter, N>(MetricType::kCounter, std::move(name), std::move(help), labels, {},
                           options);
  }

  Gauge& AddGauge(std::string name, std::string help);
  template <size_t N>
  GaugeFamily<N>& AddGauge(std::string name, std::string help, const Label (&labels)[N],
                           FamilyOptions options = {}) {
    return Add<Gauge, N>(MetricType::kGauge, std::move(name), std::move(help), labels, {}, options);
  }

  Histogram& AddHistogram(std::string name, std::string help, std::span<const double> bounds);
  template <size_t N>
  HistogramFamily<N>& AddHistogram(std::string name, std::string help, const Label (&labels)[N],
                                   std::span<const double> bounds, FamilyOptions options = {}) {
    return Add<Histogram, N>(MetricType::kHistogram, std::move(name), std::move(help), labels,
                             bounds, options);
  }

  // Runs at the start of every rendering, e.g. to set a gauge computed from a clock (a
  // snapshot's age). Hooks run one rendering at a time.
  void AddCollectHook(std::function<void()> hook);

  // Prometheus text exposition format 0.0.4, families in declaration order; a labelled family
  // with no series yet is left out.
  std::string RenderPrometheus() const;
  // [{"name", "type", "help", "labels": [...], "series": [{"labels": {...}, "value"}]}], in
  // declaration order; a histogram's series have "count", "sum" and "buckets" ([{"le", "count"}],
  // cumulative, finite bounds only) instead of "value".
  nlohmann::json RenderJson() const;

  // The family named `name`, or null.
  const internal::FamilyImpl* Find(std::string_view name) const;

 private:
  template <typename M, size_t N>
  Family<M, N>& Add(MetricType type, std::string name, std::string help, const Label (&labels)[N],
                    std::span<const double> bounds, FamilyOptions options) {
    auto family = std::make_unique<Family<M, N>>(
        type, std::move(name), std::move(help), std::vector<Label>(labels, labels + N),
        std::vector<double>(bounds.begin(), bounds.end()), options);
    Family<M, N>& ref = *family;
    Register(std::move(family));
    return ref;
  }
  void Register(std::unique_ptr<internal::FamilyImpl> family);
  void RunCollectHooks() const;

  std::vector<std::unique_ptr<LabelDomain>> domains_;
  std::vector<std::unique_ptr<internal::FamilyImpl>> families_;
  std::vector<std::function<void()>> hooks_;
  mutable std::mutex render_mu_;  // one rendering at a time runs the hooks
};

// Escapes per the text format: `\` and newline in help text; `\`, `"` and newline in label values.
std::string EscapeHelp(std::string_view help);
std::string EscapeLabelValue(std::string_view value);
// A sample value as Prometheus writes it: shortest round-trip form, "+Inf", "-Inf", "NaN".
std::string FormatValue(double v);

}  // namespace corral::metrics
