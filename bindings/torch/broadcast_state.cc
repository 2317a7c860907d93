// broadcast_parameters and broadcast_optimizer_state: make every rank start
// from root's model and optimizer (see kolo/torch.h).
//
// Every rank first compares its optimizer's type and parameter-group sizes
// with every other rank's. Then, for the built-in optimizers kolo knows
// field by field, optimizer state travels in three parts, all broadcast from
// the root:
//  - the options of the defaults and of every parameter group, packed into
//    one float64 tensor (flags as 0/1);
//  - a layout: per parameter, whether it has state, its step count and which
//    of the optimizer's state tensors are defined (int64 [params, 2 + fields]);
//  - the defined state tensors, broadcast in place once every rank has made
//    its state match the layout.
// Any other optimizer travels as a torch::serialize archive of its own
// making (save() and the options' serialize()), as one broadcast_object.
#include <c10/util/Type.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <sstream>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace {

namespace optim = ::torch::optim;

// Waits for every handle, even after a failure, then rethrows the first.
void WaitAll(const std::vector<Handle>& handles) {
  std::exception_ptr first_error;
  for (const Handle& handle : handles) {
    try {
      handle.wait_all();
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
  }
  if (first_error) std::rethrow_exception(first_error);
}

void BroadcastNamed(
    const std::vector<std::pair<std::string, at::Tensor>>& named_tensors,
    int root_rank, const ProcessSet& process_set) {
  std::vector<Handle> handles;
  handles.reserve(named_tensors.size());
  for (const auto& [name, tensor] : named_tensors) {
    if (!tensor.defined()) continue;
    handles.push_back(broadcast_async_(tensor, root_rank, name, process_set));
  }
  WaitAll(handles);
}

// ---------------------------------------------------------------------------
// Field tables of the built-in optimizers.

struct OptionFields {
  std::vector<double*> values;
  std::vector<bool*> flags;
};

struct StateFields {
  int64_t* step = nullptr;  // null when the state has no step count
  std::vector<at::Tensor*> tensors;
};

OptionFields Fields(optim::SGDOptions& o) {
  return {{&o.lr(), &o.momentum(), &o.dampening(), &o.weight_decay()},
          {&o.nesterov()}};
}
OptionFields Fields(optim::AdamOptions& o) {
  return {{&o.lr(), &std::get<0>(o.betas()), &std::get<1>(o.betas()), &o.eps(),
           &o.weight_decay()},
          {&o.amsgrad()}};
}
OptionFields Fields(optim::AdamWOptions& o) {
  return {{&o.lr(), &std::get<0>(o.betas()), &std::get<1>(o.betas()), &o.eps(),
           &o.weight_decay()},
          {&o.amsgrad()}};
}
OptionFields Fields(optim::AdagradOptions& o) {
  return {{&o.lr(), &o.lr_decay(), &o.weight_decay(),
           &o.initial_accumulator_value(), &o.eps()},
          {}};
}
OptionFields Fields(optim::RMSpropOptions& o) {
  return {{&o.lr(), &o.alpha(), &o.eps(), &o.weight_decay(), &o.momentum()},
          {&o.centered()}};
}

StateFields Fields(optim::SGDParamState& s) {
  return {nullptr, {&s.momentum_buffer()}};
}
StateFields Fields(optim::AdamParamState& s) {
  return {&s.step(), {&s.exp_avg(), &s.exp_avg_sq(), &s.max_exp_avg_sq()}};
}
StateFields Fields(optim::AdamWParamState& s) {
  return {&s.step(), {&s.exp_avg(), &s.exp_avg_sq(), &s.max_exp_avg_sq()}};
}
StateFields Fields(optim::AdagradParamState& s) {
  return {&s.step(), {&s.sum()}};
}
StateFields Fields(optim::RMSpropParamState& s) {
  return {&s.step(), {&s.square_avg(), &s.momentum_buffer(), &s.grad_avg()}};
}

// Type-erased access to one optimizer type's options and state.
struct OptimizerAccess {
  const char* type_name;
  int state_tensors;
  std::function<OptionFields(optim::OptimizerOptions&)> options;
  std::function<StateFields(optim::OptimizerParamState&)> state;
  std::function<std::unique_ptr<optim::OptimizerParamState>()> new_state;
};

// Only the type itself: a subclass may hold more than the fields listed
// here, so it takes the serializing path.
template <typename Optimizer, typename Options, typename State>
bool Match(optim::Optimizer& optimizer, const char* type_name,
           OptimizerAccess* access) {
  if (typeid(optimizer) != typeid(Optimizer)) return false;
  access->type_name = type_name;
  State probe;
  access->state_tensors = static_cast<int>(Fields(probe).tensors.size());
  access->options = [type_name](optim::OptimizerOptions& options) {
    auto* typed = dynamic_cast<Options*>(&options);
    TORCH_CHECK(typed != nullptr, "kolo: a parameter group of the ", type_name,
                " optimizer has options of another optimizer");
    return Fields(*typed);
  };
  access->state = [type_name](optim::OptimizerParamState& state) {
    auto* typed = dynamic_cast<State*>(&state);
    TORCH_CHECK(typed != nullptr, "kolo: the ", type_name,
                " optimizer holds state of another optimizer");
    return Fields(*typed);
  };
  access->new_state = [] { return std::make_unique<State>(); };
  return true;
}

// The field tables of `optimizer`'s type; false when kolo has none.
bool AccessFor(optim::Optimizer& optimizer, OptimizerAccess* access) {
  return Match<optim::SGD, optim::SGDOptions, optim::SGDParamState>(
             optimizer, "SGD", access) ||
         Match<optim::Adam, optim::AdamOptions, optim::AdamParamState>(
             optimizer, "Adam", access) ||
         Match<optim::AdamW, optim::AdamWOptions, optim::AdamWParamState>(
             optimizer, "AdamW", access) ||
         Match<optim::Adagrad, optim::AdagradOptions, optim::AdagradParamState>(
             optimizer, "Adagrad", access) ||
         Match<optim::RMSprop, optim::RMSpropOptions, optim::RMSpropParamState>(
             optimizer, "RMSprop", access);
}

// The optimizer's state map is keyed by the parameter's TensorImpl: as a
// string in LibTorch 1.x (the address as printed by operator<<, which is what
// c10::guts::to_string produces), as the pointer itself in later releases.
using StateMap = std::remove_reference_t<
    decltype(std::declval<optim::Optimizer&>().state())>;
using StateKey = typename StateMap::key_type;

inline std::string MakeStateKey(const at::Tensor& param, std::string*) {
  std::ostringstream key;
  key << param.unsafeGetTensorImpl();
  return key.str();
}
template <typename Pointer>
Pointer MakeStateKey(const at::Tensor& param, Pointer*) {
  return static_cast<Pointer>(param.unsafeGetTensorImpl());
}
StateKey StateKeyOf(const at::Tensor& param) {
  return MakeStateKey(param, static_cast<StateKey*>(nullptr));
}

}  // namespace

