// A zero-filled, cache-line-aligned byte buffer that owns its memory. The
// pages are touched at allocation, so page faults never land in a timing.
#ifndef KOLO_BENCH_ALIGNED_BUFFER_H_
#define KOLO_BENCH_ALIGNED_BUFFER_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace kolo::bench {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t bytes) : bytes_(bytes) {
    // aligned_alloc needs a multiple of the alignment; one byte more keeps
    // the pointer valid for empty buffers.
    const size_t rounded =
        (static_cast<size_t>(bytes) / kAlignment + 1) * kAlignment;
    data_ = std::aligned_alloc(kAlignment, rounded);
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(data_, 0, rounded);
  }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }

  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  static constexpr size_t kAlignment = 64;
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace kolo::bench

#endif  // KOLO_BENCH_ALIGNED_BUFFER_H_
