// kolo._kolo_torch: the compiled half of the Python package kolo.torch. It
// exposes kolo's LibTorch adapter (kolo/torch.h) to Python almost one to one:
// collectives on torch tensors that return handles, the handles, and process
// sets. kolo/torch/*.py builds Horovod's PyTorch API on top.
//
// Process sets travel as their ids (kolo::ProcessSet::FromId; 0 = the global
// set, every function's default); the runtime checks an id when it is used.
//
// Errors: c10::ValueError (invalid arguments) becomes ValueError, every other
// c10::Error RuntimeError, both with the message but without LibTorch's C++
// backtrace. Blocking calls (wait, barrier, join, init, shutdown, adding and
// removing process sets) release the GIL, so other Python threads (and
// autograd hooks) run meanwhile.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>  // torch.Tensor <-> at::Tensor

#include <string>
#include <vector>

#include "kolo/kolo.h"
#include "kolo/process_set.h"
#include "kolo/torch.h"

namespace py = pybind11;

namespace kolo {
namespace torch {
namespace {

// An invalid argument (e.g. a process set this rank is not in) as
// c10::ValueError, as the adapter's collectives raise it.
void Check(const Status& status, const char* what) {
  TORCH_CHECK_VALUE(status.code() != absl::StatusCode::kInvalidArgument,
                    "kolo: ", what, " failed: ", status.ToString());
  TORCH_CHECK(status.ok(), "kolo: ", what, " failed: ", status.ToString());
}

ProcessSet Set(int id) { return ProcessSet::FromId(id); }

AllreduceOptions Reduction(int op, double prescale_factor,
                           double postscale_factor) {
  AllreduceOptions options;
  options.op = static_cast<ReduceOp>(op);
  options.prescale_factor = prescale_factor;
  options.postscale_factor = postscale_factor;
  return options;
}

void TranslateExceptions(std::exception_ptr error) {
  try {
    if (error) std::rethrow_exception(error);
  } catch (const c10::ValueError& e) {
    PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
  }
}

}  // namespace
}  // namespace torch
}  // namespace kolo

