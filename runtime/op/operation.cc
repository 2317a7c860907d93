// Implementation of Operation and of Handle (kolo/kolo.h).
#include "runtime/op/operation.h"

namespace kolo {
namespace internal {

void Operation::Complete(const Status& entry_status) {
  MutexLock lock(&mu);
  if (status.ok() && !entry_status.ok()) status = entry_status;
  if (--remaining <= 0) completed.SignalAll();
}

bool Operation::done() const {
  MutexLock lock(&mu);
  return remaining <= 0;
}

bool Operation::Poll() const {
  if (!done() && fast.load(std::memory_order_acquire)) {
    if (std::shared_ptr<WaitHelper> h = helper.lock()) h->HelpOnce();
  }
  return done();
}

Status Operation::Wait() const {
  if (fast.load(std::memory_order_acquire)) {
    if (std::shared_ptr<WaitHelper> h = helper.lock()) h->HelpUntilDone(*this);
  }
  MutexLock lock(&mu);
  while (remaining > 0) completed.Wait(&mu);
  return status;
}

}  // namespace internal

int64_t RowElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

int64_t Rows(const std::vector<int64_t>& shape) {
  return shape.empty() ? 1 : shape[0];
}

int64_t ReducescatterRows(int64_t rows, int size, int rank) {
  return rows / size + (rank < rows % size ? 1 : 0);
}

Handle::Handle(std::shared_ptr<internal::Operation> operation)
    : operation_(std::move(operation)) {}

bool Handle::Poll() const {
  return operation_ != nullptr && operation_->Poll();
}

Status Handle::Wait() const {
  if (operation_ == nullptr) {
    return absl::InvalidArgumentError("Wait() on an empty kolo::Handle");
  }
  return operation_->Wait();
}

const std::vector<int64_t>& Handle::output_shape(size_t member) const {
  return operation_->output_shapes.at(member);
}

void* Handle::output_data(size_t member) const {
  return operation_->owned_outputs.at(member).get();
}

const std::vector<int64_t>& Handle::received_splits() const {
  return operation_->received_splits;
}

int Handle::last_joined_rank() const { return operation_->last_joined_rank; }

}  // namespace kolo