void broadcast_parameters(const ::torch::nn::Module& module, int root_rank,
                          const ProcessSet& process_set) {
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    named.emplace_back("bcast.param." + item.key(), item.value());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    named.emplace_back("bcast.buffer." + item.key(), item.value());
  }
  BroadcastNamed(named, root_rank, process_set);
}

void broadcast_parameters(
    const ::torch::OrderedDict<std::string, at::Tensor>& named_tensors,
    int root_rank, const ProcessSet& process_set) {
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : named_tensors) {
    named.emplace_back("bcast." + item.key(), item.value());
  }
  BroadcastNamed(named, root_rank, process_set);
}

namespace {

std::vector<at::Tensor> ParamsOf(optim::Optimizer& optimizer) {
  std::vector<at::Tensor> params;
  for (const auto& group : optimizer.param_groups()) {
    params.insert(params.end(), group.params().begin(), group.params().end());
  }
  return params;
}

// "torch::optim::Adam with parameter groups of 4, 2 parameters"
std::string Signature(optim::Optimizer& optimizer) {
  std::ostringstream signature;
  signature << c10::demangle(typeid(optimizer).name())
            << " with parameter groups of ";
  const auto& groups = optimizer.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    signature << (i > 0 ? ", " : "") << groups[i].params().size();
  }
  signature << " parameters";
  return signature.str();
}

// Throws on every rank unless every rank's optimizer has root_rank's type
// and group sizes.
void CheckSameOptimizer(optim::Optimizer& optimizer, int root_rank,
                        const ProcessSet& process_set) {
  // Members in global-rank order: allgather_object's order.
  const std::vector<int> members = process_set.ranks();
  const auto root = std::find(members.begin(), members.end(), root_rank);
  TORCH_CHECK_VALUE(
      root != members.end(), "kolo: broadcast_optimizer_state: root rank ",
      root_rank,
      process_set.is_global()
          ? " is outside [0, " + std::to_string(size()) + ")"
          : " is not in process set " + std::to_string(process_set.id()));
  const size_t root_position = root - members.begin();
  const std::vector<std::string> signatures =
      allgather_object(Signature(optimizer), "optstate.signature", process_set);
  for (size_t r = 0; r < signatures.size(); ++r) {
    TORCH_CHECK(signatures[r] == signatures[root_position],
                "kolo: broadcast_optimizer_state: rank ", members[r], " has a ",
                signatures[r], " but root rank ", root_rank, " has a ",
                signatures[root_position]);
  }
}