PYBIND11_MODULE(_kolo_torch, m) {
  using namespace kolo::torch;  // NOLINT: this block only binds names
  using Release = py::call_guard<py::gil_scoped_release>;
  m.doc() = "kolo's LibTorch adapter for Python (used by kolo.torch)";
  py::register_exception_translator(&TranslateExceptions);

  m.attr("SUM") = static_cast<int>(kolo::ReduceOp::kSum);
  m.attr("AVERAGE") = static_cast<int>(kolo::ReduceOp::kAverage);
  m.attr("MIN") = static_cast<int>(kolo::ReduceOp::kMin);
  m.attr("MAX") = static_cast<int>(kolo::ReduceOp::kMax);
  m.attr("PRODUCT") = static_cast<int>(kolo::ReduceOp::kProduct);
  m.attr("ADASUM") = static_cast<int>(kolo::ReduceOp::kAdasum);

  m.def("init", &init, Release());
  m.def("shutdown", &shutdown, Release());
  m.def("is_initialized", &kolo::IsInitialized);
  m.def("rank", &kolo::Rank);
  m.def("size", &kolo::Size);
  m.def("local_rank", &kolo::LocalRank);
  m.def("local_size", &kolo::LocalSize);
  m.def("cross_rank", &kolo::CrossRank);
  m.def("cross_size", &kolo::CrossSize);
  m.def("nccl_built", &kolo::NcclBuilt);
  m.def("backend_name", &kolo::BackendName);
  m.def(
      "start_timeline",
      [](const std::string& path, bool mark_cycles) {
        Check(kolo::StartTimeline(path, mark_cycles), "start_timeline");
      },
      py::arg("path"), py::arg("mark_cycles"));
  m.def("stop_timeline", [] { Check(kolo::StopTimeline(), "stop_timeline"); });
  m.def(
      "barrier",
      [](int process_set) { Check(Set(process_set).Barrier(), "barrier"); },
      py::arg("process_set") = 0, Release());
  m.def(
      "join", [](int process_set) { return join(Set(process_set)); },
      py::arg("process_set") = 0, Release());

  // Process sets. Adding and removing are collective over every rank.
  m.def(
      "add_process_set",
      [](const std::vector<int>& ranks) {
        kolo::StatusOr<kolo::ProcessSet> set = kolo::AddProcessSet(ranks);
        Check(set.status(), "add_process_set");
        return set->id();
      },
      py::arg("ranks"), Release());
  m.def(
      "remove_process_set",
      [](int process_set) {
        Check(kolo::RemoveProcessSet(Set(process_set)), "remove_process_set");
      },
      py::arg("process_set"), Release());
  // Empty, -1, -1 for a set that does not exist (removed, unknown, before
  // init); rank is -1 too where this rank is not a member.
  m.def(
      "process_set_ranks",
      [](int process_set) { return Set(process_set).ranks(); },
      py::arg("process_set"));
  m.def(
      "process_set_rank",
      [](int process_set) { return Set(process_set).Rank(); },
      py::arg("process_set"));
  m.def(
      "process_set_size",
      [](int process_set) { return Set(process_set).Size(); },
      py::arg("process_set"));

  py::class_<Handle>(m, "Handle")
      .def("poll", &Handle::poll)
      // Results of the operation (one tensor, or one per grouped tensor).
      .def("wait", &Handle::wait_all, Release())
      .def("received_splits", &Handle::received_splits, Release());

  m.def(
      "allreduce_async",
      [](const at::Tensor& tensor, const std::string& name, int op,
         double prescale_factor, double postscale_factor, bool in_place,
         int process_set) {
        const kolo::AllreduceOptions options =
            Reduction(op, prescale_factor, postscale_factor);
        return in_place
                   ? allreduce_async_(tensor, name, options, Set(process_set))
                   : allreduce_async(tensor, name, options, Set(process_set));
      },
      py::arg("tensor"), py::arg("name"), py::arg("op"),
      py::arg("prescale_factor"), py::arg("postscale_factor"),
      py::arg("in_place"), py::arg("process_set") = 0);
  m.def(
      "grouped_allreduce_async",
      [](const std::vector<at::Tensor>& tensors, const std::string& name,
         int op, double prescale_factor, double postscale_factor, bool in_place,
         int process_set) {
        const kolo::AllreduceOptions options =
            Reduction(op, prescale_factor, postscale_factor);
        return in_place ? grouped_allreduce_async_(tensors, name, options,
                                                   Set(process_set))
                        : grouped_allreduce_async(tensors, name, options,
                                                  Set(process_set));
      },
      py::arg("tensors"), py::arg("name"), py::arg("op"),
      py::arg("prescale_factor"), py::arg("postscale_factor"),
      py::arg("in_place"), py::arg("process_set") = 0);
  m.def(
      "allgather_async",
      [](const at::Tensor& tensor, const std::string& name, int process_set) {
        return allgather_async(tensor, name, Set(process_set));
      },
      py::arg("tensor"), py::arg("name"), py::arg("process_set") = 0);
  m.def(
      "grouped_allgather_async",
      [](const std::vector<at::Tensor>& tensors, const std::string& name,
         int process_set) {
        return grouped_allgather_async(tensors, name, Set(process_set));
      },
      py::arg("tensors"), py::arg("name"), py::arg("process_set") = 0);
  m.def(
      "broadcast_async",
      [](const at::Tensor& tensor, int root_rank, const std::string& name,
         bool in_place, int process_set) {
        return in_place
                   ? broadcast_async_(tensor, root_rank, name, Set(process_set))
                   : broadcast_async(tensor, root_rank, name, Set(process_set));
      },
      py::arg("tensor"), py::arg("root_rank"), py::arg("name"),
      py::arg("in_place"), py::arg("process_set") = 0);
  m.def(
      "alltoall_async",
      [](const at::Tensor& tensor, const std::string& name,
         std::vector<int64_t> splits, int process_set) {
        return alltoall_async(tensor, name, std::move(splits),
                              Set(process_set));
      },
      py::arg("tensor"), py::arg("name"), py::arg("splits"),
      py::arg("process_set") = 0);
  m.def(
      "reducescatter_async",
      [](const at::Tensor& tensor, const std::string& name, int op,
         int process_set) {
        return reducescatter_async(
            tensor, name, static_cast<kolo::ReduceOp>(op), Set(process_set));
      },
      py::arg("tensor"), py::arg("name"), py::arg("op"),
      py::arg("process_set") = 0);
  m.def(
      "grouped_reducescatter_async",
      [](const std::vector<at::Tensor>& tensors, const std::string& name,
         int op, int process_set) {
        return grouped_reducescatter_async(
            tensors, name, static_cast<kolo::ReduceOp>(op), Set(process_set));
      },
      py::arg("tensors"), py::arg("name"), py::arg("op"),
      py::arg("process_set") = 0);
}
