// The 16-bit floating-point formats kolo reduces in float32 (IEEE binary16
// and bfloat16): their storage types and conversions to and from float32.
// Round to nearest even; NaN stays NaN, infinities and signed zeros are
// preserved.
#ifndef KOLO_RUNTIME_COMMON_HALF_H_
#define KOLO_RUNTIME_COMMON_HALF_H_

#include <cstdint>
#include <cstring>

namespace kolo {

// One element's bits. Two types rather than uint16_t, so that the storage type
// alone names the format (dtype_dispatch.h maps each dtype to its own type).
struct Float16 {
  uint16_t bits;
};
struct Bfloat16 {
  uint16_t bits;
};

inline uint32_t FloatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline float BitsToFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

inline float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) {  // infinity or NaN
    return BitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent != 0) {  // normal
    return BitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  }
  if (mantissa == 0) return BitsToFloat(sign);  // signed zero
  // Subnormal: value = mantissa * 2^-24, exact in float32.
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

inline uint16_t FloatToHalf(float value) {
  const uint32_t bits = FloatBits(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // infinity or NaN (keep NaN quiet)
    return sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0u);
  }
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // rounds to infinity
  if (magnitude < 0x38800000u) {
    // Result is subnormal or zero: round magnitude / 2^-24 to an integer.
    // Adding 0.5f pushes the mantissa into float's fixed-point position.
    const float scaled = BitsToFloat(magnitude) + 0.5f;
    return sign | static_cast<uint16_t>(FloatBits(scaled) - 0x3f000000u);
  }
  // Normal: rebias the exponent and round the 13 dropped bits to nearest even.
  const uint32_t odd = (magnitude >> 13) & 1u;
  const uint32_t rounded = magnitude + 0xc8000fffu + odd;
  return sign | static_cast<uint16_t>(rounded >> 13);
}

inline float Bfloat16ToFloat(uint16_t value) {
  return BitsToFloat(static_cast<uint32_t>(value) << 16);
}

inline uint16_t FloatToBfloat16(float value) {
  const uint32_t bits = FloatBits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it a quiet NaN
    return static_cast<uint16_t>((bits >> 16) | 0x40u);
  }
  const uint32_t odd = (bits >> 16) & 1u;
  return static_cast<uint16_t>((bits + 0x7fffu + odd) >> 16);
}

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_HALF_H_
