#include "common/metrics.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

namespace corral::metrics {
namespace {

// A bug in a declaration list: stop at once, saying which.
[[noreturn]] void DeclarationError(const std::string& what) {
  std::fprintf(stderr, "metrics: bad declaration: %s\n", what.c_str());
  std::abort();
}

bool IsMetricName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(std::string_view s) {
  return IsMetricName(s) && s.find(':') == std::string_view::npos && !s.starts_with("__");
}

// 64x64->128 multiply folded to 64 bits: one instruction pair, and every input bit reaches the
// low bits the series table masks with.
inline uint64_t Mum(uint64_t a, uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

inline uint64_t Load64(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

inline uint64_t Load32(const char* p) {
  uint32_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

// Label values are short (a route, a model tag, a node name): read them a word at a time, inline,
// instead of calling std::hash's byte-wise Murmur for each value of each Get. Not seeded: the
// tables it feeds hold only declared or owner-set values, so a caller cannot flood one bucket.
inline size_t HashOf(std::string_view value) {
  constexpr uint64_t k0 = 0xa0761d6478bd642fULL;
  constexpr uint64_t k1 = 0xe7037ed1a0b428dbULL;
  const char* p = value.data();
  size_t n = value.size();
  uint64_t h = k0 ^ n;
  if (n <= 8) {
    uint64_t w = 0;
    if (n >= 4) {
      w = (Load32(p) << 32) | Load32(p + n - 4);
    } else if (n > 0) {
      w = (static_cast<uint64_t>(static_cast<unsigned char>(p[0])) << 16) |
          (static_cast<uint64_t>(static_cast<unsigned char>(p[n / 2])) << 8) |
          static_cast<unsigned char>(p[n - 1]);
    }
    return Mum(h ^ w, k1);
  }
  while (n > 16) {
    h = Mum(h ^ Load64(p), Load64(p + 8) ^ k1);
    p += 16;
    n -= 16;
  }
  // 1-16 bytes left, and at least 9 in the value: read whole words ending at its last byte, the
  // second overlapping the first (or bytes already hashed) when fewer than 16 are left.
  if (n > 8) return Mum(h ^ Load64(p), Load64(p + n - 8) ^ k1);
  return Mum(h ^ Load64(p + n - 8), k1 ^ n);
}

std::vector<std::pair<size_t, std::string>> HashedSet(std::vector<std::string> values) {
  std::vector<std::pair<size_t, std::string>> out;
  out.reserve(values.size());
  for (std::string& v : values) {
    const size_t hash = HashOf(v);
    out.emplace_back(hash, std::move(v));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool HashedContains(const std::vector<std::pair<size_t, std::string>>& set, std::string_view value,
                    size_t hash) {
  auto it = std::lower_bound(
      set.begin(), set.end(), hash,
      [](const std::pair<size_t, std::string>& e, size_t h) { return e.first < h; });
  for (; it != set.end() && it->first == hash; ++it) {
    if (it->second == value) return true;
  }
  return false;
}

std::atomic<uint64_t> next_domain_id{1};

// Bumped by every LabelDomain::SetValues in the process, after the domain's own generation. A
// series records the epoch at which its label values were last found in their domains; while the
// epoch has not moved, a Get that names exactly those values needs no domain check. One load for
// every family: domains change once per snapshot, and a change costs each series one full check.
std::atomic<uint64_t> domain_epoch{1};

// Each thread's copy of the owner's values of the domains it reads, so Contains never takes a
// domain's mutex unless the owner set new values since this thread last looked. A few slots,
// reused round robin: a process has a handful of domains; tests create and destroy many.
struct DomainCacheEntry {
  uint64_t domain_id = 0;
  uint64_t generation = 0;
  std::shared_ptr<const std::vector<std::pair<size_t, std::string>>> values;
};
constexpr size_t kDomainCacheSlots = 16;
thread_local std::array<DomainCacheEntry, kDomainCacheSlots> domain_cache;
thread_local size_t domain_cache_next = 0;

// The series key's hash, from each value's own hash.
constexpr size_t kCombineSeed = 0x9e3779b97f4a7c15ULL;
// Each value's hash is already mixed through (HashOf): rotating keeps the order of the values in
// the key and costs two instructions.
inline size_t CombineHash(size_t h, size_t v) { return std::rotl(h, 23) ^ v; }
size_t CombineHashes(std::span<const size_t> hashes) {
  size_t h = kCombineSeed;
  for (size_t v : hashes) h = CombineHash(h, v);
  return h;
}

// Equality of short strings a word at a time, inline: a call to memcmp per label value cost more
// than the compare itself.
inline bool SameBytes(std::string_view a, std::string_view b) {
  const size_t n = a.size();
  if (n != b.size()) return false;
  const char* p = a.data();
  const char* q = b.data();
  if (n >= 8) {
    for (size_t i = 0; i + 8 < n; i += 8) {
      if (Load64(p + i) != Load64(q + i)) return false;
    }
    return Load64(p + n - 8) == Load64(q + n - 8);
  }
  if (n >= 4) return Load32(p) == Load32(q) && Load32(p + n - 4) == Load32(q + n - 4);
  // 0-3 bytes: the first, middle and last cover them all.
  return n == 0 || (p[0] == q[0] && p[n / 2] == q[n / 2] && p[n - 1] == q[n - 1]);
}

bool SameValues(const std::vector<std::string>& a, std::span<const std::string_view> b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!SameBytes(a[i], b[i])) return false;
  }
  return true;
}

std::variant<Counter, Gauge, Histogram> MakeMetric(MetricType type,
                                                   std::span<const double> bounds) {
  switch (type) {
    case MetricType::kCounter:
      return std::variant<Counter, Gauge, Histogram>(std::in_place_type<Counter>);
    case MetricType::kGauge:
      return std::variant<Counter, Gauge, Histogram>(std::in_place_type<Gauge>);
    case MetricType::kHistogram:
      break;
  }
  return std::variant<Counter, Gauge, Histogram>(std::in_place_type<Histogram>, bounds);
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      break;
  }
  return "histogram";
}

size_t TableSize(size_t max_series) { return std::bit_ceil(2 * (max_series + 1)); }

// `{a="x",b="y"` without the closing brace, so a histogram can append `le`; empty with no labels.
std::string OpenLabels(const internal::FamilyImpl& family, const internal::Series& series) {
  std::string out;
  for (size_t i = 0; i < family.labels().size(); ++i) {
    out += i == 0 ? "{" : ",";
    out += family.labels()[i].name;
    out += "=\"";
    out += EscapeLabelValue(series.values[i]);
    out += '"';
  }
  return out;
}

std::string CloseLabels(const std::string& open) { return open.empty() ? open : open + "}"; }

std::string WithLe(const std::string& open, std::string_view le) {
  std::string out = open.empty() ? "{" : open + ",";
  out += "le=\"";
  out += le;
  out += "\"}";
  return out;
}

void RenderFamilyText(const internal::FamilyImpl& family, std::string& out) {
  std::vector<const internal::Series*> series = family.SortedSeries();
  if (series.empty()) return;
  out += "# HELP " + family.name() + " " + EscapeHelp(family.help()) + "\n";
  out += "# TYPE " + family.name() + " " + TypeName(family.type()) + "\n";
  for (const internal::Series* s : series) {
    const std::string open = OpenLabels(family, *s);
    if (const auto* c = std::get_if<Counter>(&s->metric)) {
      out += family.name() + CloseLabels(open) + " " + std::to_string(c->value()) + "\n";
    } else if (const auto* g = std::get_if<Gauge>(&s->metric)) {
      out += family.name() + CloseLabels(open) + " " + FormatValue(g->value()) + "\n";
    } else {
      const Histogram& h = std::get<Histogram>(s->metric);
      const Histogram::Snapshot snap = h.Read();
      for (size_t b = 0; b < h.bounds().size(); ++b) {
        out += family.name() + "_bucket" + WithLe(open, FormatValue(h.bounds()[b])) + " " +
               std::to_string(snap.cumulative[b]) + "\n";
      }
      out += family.name() + "_bucket" + WithLe(open, "+Inf") + " " + std::to_string(snap.count) +
             "\n";
      out += family.name() + "_sum" + CloseLabels(open) + " " + FormatValue(snap.sum) + "\n";
      out += family.name() + "_count" + CloseLabels(open) + " " + std::to_string(snap.count) + "\n";
    }
  }
}

nlohmann::json RenderFamilyJson(const internal::FamilyImpl& family) {
  nlohmann::json labels = nlohmann::json::array();
  for (const Label& label : family.labels()) labels.push_back(label.name);
  nlohmann::json series = nlohmann::json::array();
  for (const internal::Series* s : family.SortedSeries()) {
    nlohmann::json entry;
    entry["labels"] = nlohmann::json::object();
    for (size_t i = 0; i < family.labels().size(); ++i) {
      entry["labels"][family.labels()[i].name] = s->values[i];
    }
    if (const auto* c = std::get_if<Counter>(&s->metric)) {
      entry["value"] = c->value();
    } else if (const auto* g = std::get_if<Gauge>(&s->metric)) {
      entry["value"] = g->value();
    } else {
      const Histogram& h = std::get<Histogram>(s->metric);
      const Histogram::Snapshot snap = h.Read();
      entry["count"] = snap.count;
      entry["sum"] = snap.sum;
      nlohmann::json buckets = nlohmann::json::array();
      for (size_t b = 0; b < h.bounds().size(); ++b) {
        buckets.push_back({{"le", h.bounds()[b]}, {"count", snap.cumulative[b]}});
      }
      entry["buckets"] = std::move(buckets);
    }
    series.push_back(std::move(entry));
  }
  return {{"name", family.name()},
          {"type", TypeName(family.type())},
          {"help", family.help()},
          {"labels", std::move(labels)},
          {"series", std::move(series)}};
}

}  // namespace

// ---- LabelDomain ----

LabelDomain::LabelDomain(std::string name, std::vector<std::string> fixed)
    : id_(next_domain_id.fetch_add(1, std::memory_order_relaxed)),
      name_(std::move(name)),
      fixed_(HashedSet(std::move(fixed))),
      owned_(std::make_shared<const Values>()) {}

void LabelDomain::SetValues(std::vector<std::string> values) {
  auto sorted = std::make_shared<const Values>(HashedSet(std::move(values)));
  std::lock_guard<std::mutex> lock(mu_);
  owned_ = std::move(sorted);
  generation_.fetch_add(1, std::memory_order_release);
  domain_epoch.fetch_add(1, std::memory_order_release);
}

bool LabelDomain::Contains(std::string_view value) const {
  return ContainsHashed(value, HashOf(value));
}

bool LabelDomain::ContainsHashed(std::string_view value, size_t hash) const {
  if (value == kOther || HashedContains(fixed_, value, hash)) return true;
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  if (generation == 0) return false;  // the owner never set values
  DomainCacheEntry* entry = nullptr;
  for (DomainCacheEntry& e : domain_cache) {
    if (e.domain_id == id_) {
      entry = &e;
      break;
    }
  }
  if (entry == nullptr) {
    entry = &domain_cache[domain_cache_next];
    domain_cache_next = (domain_cache_next + 1) % kDomainCacheSlots;
    entry->domain_id = id_;
    entry->generation = 0;
  }
  if (entry->generation != generation) {
    std::lock_guard<std::mutex> lock(mu_);
    entry->values = owned_;
    entry->generation = generation_.load(std::memory_order_relaxed);
  }
  return HashedContains(*entry->values, value, hash);
}

// ---- Histogram ----

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snap;
  snap.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    snap.cumulative[i] = running;
  }
  snap.count = running;
  snap.sum = sum_.load(std::memory_order_relaxed);
  return snap;
}

// ---- FamilyImpl ----

namespace internal {

Series::Series(std::vector<std::string> values, size_t hash, MetricType type,
               std::span<const double> bounds)
    : values(std::move(values)), hash(hash), metric(MakeMetric(type, bounds)) {}

FamilyImpl::FamilyImpl(MetricType type, std::string name, std::string help,
                       std::vector<Label> labels, std::vector<double> bounds, FamilyOptions options)
    : type_(type),
      name_(std::move(name)),
      help_(std::move(help)),
      labels_(std::move(labels)),
      bounds_(std::move(bounds)),
      max_series_(std::max<size_t>(options.max_series, 1)),
      mask_(TableSize(max_series_) - 1),
      slots_(new std::atomic<Series*>[TableSize(max_series_)]) {
  for (size_t i = 0; i <= mask_; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
  if (!IsMetricName(name_)) DeclarationError("metric name '" + name_ + "'");
  std::set<std::string_view> seen;
  for (const Label& label : labels_) {
    if (!IsLabelName(label.name)) {
      DeclarationError(name_ + ": label name '" + label.name + "'");
    }
    if (type_ == MetricType::kHistogram && label.name == "le") {
      DeclarationError(name_ + ": 'le' is the bucket label of a histogram");
    }
    if (!seen.insert(label.name).second) {
      DeclarationError(name_ + ": label '" + label.name + "' twice");
    }
  }
  if (type_ == MetricType::kHistogram) {
    if (bounds_.empty()) DeclarationError(name_ + ": a histogram needs buckets");
    for (size_t i = 0; i < bounds_.size(); ++i) {
      if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
        DeclarationError(name_ + ": buckets must be finite and strictly increasing");
      }
    }
  }
}

FamilyImpl::~FamilyImpl() = default;

void FamilyImpl::WrongLabelCount() const {
  DeclarationError(name_ + ": Get with the wrong number of label values");
}

[[gnu::always_inline]] inline Series* FamilyImpl::Find(std::span<const std::string_view> values,
                                                       size_t hash) const {
  for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
    Series* s = slots_[i].load(std::memory_order_acquire);
    if (s == nullptr) return nullptr;
    if (s->hash == hash && SameValues(s->values, values)) return s;
  }
}

Series& FamilyImpl::Insert(std::span<const std::string_view> values, size_t hash) {
  auto series = std::make_unique<Series>(std::vector<std::string>(values.begin(), values.end()),
                                         hash, type_, bounds_);
  size_t i = hash & mask_;
  while (slots_[i].load(std::memory_order_relaxed) != nullptr) i = (i + 1) & mask_;
  Series& ref = *series;
  series_.push_back(std::move(series));
  slots_[i].store(&ref, std::memory_order_release);  // publishes the constructed series
  return ref;
}

Series& FamilyImpl::GetSeries(std::span<const std::string_view> values) {
  if (values.size() != labels_.size() || values.size() > kMaxLabels) WrongLabelCount();
  // Loaded before any domain is read, so a series marked with this epoch was checked against
  // values at least as new as it.
  const uint64_t epoch = domain_epoch.load(std::memory_order_acquire);
  size_t hash = kCombineSeed;
  for (std::string_view v : values) hash = CombineHash(hash, HashOf(v));
  // The common case: the values as given are a series checked since the last SetValues.
  Series* s = Find(values, hash);
  if (s != nullptr && s->checked_epoch.load(std::memory_order_relaxed) == epoch) return *s;
  return GetSeriesChecked(values, hash, s, epoch);
}

// Out of line: the fast path above then needs few registers and no frame.
[[gnu::noinline]] Series& FamilyImpl::GetSeriesChecked(std::span<const std::string_view> values,
                                                       size_t raw_hash, Series* given,
                                                       uint64_t epoch) {
  static const size_t other_hash = HashOf(kOther);
  std::array<std::string_view, kMaxLabels> folded_storage;
  std::array<size_t, kMaxLabels> hashes;
  bool all_in_domain = true;
  for (size_t i = 0; i < values.size(); ++i) {
    hashes[i] = HashOf(values[i]);
    if (labels_[i].domain.ContainsHashed(values[i], hashes[i])) {
      folded_storage[i] = values[i];
    } else {
      folded_storage[i] = kOther;
      hashes[i] = other_hash;
      all_in_domain = false;
    }
  }
  if (all_in_domain && given != nullptr) {
    given->checked_epoch.store(epoch, std::memory_order_relaxed);
    return *given;
  }
  std::span<const std::string_view> folded(folded_storage.data(), values.size());
  const size_t hash = all_in_domain
                          ? raw_hash
                          : CombineHashes(std::span<const size_t>(hashes.data(), values.size()));
  if (!all_in_domain) {
    if (Series* found = Find(folded, hash)) return *found;
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (Series* found = Find(folded, hash)) return *found;  // created since the lock-free look
  if (series_.size() < max_series_) {
    Series& created = Insert(folded, hash);
    if (all_in_domain) created.checked_epoch.store(epoch, std::memory_order_relaxed);
    return created;
  }
  // Full: the all-"other" series, which may exist beyond max_series_ (the table has room).
  overflowed_.fetch_add(1, std::memory_order_relaxed);
  folded_storage.fill(kOther);
  hashes.fill(other_hash);
  const size_t all_other_hash =
      CombineHashes(std::span<const size_t>(hashes.data(), values.size()));
  if (Series* found = Find(folded, all_other_hash)) return *found;
  return Insert(folded, all_other_hash);
}

std::vector<const Series*> FamilyImpl::SortedSeries() const {
  std::vector<const Series*> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.reserve(series_.size());
    for (const auto& s : series_) out.push_back(s.get());
  }
  std::sort(out.begin(), out.end(),
            [](const Series* a, const Series* b) { return a->values < b->values; });
  return out;
}

}  // namespace internal

