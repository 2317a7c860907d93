// Deterministic pseudo-random numbers for splits, augmentation and the
// synthetic data generator. The standard library's distributions (and
// std::shuffle) are implementation-defined, so they would make "same seed,
// same split" depend on the standard library; the integer streams here are
// specified bit for bit (Normal() also depends on the C library's log/cos).
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_RANDOM_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_RANDOM_H_

#include <cmath>
#include <cstdint>
#include <utility>

namespace kolo::chexnet {

// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
constexpr uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

// Combines values into one well-mixed key (e.g. seed, epoch, image index).
constexpr uint64_t HashCombine(uint64_t a, uint64_t b) {
  return Mix64(a ^ (Mix64(b) + 0x9E3779B97F4A7C15ULL + (a << 6) + (a >> 2)));
}

// SplitMix64 generator. Not thread-safe; use one per thread or per item.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t NextU64() {
    state_ += 0x9E3779B97F4A7C15ULL;
    return Mix64(state_);
  }

  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

  // Uniform integer in [0, n). REQUIRES: n > 0. Rejection sampling keeps it
  // exactly uniform.
  uint64_t UniformInt(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
      x = NextU64();
    } while (x >= limit);
    return x % n;
  }

  bool Bernoulli(double p) { return Uniform() < p; }

  // Standard normal (Box-Muller; one value per call keeps the state simple).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

// Fisher-Yates shuffle driven by Rng.
template <typename T>
void Shuffle(T& items, Rng& rng) {
  for (size_t i = items.size(); i > 1; --i) {
    std::swap(items[i - 1], items[rng.UniformInt(i)]);
  }
}

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_RANDOM_H_
