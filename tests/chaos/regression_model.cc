#include "tests/chaos/regression_model.h"

#include <algorithm>
#include <cmath>

namespace kolo {
namespace chaos {
namespace {

constexpr int kTeacherRank = 4;
// The quantisation grid and its bound: |value| < 2^5 on a 2^-16 grid is 21
// significant bits; kMaxRanks (2^3) of them sum exactly in float32's 24.
constexpr float kGrid = 65536.0f;
constexpr float kLargestSteps = (1 << 21) - 1;
constexpr float kRounder = 12582912.0f;

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1), exactly representable in float32.
float Uniform(uint64_t* state) {
  return static_cast<float>(static_cast<int64_t>(SplitMix64(state) >> 40) -
                            (int64_t{1} << 23)) /
         static_cast<float>(1 << 23);
}

uint64_t StreamOf(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t state = seed;
  for (uint64_t v : {a, b, c}) {
    state ^= v + 0x9e3779b97f4a7c15ull + (state << 6) + (state >> 2);
    SplitMix64(&state);
  }
  return state;
}

}  // namespace

RegressionModel::RegressionModel(const ModelConfig& config)
    : config_(config),
      down_(kTeacherRank * kInputs),
      up_(kOutputs * kTeacherRank),
      x_(kInputs),
      y_(kOutputs),
      error_(kOutputs) {
  uint64_t state = StreamOf(config.seed, ~uint64_t{0}, 0, 0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(kInputs));
  for (float& v : down_) v = Uniform(&state) * scale;
  for (float& v : up_) v = Uniform(&state);
}

float RegressionModel::Quantize(float value) {
  const float steps = std::clamp(value * kGrid, -kLargestSteps, kLargestSteps);
  // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer (ties
  // to even) for |steps| < 2^22, like nearbyint, but vectorises.
  return ((steps + kRounder) - kRounder) * (1.0f / kGrid);
}

void RegressionModel::Sample(int rank, int64_t step, int index) {
  uint64_t state =
      StreamOf(config_.seed, static_cast<uint64_t>(rank),
               static_cast<uint64_t>(step), static_cast<uint64_t>(index));
  for (float& v : x_) v = Uniform(&state);
  float hidden[kTeacherRank];
  for (int k = 0; k < kTeacherRank; ++k) {
    const float* row = &down_[k * kInputs];
    float sum = 0;
    for (int j = 0; j < kInputs; ++j) sum += row[j] * x_[j];
    hidden[k] = sum;
  }
  for (int o = 0; o < kOutputs; ++o) {
    float sum = 0.01f * Uniform(&state);
    for (int k = 0; k < kTeacherRank; ++k) {
      sum += up_[o * kTeacherRank + k] * hidden[k];
    }
    y_[o] = sum;
  }
}

void RegressionModel::ComputeGradient(const std::vector<float>& params,
                                      int rank, int64_t step, Gradient* out) {
  out->params.assign(kParamCount, 0.0f);
  float* __restrict grad = out->params.data();
  const float* __restrict weights = params.data();
  const float* __restrict bias = params.data() + kWeightCount;
  float* __restrict error = error_.data();
  const float inverse_batch = 1.0f / static_cast<float>(config_.batch);
  double loss = 0;
  for (int i = 0; i < config_.batch; ++i) {
    Sample(rank, step, i);
    // Prediction, one input column at a time (vectorises without
    // reassociating sums, so every process gets the same bits).
    for (int o = 0; o < kOutputs; ++o) error[o] = bias[o] - y_[o];
    for (int j = 0; j < kInputs; ++j) {
      const float xj = x_[j];
      const float* __restrict column = weights + int64_t{j} * kOutputs;
      for (int o = 0; o < kOutputs; ++o) error[o] += xj * column[o];
    }
    double squares = 0;
    for (int o = 0; o < kOutputs; ++o) squares += double{error[o]} * error[o];
    loss += 0.5 * squares / kOutputs;
    for (int j = 0; j < kInputs; ++j) {
      const float xj = x_[j] * inverse_batch;
      float* __restrict column = grad + int64_t{j} * kOutputs;
      for (int o = 0; o < kOutputs; ++o) column[o] += xj * error[o];
    }
    float* __restrict bias_grad = grad + kWeightCount;
    for (int o = 0; o < kOutputs; ++o) {
      bias_grad[o] += error[o] * inverse_batch;
    }
  }
  for (float& v : out->params) v = Quantize(v);
  out->loss = Quantize(static_cast<float>(loss / config_.batch));
}

void RegressionModel::ApplyUpdate(const std::vector<float>& sum, int world_size,
                                  std::vector<float>* params) const {
  const float factor = config_.learning_rate / static_cast<float>(world_size);
  float* __restrict p = params->data();
  const float* __restrict s = sum.data();
  for (int64_t k = 0; k < kParamCount; ++k) p[k] -= factor * s[k];
}

}  // namespace chaos
}  // namespace kolo