// ---- Registry ----

Registry::Registry() = default;
Registry::~Registry() = default;

LabelDomain& Registry::AddDomain(std::string name, std::vector<std::string> fixed) {
  domains_.push_back(std::make_unique<LabelDomain>(std::move(name), std::move(fixed)));
  return *domains_.back();
}

void Registry::Register(std::unique_ptr<internal::FamilyImpl> family) {
  // A family's samples are name, name_bucket, name_sum, name_count: none may meet another's.
  auto sample_names = [](const internal::FamilyImpl& f) {
    std::vector<std::string> names{f.name()};
    if (f.type() == MetricType::kHistogram) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) names.push_back(f.name() + suffix);
    }
    return names;
  };
  for (const auto& existing : families_) {
    for (const std::string& a : sample_names(*existing)) {
      for (const std::string& b : sample_names(*family)) {
        if (a == b) DeclarationError("metric name '" + a + "' declared twice");
      }
    }
  }
  families_.push_back(std::move(family));
}

Counter& Registry::AddCounter(std::string name, std::string help) {
  auto family = std::make_unique<CounterFamily<0>>(MetricType::kCounter, std::move(name),
                                                   std::move(help), std::vector<Label>{},
                                                   std::vector<double>{}, FamilyOptions{});
  Counter& counter = family->Get({});
  Register(std::move(family));
  return counter;
}

