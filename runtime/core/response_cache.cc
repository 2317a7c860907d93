// Implementation of the response cache.
#include "runtime/core/response_cache.h"

#include "absl/strings/str_cat.h"

namespace kolo {

Request RequestForRank(const CacheEntry& entry, int rank) {
  Request request = entry.request;
  request.rank = rank;
  const int ranks = static_cast<int>(entry.first_dims.size());
  if ((request.op == OpType::kAllgather || request.op == OpType::kAlltoall) &&
      !request.shape.empty() && rank >= 0 && rank < ranks) {
    request.shape[0] = entry.first_dims[rank];
  }
  if (request.op == OpType::kAlltoall && rank >= 0 && rank < ranks &&
      entry.splits.size() == static_cast<size_t>(ranks) * ranks) {
    request.splits.assign(entry.splits.begin() + rank * ranks,
                          entry.splits.begin() + (rank + 1) * ranks);
  }
  return request;
}

bool IsCacheable(OpType op) {
  return op == OpType::kAllreduce || op == OpType::kAllgather ||
         op == OpType::kBroadcast || op == OpType::kReducescatter ||
         op == OpType::kAlltoall;
}

ResponseCache::ResponseCache(int64_t capacity) : slots_(capacity) {}

int32_t ResponseCache::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

const CacheEntry* ResponseCache::Get(int32_t slot) const {
  if (slot < 0 || slot >= capacity() || !slots_[slot].used) return nullptr;
  return &slots_[slot].entry;
}

bool ResponseCache::Matches(int32_t slot, const Request& request) const {
  const CacheEntry* entry = Get(slot);
  return entry != nullptr &&
         RequestForRank(*entry, request.rank).SameAs(request);
}

void ResponseCache::Put(int32_t slot, CacheEntry entry, uint64_t seq) {
  Slot& s = slots_[slot];
  if (s.used) {
    by_name_.erase(s.entry.request.name);
    s.retired = true;
    s.retired_at = seq;
    s.retired_entry = std::move(s.entry);
    lru_.erase(s.lru);
  }
  // A name lives in one slot: drop an older slot holding it.
  if (int32_t old = Find(entry.request.name); old >= 0 && old != slot) {
    Slot& o = slots_[old];
    o.used = false;
    ++o.generation;
    lru_.erase(o.lru);
  }
  by_name_[entry.request.name] = slot;
  s.entry = std::move(entry);
  s.used = true;
  ++s.generation;
  lru_.push_front(slot);
  s.lru = lru_.begin();
}

Status ResponseCache::Follow(ResponseTensor& tensor,
                             const std::vector<int64_t>& splits, uint64_t seq,
                             bool fill) {
  if (tensor.cached) {
    const CacheEntry* entry = Get(tensor.cache_slot);
    if (entry == nullptr) {
      return absl::InternalError(
          absl::StrCat("response names empty cache slot ", tensor.cache_slot,
                       " for '", tensor.request.name, "'"));
    }
    if (fill) {
      tensor.request = entry->request;
      tensor.first_dims = entry->first_dims;
    }
    Touch(tensor.cache_slot);
  } else if (tensor.cache_slot >= 0) {
    Put(tensor.cache_slot,
        CacheEntry{tensor.request, tensor.first_dims,
                   tensor.request.op == OpType::kAlltoall
                       ? splits
                       : std::vector<int64_t>()},
        seq);
  }
  return absl::OkStatus();
}

int32_t ResponseCache::ChooseSlot(const std::string& name) const {
  if (capacity() == 0) return -1;
  if (int32_t slot = Find(name); slot >= 0) {
    return slots_[slot].retired ? -1 : slot;
  }
  for (int32_t slot = 0; slot < capacity(); ++slot) {
    if (!slots_[slot].used && !slots_[slot].retired) return slot;
  }
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    if (!slots_[*it].retired) return *it;
  }
  return -1;
}

void ResponseCache::Touch(int32_t slot) {
  Slot& s = slots_[slot];
  if (!s.used) return;
  lru_.splice(lru_.begin(), lru_, s.lru);
}

const CacheEntry* ResponseCache::Resolve(int32_t slot, uint64_t applied_seq,
                                         bool* current) const {
  if (slot < 0 || slot >= capacity()) return nullptr;
  const Slot& s = slots_[slot];
  if (s.retired && applied_seq < s.retired_at) {
    *current = false;
    return &s.retired_entry;
  }
  *current = true;
  return s.used ? &s.entry : nullptr;
}

void ResponseCache::Prune(uint64_t min_applied_seq) {
  for (Slot& s : slots_) {
    if (s.retired && s.retired_at <= min_applied_seq) {
      s.retired = false;
      s.retired_entry = CacheEntry();
    }
  }
}

}  // namespace kolo
