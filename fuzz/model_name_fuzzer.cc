// Fuzzes model-name normalisation (common/model_name.h): the names clients put in request
// bodies and the names nodes list, which the proxy matches by canonical key.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/model_name.h"
#include "fuzz/fuzz_check.h"

namespace {

bool IsLowerAscii(std::string_view s) {
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') return false;
  }
  return true;
}

std::string ToUpperAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view name(reinterpret_cast<const char*>(data), size);
  const std::string shown(name);
  const auto ref = corral::ParseModelName(name);
  const auto key = corral::CanonicalModelKey(name);
  FUZZ_CHECK(ref.has_value() == key.has_value(), "[%s]", shown.c_str());
  if (!ref) return 0;

  FUZZ_CHECK(*key == corral::CanonicalKey(*ref), "[%s]", shown.c_str());
  FUZZ_CHECK(IsLowerAscii(*key), "key %s of [%s] is not lower-case", key->c_str(), shown.c_str());
  FUZZ_CHECK(
      !ref->host.empty() && !ref->namespace_.empty() && !ref->model.empty() && !ref->tag.empty(),
      "[%s] parsed with an empty part", shown.c_str());

  // The display form names the same model.
  const std::string display = corral::DisplayName(*ref);
  const auto display_key = corral::CanonicalModelKey(display);
  FUZZ_CHECK(display_key == key, "[%s]: display %s has key %s, expected %s", shown.c_str(),
             display.c_str(), display_key ? display_key->c_str() : "(invalid)", key->c_str());
  // Displaying is idempotent.
  const auto display_ref = corral::ParseModelName(display);
  FUZZ_CHECK(display_ref && corral::DisplayName(*display_ref) == display,
             "[%s]: display %s does not display as itself", shown.c_str(), display.c_str());

  // The key is itself a name for the same model.
  FUZZ_CHECK(corral::CanonicalModelKey(*key) == key, "[%s]: key %s is not a fixed point",
             shown.c_str(), key->c_str());

  // Names are case-insensitive and surrounding whitespace does not count.
  const auto upper_key = corral::CanonicalModelKey(ToUpperAscii(name));
  FUZZ_CHECK(upper_key == key, "[%s]: upper-cased it has key %s, expected %s", shown.c_str(),
             upper_key ? upper_key->c_str() : "(invalid)", key->c_str());
  const auto padded_key = corral::CanonicalModelKey(" \t" + shown + "\n ");
  FUZZ_CHECK(padded_key == key, "[%s]: padded it has key %s", shown.c_str(),
             padded_key ? padded_key->c_str() : "(invalid)");
  return 0;
}