Gauge& Registry::AddGauge(std::string name, std::string help) {
  auto family = std::make_unique<GaugeFamily<0>>(MetricType::kGauge, std::move(name),
                                                 std::move(help), std::vector<Label>{},
                                                 std::vector<double>{}, FamilyOptions{});
  Gauge& gauge = family->Get({});
  Register(std::move(family));
  return gauge;
}

Histogram& Registry::AddHistogram(std::string name, std::string help,
                                  std::span<const double> bounds) {
  auto family = std::make_unique<HistogramFamily<0>>(
      MetricType::kHistogram, std::move(name), std::move(help), std::vector<Label>{},
      std::vector<double>(bounds.begin(), bounds.end()), FamilyOptions{});
  Histogram& histogram = family->Get({});
  Register(std::move(family));
  return histogram;
}

void Registry::AddCollectHook(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }

void Registry::RunCollectHooks() const {
  for (const auto& hook : hooks_) hook();
}

std::string Registry::RenderPrometheus() const {
  std::lock_guard<std::mutex> lock(render_mu_);
  RunCollectHooks();
  std::string out;
  for (const auto& family : families_) RenderFamilyText(*family, out);
  return out;
}

nlohmann::json Registry::RenderJson() const {
  std::lock_guard<std::mutex> lock(render_mu_);
  RunCollectHooks();
  nlohmann::json out = nlohmann::json::array();
  for (const auto& family : families_) out.push_back(RenderFamilyJson(*family));
  return out;
}

const internal::FamilyImpl* Registry::Find(std::string_view name) const {
  for (const auto& family : families_) {
    if (family->name() == name) return family.get();
  }
  return nullptr;
}

// ---- text format ----

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";  // cannot happen with 64 bytes
  return std::string(buf, end);
}

}  // namespace corral::metrics