// The fast path (see the top of this file).
void BroadcastKnown(optim::Optimizer& optimizer, const OptimizerAccess& access,
                    int root_rank, const ProcessSet& process_set) {
  // Options: the defaults, then every group.
  std::vector<OptionFields> option_fields;
  option_fields.push_back(access.options(optimizer.defaults()));
  for (auto& group : optimizer.param_groups()) {
    TORCH_CHECK(group.has_options(), "kolo: a parameter group of the ",
                access.type_name, " optimizer has no options");
    option_fields.push_back(access.options(group.options()));
  }
  std::vector<double> packed;
  for (const OptionFields& fields : option_fields) {
    for (double* value : fields.values) packed.push_back(*value);
    for (bool* flag : fields.flags) packed.push_back(*flag ? 1.0 : 0.0);
  }
  at::Tensor options_tensor =
      at::tensor(packed, at::TensorOptions().dtype(at::kDouble));

  // Layout: [has state, step, defined(field 0), defined(field 1), ...].
  const std::vector<at::Tensor> params = ParamsOf(optimizer);
  const int64_t columns = 2 + access.state_tensors;
  at::Tensor layout =
      at::zeros({static_cast<int64_t>(params.size()), columns}, at::kLong);
  auto layout_rows = layout.accessor<int64_t, 2>();
  auto& state_map = optimizer.state();
  for (size_t i = 0; i < params.size(); ++i) {
    auto found = state_map.find(StateKeyOf(params[i]));
    if (found == state_map.end()) continue;
    StateFields fields = access.state(*found->second);
    layout_rows[i][0] = 1;
    layout_rows[i][1] = fields.step != nullptr ? *fields.step : 0;
    for (int f = 0; f < access.state_tensors; ++f) {
      layout_rows[i][2 + f] = fields.tensors[f]->defined() ? 1 : 0;
    }
  }

  WaitAll(
      {broadcast_async_(options_tensor, root_rank, "optstate.options",
                        process_set),
       broadcast_async_(layout, root_rank, "optstate.layout", process_set)});

  const double* received = options_tensor.data_ptr<double>();
  for (OptionFields& fields : option_fields) {
    for (double* value : fields.values) *value = *received++;
    for (bool* flag : fields.flags) *flag = *received++ != 0.0;
  }

  // Make this rank's state match the root's layout, then fill it.
  std::vector<std::pair<std::string, at::Tensor>> state_tensors;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    const StateKey key = StateKeyOf(params[i]);
    if (layout_rows[i][0] == 0) {
      state_map.erase(key);
      continue;
    }
    auto& slot = state_map[key];
    if (slot == nullptr) slot = access.new_state();
    StateFields fields = access.state(*slot);
    if (fields.step != nullptr) *fields.step = layout_rows[i][1];
    for (int f = 0; f < access.state_tensors; ++f) {
      at::Tensor& tensor = *fields.tensors[f];
      if (layout_rows[i][2 + f] == 0) {
        tensor = at::Tensor();
        continue;
      }
      if (!tensor.defined()) {
        tensor = at::zeros_like(params[i], at::MemoryFormat::Contiguous);
      }
      state_tensors.emplace_back(
          "optstate." + std::to_string(i) + "." + std::to_string(f), tensor);
    }
  }
  BroadcastNamed(state_tensors, root_rank, process_set);
}

// Root's optimizer as one archive: "optimizer" (its save()), "defaults" and
// "group/<i>" (the options' serialize(): LibTorch 1.x's load() restores the
// per-parameter state but not the options).
std::string SaveOptimizer(optim::Optimizer& optimizer) {
  ::torch::serialize::OutputArchive archive;
  ::torch::serialize::OutputArchive saved(archive.compilation_unit());
  optimizer.save(saved);
  archive.write("optimizer", saved);
  ::torch::serialize::OutputArchive defaults(archive.compilation_unit());
  optimizer.defaults().serialize(defaults);
  archive.write("defaults", defaults);
  const auto& groups = optimizer.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    TORCH_CHECK(groups[i].has_options(), "parameter group ", i,
                " has no options");
    ::torch::serialize::OutputArchive options(archive.compilation_unit());
    groups[i].options().serialize(options);
    archive.write("group/" + std::to_string(i), options);
  }
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

