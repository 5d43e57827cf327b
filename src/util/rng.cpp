#include "util/rng.h"

#include "util/error.h"

namespace flame {

uint64_t mix_seed(uint64_t a, uint64_t b) {
  // SplitMix64's finalizer over a, then over (that ^ b): a change in either input
  // changes every output bit with probability ~1/2.
  const auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  return mix(mix(a) ^ b);
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) {
  return mix_seed(mix_seed(a, b), c);
}

uint64_t random_below(std::mt19937_64& rng, uint64_t n) {
  if (n == 0) fail("random_below: empty range");
  // Values at or above the largest multiple of n would favour small results.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x = rng();
  while (x >= limit) x = rng();
  return x % n;
}

double random_unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace flame
