// Measures kolo's collectives through the public C++ API: every part of a
// message is submitted (enqueue), then every handle is waited for, so one
// iteration is the whole path users pay: enqueue, negotiation, fusion,
// execution on the backend and completion.
#ifndef KOLO_BENCH_KOLO_RUNNER_H_
#define KOLO_BENCH_KOLO_RUNNER_H_

#include <string>

#include "bench/collective.h"
#include "bench/measurement.h"
#include "bench/message_buffers.h"
#include "kolo/process_set.h"

namespace kolo::bench {

// True when kolo's API has an in-place form of the collective: allreduce
// (input and output the same memory) and broadcast (only in place). The
// others return their output through an OutputAllocator, always another
// buffer.
bool KoloHasInPlace(Collective collective);
bool KoloHasOutOfPlace(Collective collective);

// Measures one message. `name` prefixes the operation names, which repeat
// every iteration (so kolo's response cache sees them again). The buffers'
// input holds at least layout.input_count elements, their output
// layout.output_count; in place, only output is used. On a GPU the tensors
// are CUDA tensors of the legacy default stream (inputs are uploaded
// synchronously before an iteration). REQUIRES: kolo is initialised.
// Collective over all ranks. With a process set, the operations run among
// its members (layout.ranks of them; inputs and the reference use the
// members' positions in the set); every rank of the job still takes part in
// the timing, so every rank must be in some set measured at the same time.
Measurement MeasureKolo(const Layout& layout, const RunConfig& config,
                        bool in_place, const std::string& name,
                        const MessageBuffers& buffers,
                        const ProcessSet& process_set = ProcessSet());

}  // namespace kolo::bench

#endif  // KOLO_BENCH_KOLO_RUNNER_H_
