// The chaos test's training workload: multi-output linear regression
// (1024 inputs, 1024 outputs: 1,049,600 parameters) trained by SGD on
// synthetic data that every rank can regenerate for any rank and step.
//
// The data of (seed, rank, step) comes from a counter-based generator, so
// any process can compute any rank's gradient for any step. Each rank's
// gradient is quantised to a multiple of 2^-16 of magnitude below 32: a sum
// of up to kMaxRanks such values needs at most 24 significant bits, so a
// float32 sum of them is exact in any order. That makes the allreduced
// gradient a value with one right answer, which every rank computes itself
// and compares bit for bit with what kolo returned.
//
// Thread safety: none; one instance per thread.
#ifndef KOLO_TESTS_CHAOS_REGRESSION_MODEL_H_
#define KOLO_TESTS_CHAOS_REGRESSION_MODEL_H_

#include <cstdint>
#include <vector>

namespace kolo {
namespace chaos {

inline constexpr int kInputs = 1024;
inline constexpr int kOutputs = 1024;
inline constexpr int64_t kWeightCount = int64_t{kInputs} * kOutputs;
// Weights (input-major: weight[j * kOutputs + o]) followed by the bias.
inline constexpr int64_t kParamCount = kWeightCount + kOutputs;
// The largest world whose quantised gradient sums stay exact in float32.
inline constexpr int kMaxRanks = 8;

struct ModelConfig {
  uint64_t seed = 1;
  int batch = 2;  // samples per rank and step
  float learning_rate = 0.002f;
};

// One rank's contribution to one step, already quantised.
struct Gradient {
  std::vector<float> params;  // kParamCount values, laid out like the model
  float loss = 0;             // mean squared error of the batch, quantised
};

class RegressionModel {
 public:
  explicit RegressionModel(const ModelConfig& config);

  // The gradient that `rank` contributes at `step` for `params`.
  // REQUIRES: params.size() == kParamCount; out is reused between calls.
  void ComputeGradient(const std::vector<float>& params, int rank, int64_t step,
                       Gradient* out);

  // params -= learning_rate * sum / world_size.
  void ApplyUpdate(const std::vector<float>& sum, int world_size,
                   std::vector<float>* params) const;

  // Rounds to the grid every rank's contribution lives on.
  static float Quantize(float value);

  const ModelConfig& config() const { return config_; }

 private:
  void Sample(int rank, int64_t step, int index);

  ModelConfig config_;
  // The teacher: targets are up_ * (down_ * x) plus a little noise, a rank-4
  // map the student can learn.
  std::vector<float> down_;  // kTeacherRank x kInputs
  std::vector<float> up_;    // kOutputs x kTeacherRank
  std::vector<float> x_, y_, error_;
};

}  // namespace chaos
}  // namespace kolo

#endif  // KOLO_TESTS_CHAOS_REGRESSION_MODEL_H_
