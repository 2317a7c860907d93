// ResponseCache: remembers tensors agreed before, so that a rank submitting
// the same tensor again (same name, shape, dtype, op, ...) sends one bit (its
// slot) instead of a full request.
//
// Every rank holds a copy. Copies stay identical because only the
// coordinator decides what goes where: a full response names the slot each
// tensor is cached in, and every rank applies responses in the same order.
// A rank's request may refer to a slot the coordinator has since reused (the
// rank had not applied that response yet), so the coordinator keeps the
// replaced entry until every rank has applied the replacement ("retired"
// entries) and resolves bits against the state the sender had. A slot is
// never reused while it still holds a retired entry.
//
// Not thread-safe: owned by the background thread.
#ifndef KOLO_RUNTIME_CORE_RESPONSE_CACHE_H_
#define KOLO_RUNTIME_CORE_RESPONSE_CACHE_H_

#include <cstdint>
#include <list>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kolo/status.h"
#include "runtime/wire/message.h"

namespace kolo {

struct CacheEntry {
  Request request;  // rank -1; allgather, alltoall: one rank's shape (splits)
  // allgather, alltoall: each rank's first dimension.
  std::vector<int64_t> first_dims;
  // alltoall: the response's split matrix; row r holds rank r's splits.
  std::vector<int64_t> splits;
};

// The request `rank` submits for a cached tensor.
Request RequestForRank(const CacheEntry& entry, int rank);

// Whether an operation's responses may be cached at all.
bool IsCacheable(OpType op);

class ResponseCache {
 public:
  explicit ResponseCache(int64_t capacity);

  int64_t capacity() const { return static_cast<int64_t>(slots_.size()); }
  // The slot holding `name`, or -1.
  int32_t Find(const std::string& name) const;
  // The entry in `slot`, or nullptr.
  const CacheEntry* Get(int32_t slot) const;
  // Whether `request` is exactly what this rank submitted for the cached
  // tensor of the same name (so a bit may stand for it).
  bool Matches(int32_t slot, const Request& request) const;
  // Puts `entry` in `slot` as a response at `seq` says; the previous entry is
  // kept as retired when this cache keeps history (the coordinator's).
  void Put(int32_t slot, CacheEntry entry, uint64_t seq);

  // The one rule by which a response list changes a copy of the cache. The
  // coordinator follows it for each tensor as it annotates the list at
  // `seq`, every worker for each tensor as it applies the list, in the same
  // order, so all copies stay identical:
  //   cached, slot s       the tensor is the entry in s (with `fill`, its
  //                        request and first dimensions are copied from
  //                        there: a worker receives only the slot);
  //   not cached, slot s   the tensor becomes the entry in s;
  //   slot -1              nothing changes.
  // Internal error when a cached tensor's slot is empty (a corrupt list, or
  // copies that diverged).
  // `splits` is the response's split matrix (alltoall), kept in the entry.
  Status Follow(ResponseTensor& tensor, const std::vector<int64_t>& splits,
                uint64_t seq, bool fill);

  // Coordinator side.
  // A slot for `name` in a response at `seq`, or -1 when none may be used
  // now: the slot already holding the name, a free one, or the least
  // recently used one without a retired entry.
  int32_t ChooseSlot(const std::string& name) const;
  // Marks `slot` as used now (least-recently-used eviction).
  void Touch(int32_t slot);
  // The entry a rank that applied responses up to `applied_seq` means by
  // `slot`, and whether that is still the slot's current entry.
  const CacheEntry* Resolve(int32_t slot, uint64_t applied_seq,
                            bool* current) const;
  // Incremented each time a slot changes.
  uint64_t generation(int32_t slot) const { return slots_[slot].generation; }
  // Forgets retired entries every rank has moved past.
  void Prune(uint64_t min_applied_seq);

 private:
  struct Slot {
    bool used = false;
    CacheEntry entry;
    uint64_t generation = 0;
    bool retired = false;     // holds a replaced entry still referred to
    uint64_t retired_at = 0;  // seq of the response that replaced it
    CacheEntry retired_entry;
    std::list<int32_t>::iterator lru;  // valid when used
  };

  std::vector<Slot> slots_;
  absl::flat_hash_map<std::string, int32_t> by_name_;
  std::list<int32_t> lru_;  // front = most recently used
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_RESPONSE_CACHE_H_
