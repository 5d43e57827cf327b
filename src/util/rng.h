// Portable random draws: std distributions differ between standard libraries,
// these do not, so a seed gives the same shuffle and the same augmentation on
// every machine, in any worker thread, and after a resume.
#pragma once

#include <cstdint>
#include <random>

namespace flame {

// Mixes values into one well-spread 64-bit seed (SplitMix64 finalizer chain).
uint64_t mix_seed(uint64_t a, uint64_t b);
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c);
// Uniform in [0, n), unbiased (rejection sampling); n > 0.
uint64_t random_below(std::mt19937_64& rng, uint64_t n);
// Uniform in [0, 1) with 53 random bits.
double random_unit(std::mt19937_64& rng);

}  // namespace flame