// Reads `state` back from itself with its tensors on `device`.
void MoveState(optim::OptimizerParamState& state, const at::Device& device) {
  ::torch::serialize::OutputArchive out;
  state.serialize(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  const std::string data = bytes.str();
  ::torch::serialize::InputArchive in;
  in.load_from(data.data(), data.size(), device);
  state.serialize(in);
}

void LoadOptimizer(optim::Optimizer& optimizer, const std::string& bytes) {
  ::torch::serialize::InputArchive archive;
  archive.load_from(bytes.data(), bytes.size(), at::Device(at::kCPU));
  ::torch::serialize::InputArchive saved;
  archive.read("optimizer", saved);
  TORCH_CHECK(!saved.keys().empty(),
              "its save() wrote nothing: the optimizer does not implement "
              "save() and load(), which kolo needs to broadcast its state");
  // load() adds the root's state; what only this rank has must go.
  optimizer.state().clear();
  optimizer.load(saved);
  ::torch::serialize::InputArchive defaults;
  archive.read("defaults", defaults);
  optimizer.defaults().serialize(defaults);
  auto& groups = optimizer.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    ::torch::serialize::InputArchive options;
    archive.read("group/" + std::to_string(i), options);
    groups[i].options().serialize(options);
  }
  // The archive was read onto the CPU (root's devices need not exist
  // here); state tensors belong on their parameter's device.
  auto& state = optimizer.state();
  for (const at::Tensor& param : ParamsOf(optimizer)) {
    auto found = state.find(StateKeyOf(param));
    if (found != state.end() && !param.device().is_cpu()) {
      MoveState(*found->second, param.device());
    }
  }
}

// An exception's message, without LibTorch's C++ backtrace.
std::string MessageOf(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return error->what_without_backtrace();
  }
  return e.what();
}

// The serializing path (see the top of this file). A root that cannot save
// sends its error instead ('0' + message; '1' + archive otherwise), and
// every rank reports every rank's load failure, so that all ranks fail
// together and none waits for another.
void BroadcastSerialized(optim::Optimizer& optimizer, int root_rank,
                         const ProcessSet& process_set) {
  std::string payload;
  if (rank() == root_rank) {
    try {
      payload = "1" + SaveOptimizer(optimizer);
    } catch (const std::exception& e) {
      payload = "0" + MessageOf(e);
    }
  }
  payload =
      broadcast_object(payload, root_rank, "optstate.archive", process_set);
  TORCH_CHECK(!payload.empty() && payload[0] == '1',
              "kolo: broadcast_optimizer_state: root rank ", root_rank,
              " could not save its ", Signature(optimizer), ": ",
              payload.empty() ? std::string() : payload.substr(1));
  std::string error;
  if (rank() != root_rank) {
    try {
      LoadOptimizer(optimizer, payload.substr(1));
    } catch (const std::exception& e) {
      error = MessageOf(e);
    }
  }
  const std::vector<std::string> errors =
      allgather_object(error, "optstate.loaded", process_set);
  const std::vector<int> members = process_set.ranks();
  for (size_t r = 0; r < errors.size(); ++r) {
    TORCH_CHECK(errors[r].empty(), "kolo: broadcast_optimizer_state: rank ",
                members[r], " could not load root rank ", root_rank, "'s ",
                Signature(optimizer), ": ", errors[r]);
  }
}

}  // namespace

void broadcast_optimizer_state(optim::Optimizer& optimizer, int root_rank,
                               const ProcessSet& process_set) {
  if (auto* distributed = dynamic_cast<DistributedOptimizer*>(&optimizer)) {
    // The wrapped optimizer has the type and the state; the view follows.
    distributed->finish_updates();
    distributed->PushChanges();
    broadcast_optimizer_state(distributed->optimizer(), root_rank, process_set);
    distributed->PullChanges();
    return;
  }
  CheckSameOptimizer(optimizer, root_rank, process_set);
  OptimizerAccess access;
  if (AccessFor(optimizer, &access)) {
    BroadcastKnown(optimizer, access, root_rank, process_set);
  } else {
    BroadcastSerialized(optimizer, root_rank, process_set);
  }
}

}  // namespace torch
}  // namespace kolo
