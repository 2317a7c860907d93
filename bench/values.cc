// Input values and the reference results of kolo_bench.
#include "bench/values.h"

#include <cmath>
#include <cstring>

#include "runtime/common/dtype_dispatch.h"

namespace kolo::bench {
namespace {

// Conversions between a dtype's storage (runtime/common/dtype_dispatch.h's
// types; the arithmetic is the reference's own) and double. Store() rounds to
// nearest even (floats) or wraps (integers, as kolo's kernels do); kEpsilon
// is the dtype's relative rounding step (0 for integers).
template <typename T>
struct Codec {
  static double Load(T value) { return static_cast<double>(value); }
  static T Store(double value) {
    return static_cast<T>(static_cast<int64_t>(value));
  }
  static constexpr double kEpsilon = 0;
};
template <>
struct Codec<float> {
  static double Load(float value) { return value; }
  static float Store(double value) { return static_cast<float>(value); }
  static constexpr double kEpsilon = 0x1p-23;
};
template <>
struct Codec<double> {
  static double Load(double value) { return value; }
  static double Store(double value) { return value; }
  static constexpr double kEpsilon = 0x1p-52;
};
// The compiler's _Float16 does the rounding, not kolo's half.h.
template <>
struct Codec<Float16> {
  static double Load(Float16 value) {
    _Float16 half;
    std::memcpy(&half, &value.bits, sizeof(half));
    return static_cast<double>(half);
  }
  static Float16 Store(double value) {
    const _Float16 half = static_cast<_Float16>(value);
    Float16 result;
    std::memcpy(&result.bits, &half, sizeof(half));
    return result;
  }
  static constexpr double kEpsilon = 0x1p-10;
};
template <>
struct Codec<Bfloat16> {
  static double Load(Bfloat16 value) {
    const uint32_t bits = static_cast<uint32_t>(value.bits) << 16;
    float result;
    std::memcpy(&result, &bits, sizeof(result));
    return result;
  }
  static Bfloat16 Store(double value) {
    const float narrowed = static_cast<float>(value);
    uint32_t bits;
    std::memcpy(&bits, &narrowed, sizeof(bits));
    const uint32_t odd = (bits >> 16) & 1u;
    return Bfloat16{static_cast<uint16_t>((bits + 0x7fffu + odd) >> 16)};
  }
  static constexpr double kEpsilon = 0x1p-7;
};
template <>
struct Codec<BoolByte> {
  // The raw byte, so that anything but 0 or 1 (the poison) compares unequal.
  static double Load(BoolByte value) { return value.value; }
  static BoolByte Store(double value) {
    return BoolByte{static_cast<uint8_t>(value != 0 ? 1 : 0)};
  }
  static constexpr double kEpsilon = 0;
};

bool IsInteger(DataType dtype) {
  const DtypeKind kind = DtypeKindOf(dtype);
  return kind == DtypeKind::kInteger || kind == DtypeKind::kLogical;
}

// splitmix64's finaliser: consecutive inputs give unrelated outputs.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9u;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebu;
  x ^= x >> 31;
  return x;
}

// The reduction of element `index` of every rank's input, as kolo defines
// it: bool sum is logical or; average divides the sum by the rank count,
// rounding integers toward zero.
double ReduceOverRanks(const ValueModel& model, ReduceOp op, int ranks,
                       int64_t index) {
  double result = model.Input(0, index);
  for (int r = 1; r < ranks; ++r) {
    const double value = model.Input(r, index);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAverage:
        result += value;
        break;
      case ReduceOp::kMin:
        result = std::fmin(result, value);
        break;
      case ReduceOp::kMax:
        result = std::fmax(result, value);
        break;
      case ReduceOp::kProduct:
        result *= value;
        break;
      case ReduceOp::kAdasum:  // not a kolo_bench op (flags.cc)
        break;
    }
  }
  if (model.dtype() == DataType::kBool) return result != 0 ? 1 : 0;
  if (op == ReduceOp::kAverage) {
    result /= ranks;
    if (IsInteger(model.dtype())) result = std::trunc(result);
  }
  return result;
}

