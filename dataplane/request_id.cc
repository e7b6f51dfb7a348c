#include "dataplane/request_id.h"

#include <sys/random.h>

#include <chrono>
#include <cstdint>
#include <thread>

namespace corral::dataplane {
namespace {

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// xoshiro256** (Blackman and Vigna): fast, 256 bits of state, no bias in its 64-bit outputs.
class IdGenerator {
 public:
  IdGenerator() {
    uint64_t seed[4] = {};
    if (getrandom(seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed)) {
      // No entropy source (a very old kernel, a seccomp filter): ids need only be unique, so
      // the time and the thread make a seed good enough.
      uint64_t mix =
          static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
          std::hash<std::thread::id>{}(std::this_thread::get_id());
      for (uint64_t& s : seed) s = SplitMix(&mix);
    }
    for (int i = 0; i < 4; ++i) s_[i] = seed[i];
    if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) s_[0] = 1;  // the one state xoshiro cannot leave
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

 private:
  uint64_t s_[4];
};

}  // namespace

bool IsUsableRequestId(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdBytes) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

std::string NewRequestId() {
  thread_local IdGenerator generator;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t bits = generator.Next();
    for (int i = 0; i < 16; ++i) {
      id[static_cast<size_t>(half * 16 + i)] = kHex[bits & 0xf];
      bits >>= 4;
    }
  }
  return id;
}

std::string RequestIdFor(const std::string* from_client) {
  if (from_client != nullptr && IsUsableRequestId(*from_client)) return *from_client;
  return NewRequestId();
}

}  // namespace corral::dataplane
