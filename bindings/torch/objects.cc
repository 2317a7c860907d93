// broadcast_object and allgather_object: arbitrary bytes between ranks (see
// kolo/torch.h). Bytes travel as uint8 tensors; a broadcast sends the length
// first, so that every rank can allocate the payload; an allgather sends each
// rank's length (8 bytes) and payload as one grouped allgather, so that both
// run in one fused collective.
#include <torch/serialize.h>
#include <torch/types.h>

#include <cstring>
#include <utility>

#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace {

at::Tensor BytesTensor(const char* data, size_t size) {
  at::Tensor tensor = at::empty({static_cast<int64_t>(size)}, at::kByte);
  if (size > 0) std::memcpy(tensor.data_ptr(), data, size);
  return tensor;
}

template <typename Bytes>
Bytes BroadcastBytes(const Bytes& bytes, int root_rank, const std::string& name,
                     const ProcessSet& process_set) {
  const bool root = rank() == root_rank;
  at::Tensor length =
      at::full({1}, root ? static_cast<int64_t>(bytes.size()) : 0, at::kLong);
  broadcast_(length, root_rank, name + ".size", process_set);
  const int64_t size = length.item<int64_t>();
  if (size == 0) return root ? bytes : Bytes();
  at::Tensor payload = root ? BytesTensor(bytes.data(), bytes.size())
                            : at::empty({size}, at::kByte);
  broadcast_(payload, root_rank, name + ".data", process_set);
  if (root) return bytes;
  const char* data = static_cast<const char*>(payload.data_ptr());
  return Bytes(data, data + size);
}

template <typename Bytes>
std::vector<Bytes> AllgatherBytes(const Bytes& bytes, const std::string& name,
                                  const ProcessSet& process_set) {
  const int64_t own = static_cast<int64_t>(bytes.size());
  const std::vector<at::Tensor> gathered = grouped_allgather(
      {BytesTensor(reinterpret_cast<const char*>(&own), sizeof(own)),
       BytesTensor(bytes.data(), bytes.size())},
      name, process_set);
  const int64_t ranks = gathered[0].numel() / static_cast<int64_t>(sizeof(own));
  std::vector<int64_t> lengths(ranks);
  std::memcpy(lengths.data(), gathered[0].data_ptr(), gathered[0].numel());
  std::vector<Bytes> result;
  result.reserve(ranks);
  const char* next = static_cast<const char*>(gathered[1].data_ptr());
  for (int64_t length : lengths) {
    result.emplace_back(next, next + length);
    next += length;
  }
  return result;
}

}  // namespace

std::string broadcast_object(const std::string& bytes, int root_rank,
                             const std::string& name,
                             const ProcessSet& process_set) {
  return BroadcastBytes(bytes, root_rank, name, process_set);
}

std::vector<char> broadcast_object(const std::vector<char>& bytes,
                                   int root_rank, const std::string& name,
                                   const ProcessSet& process_set) {
  return BroadcastBytes(bytes, root_rank, name, process_set);
}

c10::IValue broadcast_object(const c10::IValue& value, int root_rank,
                             const std::string& name,
                             const ProcessSet& process_set) {
  // Only the root serializes; the others' values are not looked at.
  std::vector<char> bytes;
  if (rank() == root_rank) bytes = ::torch::pickle_save(value);
  bytes = BroadcastBytes(bytes, root_rank, name, process_set);
  return rank() == root_rank ? value : ::torch::pickle_load(bytes);
}

std::vector<std::string> allgather_object(const std::string& bytes,
                                          const std::string& name,
                                          const ProcessSet& process_set) {
  return AllgatherBytes(bytes, name, process_set);
}

std::vector<std::vector<char>> allgather_object(const std::vector<char>& bytes,
                                                const std::string& name,
                                                const ProcessSet& process_set) {
  return AllgatherBytes(bytes, name, process_set);
}

std::vector<c10::IValue> allgather_object(const c10::IValue& value,
                                          const std::string& name,
                                          const ProcessSet& process_set) {
  std::vector<c10::IValue> values;
  for (const std::vector<char>& bytes :
       AllgatherBytes(::torch::pickle_save(value), name, process_set)) {
    values.push_back(::torch::pickle_load(bytes));
  }
  return values;
}

}  // namespace torch
}  // namespace kolo
