// This rank's input and output buffers of one benchmarked collective, in host
// memory (--device cpu) or in one GPU's memory (--device cuda).
//
// Inputs are written into the host side and results checked there; Upload()
// and Download() move them between host and device outside the timed
// iterations. On the CPU the host side is the buffer itself and both are
// no-ops. Buffers are allocated once, at the largest size of the sweep.
#ifndef KOLO_BENCH_MESSAGE_BUFFERS_H_
#define KOLO_BENCH_MESSAGE_BUFFERS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "bench/aligned_buffer.h"
#include "kolo/status.h"
#include "kolo/types.h"

namespace kolo::bench {

// True when this kolo_bench was built with CUDA and NCCL (--device cuda).
bool CudaBuilt();

// The GPU a rank uses: local_rank % visible GPUs. Fails (naming --device
// cuda) without a CUDA build, without a visible GPU, or when more ranks share
// this host than it has GPUs (NCCL needs one GPU per rank). Selects the GPU
// for this thread (cudaSetDevice).
StatusOr<int> SelectGpu(int local_rank, int local_size);

// "CUDA runtime 13.0, driver 13.0, NVIDIA H200 (GPU 0 of 1)"; empty
// without CUDA.
std::string DescribeGpu(int gpu);

class MessageBuffers {
 public:
  // gpu < 0: host memory. Fails when device memory cannot be allocated.
  static StatusOr<std::unique_ptr<MessageBuffers>> Create(int64_t input_bytes,
                                                          int64_t output_bytes,
                                                          int gpu);
  ~MessageBuffers();
  MessageBuffers(const MessageBuffers&) = delete;
  MessageBuffers& operator=(const MessageBuffers&) = delete;

  // What the collective reads and writes.
  void* input() const { return device_input_ ? device_input_ : host_input(); }
  void* output() const {
    return device_output_ ? device_output_ : host_output();
  }
  // Where values are written and checked.
  void* host_input() const { return host_input_.data(); }
  void* host_output() const { return host_output_.data(); }
  // The kolo::Tensor device of input() and output().
  Device device() const;
  bool on_gpu() const { return gpu_ >= 0; }

  // Copies the first bytes of the host buffers to the device (synchronous).
  // A failed copy ends the job (MPI_Abort): the GPU is unusable.
  void Upload(int64_t input_bytes, int64_t output_bytes) const;
  // Copies the first bytes of the device output to the host (synchronous).
  void Download(int64_t output_bytes) const;

 private:
  MessageBuffers(int64_t input_bytes, int64_t output_bytes, int gpu);

  AlignedBuffer host_input_;
  AlignedBuffer host_output_;
  int gpu_;
  void* device_input_ = nullptr;
  void* device_output_ = nullptr;
};

}  // namespace kolo::bench

#endif  // KOLO_BENCH_MESSAGE_BUFFERS_H_