template <typename T>
int64_t CountWrongTyped(const Layout& layout, const ValueModel& model,
                        ReduceOp op, int root, int rank, const T* output) {
  // Averages divide, so kolo and the reference may round differently once.
  const bool within_rounding =
      Reduces(layout.collective) && op == ReduceOp::kAverage;
  const int ranks = layout.ranks;
  int64_t wrong = 0;
  auto check = [&](int64_t output_index, double reference) {
    const double expected = Codec<T>::Load(Codec<T>::Store(reference));
    const double actual = Codec<T>::Load(output[output_index]);
    const bool ok = within_rounding
                        ? std::fabs(actual - expected) <=
                              Codec<T>::kEpsilon * std::fabs(expected)
                        : actual == expected;
    if (!ok) ++wrong;
  };
  for (const Part& part : layout.parts) {
    switch (layout.collective) {
      case Collective::kAllreduce:
        for (int64_t i = 0; i < part.output_count; ++i) {
          check(part.output_offset + i,
                ReduceOverRanks(model, op, ranks, part.input_offset + i));
        }
        break;
      case Collective::kBroadcast:
        for (int64_t i = 0; i < part.output_count; ++i) {
          check(part.output_offset + i,
                model.Input(root, part.input_offset + i));
        }
        break;
      case Collective::kAllgather:
        // Rank r's part lands at r * part.input_count.
        for (int r = 0; r < ranks; ++r) {
          for (int64_t i = 0; i < part.input_count; ++i) {
            check(part.output_offset + r * part.input_count + i,
                  model.Input(r, part.input_offset + i));
          }
        }
        break;
      case Collective::kAlltoall: {
        // Rank j sent this rank the chunk at rank * chunk of its part.
        const int64_t chunk = part.input_count / ranks;
        for (int j = 0; j < ranks; ++j) {
          for (int64_t i = 0; i < chunk; ++i) {
            check(part.output_offset + j * chunk + i,
                  model.Input(j, part.input_offset + rank * chunk + i));
          }
        }
        break;
      }
      case Collective::kReducescatter: {
        const int64_t share = part.output_count;
        for (int64_t i = 0; i < share; ++i) {
          check(part.output_offset + i,
                ReduceOverRanks(model, op, ranks,
                                part.input_offset + rank * share + i));
        }
        break;
      }
    }
  }
  return wrong;
}

}  // namespace

ValueKind ValueKindFor(Collective collective, ReduceOp op) {
  if (!Reduces(collective)) return ValueKind::kMoved;
  return op == ReduceOp::kProduct ? ValueKind::kMultiplied
                                  : ValueKind::kReduced;
}

double ValueModel::Input(int rank, int64_t index) const {
  const uint64_t hash = Mix(static_cast<uint64_t>(index) * 0x9e3779b97f4a7c15u +
                            static_cast<uint64_t>(rank) * 0xd1b54a32d192ed03u +
                            static_cast<uint64_t>(seed_) * 0x8cb92ba72f3d8dd7u);
  if (dtype_ == DataType::kBool) return static_cast<double>(hash & 1);
  const bool is_unsigned = dtype_ == DataType::kUint8;
  switch (kind_) {
    case ValueKind::kMoved:
      return static_cast<double>(hash % 61) - (is_unsigned ? 0 : 30);
    case ValueKind::kReduced:
      return is_unsigned ? static_cast<double>(hash % 4)
                         : static_cast<double>(hash % 7) - 3;
    case ValueKind::kMultiplied: {
      if (is_unsigned) return static_cast<double>(1 + hash % 2);
      static constexpr double kFactors[] = {-2, -1, 1, 2};
      return kFactors[hash % 4];
    }
  }
  return 0;
}

void FillInput(const ValueModel& model, int rank, void* data, int64_t offset,
               int64_t count) {
  DispatchDtype(model.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::Type;
    T* elements = static_cast<T*>(data);
    for (int64_t i = 0; i < count; ++i) {
      elements[i] = Codec<T>::Store(model.Input(rank, offset + i));
    }
  });
}

void Poison(DataType dtype, void* data, int64_t count) {
  DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::Type;
    if constexpr (sizeof(T) == 1) {
      std::memset(data, 0xaa, count);
    } else {
      T* elements = static_cast<T*>(data);
      const T poison = Codec<T>::Store(77);
      for (int64_t i = 0; i < count; ++i) elements[i] = poison;
    }
  });
}

int64_t CountWrong(const Layout& layout, const ValueModel& model, ReduceOp op,
                   int root, int rank, const void* output) {
  return DispatchDtype(model.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::Type;
    return CountWrongTyped(layout, model, op, root, rank,
                           static_cast<const T*>(output));
  });
}

}  // namespace kolo::bench
