// kolo_bench's flags, parsed with CLI11. The names follow nccl-tests where
// it has the same flag.
#include "bench/flags.h"

#include <climits>
#include <iostream>
#include <map>

#include "CLI/CLI.hpp"

namespace kolo::bench {
namespace {

const std::map<std::string, DataType>& DataTypeNames() {
  static const auto* names = new std::map<std::string, DataType>{
      {"uint8", DataType::kUint8},    {"int8", DataType::kInt8},
      {"int32", DataType::kInt32},    {"int", DataType::kInt32},
      {"int64", DataType::kInt64},    {"float16", DataType::kFloat16},
      {"half", DataType::kFloat16},   {"bfloat16", DataType::kBfloat16},
      {"bf16", DataType::kBfloat16},  {"float32", DataType::kFloat32},
      {"float", DataType::kFloat32},  {"float64", DataType::kFloat64},
      {"double", DataType::kFloat64}, {"bool", DataType::kBool}};
  return *names;
}

const std::map<std::string, ReduceOp>& ReduceOpNames() {
  static const auto* names = new std::map<std::string, ReduceOp>{
      {"sum", ReduceOp::kSum},        {"average", ReduceOp::kAverage},
      {"avg", ReduceOp::kAverage},    {"min", ReduceOp::kMin},
      {"max", ReduceOp::kMax},        {"prod", ReduceOp::kProduct},
      {"product", ReduceOp::kProduct}};
  return *names;
}

const std::map<std::string, CpuOperations>& BackendNames() {
  static const auto* names = new std::map<std::string, CpuOperations>{
      {"auto", CpuOperations::kAuto},
      {"shm", CpuOperations::kShm},
      {"ring", CpuOperations::kRing},
      {"hierarchical", CpuOperations::kHierarchical},
      {"mpi", CpuOperations::kMpi}};
  return *names;
}

// A CLI11 validator that turns a name of `names` (any case) into the
// enumerator's number, which CLI11 then stores in the enum option.
template <typename Enum>
CLI::Validator NameOf(const std::map<std::string, Enum>& names,
                      const std::string& what) {
  return CLI::Validator(
      [&names, what](std::string& input) -> std::string {
        auto found = names.find(CLI::detail::to_lower(input));
        if (found == names.end()) {
          std::string known;
          for (const auto& [name, value] : names) {
            known += (known.empty() ? "" : ", ") + name;
          }
          return "unknown " + what + " '" + input + "' (known: " + known + ")";
        }
        input = std::to_string(static_cast<int>(found->second));
        return "";
      },
      "");
}

// Checks what single flags cannot; returns the problem or empty.
std::string Validate(const BenchFlags& flags) {
  if (flags.min_bytes < 1) return "--minbytes must be at least 1";
  if (flags.max_bytes < flags.min_bytes) {
    return "--maxbytes (" + std::to_string(flags.max_bytes) +
           ") is below --minbytes (" + std::to_string(flags.min_bytes) + ")";
  }
  if (flags.step_factor < 2) return "--stepfactor must be at least 2";
  if (flags.iters < 1) return "--iters must be at least 1";
  if (flags.warmup < 0) return "--warmup_iters must not be negative";
  if (flags.check < 0) return "--check must not be negative";
  if (flags.trials < 1) return "--trials must be at least 1";
  if (flags.root < 0) return "--root must not be negative";
  if (flags.tensors < 1) return "--tensors must be at least 1";
  if (flags.dtype == DataType::kBool && flags.op == ReduceOp::kAverage) {
    return "bool tensors cannot be averaged (-d bool -o average)";
  }
  return "";
}

}  // namespace

std::optional<int> ParseFlags(int argc, char** argv, bool verbose,
                              BenchFlags* flags) {
  CLI::App app(
      "kolo_bench: nccl-tests-style tables of kolo's collectives, with "
      "MPI's own collectives, Gloo's allreduce and memory-bandwidth "
      "baselines (--device cuda: "
      "GPU buffers and NCCL's collectives as the baseline). Run under "
      "mpirun; KOLO_CPU_OPERATIONS (or --backends) picks kolo's CPU data "
      "plane.",
      "kolo_bench");
  app.add_option("-b,--minbytes", flags->min_bytes,
                 "smallest message size in bytes (suffixes K, M, G)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  app.add_option("-e,--maxbytes", flags->max_bytes,
                 "largest message size in bytes (suffixes K, M, G)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  app.add_option("-f,--stepfactor", flags->step_factor,
                 "multiply the size by this between rows")
      ->capture_default_str();
  app.add_option("-n,--iters", flags->iters, "timed iterations per size")
      ->capture_default_str();
  app.add_option("-w,--warmup_iters", flags->warmup,
                 "untimed iterations before the timed ones")
      ->capture_default_str();
  app.add_option("-c,--check", flags->check,
                 "check iterations per size, each with new inputs compared "
                 "with an independent reference; 0 = no checks")
      ->capture_default_str();
  app.add_option("--trials", flags->trials,
                 "timed loops of --iters per size; the one with the lowest "
                 "median iteration is reported (for busy hosts)")
      ->capture_default_str();
  app.add_option("-d,--datatype", flags->dtype,
                 "element type (default float32): uint8, int8, int32, "
                 "int64, float16, "
                 "bfloat16, float32, float64, bool")
      ->transform(NameOf(DataTypeNames(), "datatype"))
      ->option_text("TYPE")
      ->default_str("float32");
  app.add_option("-o,--op", flags->op,
                 "reduction of allreduce and reducescatter (default sum): "
                 "sum, average, "
                 "min, max, prod")
      ->transform(NameOf(ReduceOpNames(), "op"))
      ->option_text("OP")
      ->default_str("sum");
  app.add_option("-r,--root", flags->root, "broadcast root rank")
      ->capture_default_str();
  std::vector<std::string> collectives = {"all"};
  app.add_option("--collective", collectives,
                 "all, or a comma-separated list of allreduce, allgather, "
                 "broadcast, reducescatter, alltoall")
      ->delimiter(',')
      ->check(CLI::IsMember({"all", "allreduce", "allgather", "broadcast",
                             "reducescatter", "alltoall"}))
      ->default_str("all");
  app.add_option("--json", flags->json_path,
                 "also write every row, the baselines and the summary as "
                 "JSON to this file");
  std::vector<std::string> baselines = {"all"};
  app.add_option("--baselines", baselines,
                 "baselines to run: all, none, or a comma-separated list of "
                 "mpi (every collective, --device cpu), gloo, memory "
                 "(allreduce, --device cpu) and nccl "
                 "(every collective, --device cuda)")
      ->delimiter(',')
      ->check(CLI::IsMember({"all", "none", "mpi", "gloo", "memory", "nccl"}))
      ->default_str("all");
  CLI::Option* backend_name = app.add_option(
      "--backend-name", flags->backend_name,
      "label of the kolo rows (default: the KOLO_CPU_OPERATIONS value)");
  app.add_option("--backends", flags->backends,
                 "run kolo once per listed backend (auto, shm, ring, "
                 "hierarchical, mpi) in this process, overriding "
                 "KOLO_CPU_OPERATIONS; unavailable ones are reported and "
                 "skipped")
      ->delimiter(',')
      ->transform(NameOf(BackendNames(), "backend"))
      ->option_text("LIST")
      ->excludes(backend_name);
  bool no_kolo = false;
  app.add_flag("--no-kolo", no_kolo,
               "measure the baselines only (kolo is not initialised), e.g. "
               "to time one MPI algorithm forced through MCA parameters");
  std::string device = "cpu";
  app.add_option("--device", device,
                 "cpu, or cuda: buffers in GPU memory (rank r uses GPU "
                 "local_rank % GPUs; one GPU per rank), kolo's NCCL backend, "
                 "NCCL's collectives as the baseline instead of MPI, Gloo "
                 "and memory bandwidth")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->excludes("--backends")
      ->capture_default_str();
  app.add_flag("--process-sets", flags->process_sets,
               "also time allreduce within two process sets, the lower and "
               "the upper half of the ranks, running at the same time (each "
               "row: the slower set), next to the global set's rows");
  app.add_option("--tensors", flags->tensors,
                 "split every message into this many tensors submitted "
                 "together (exercises fusion)")
      ->capture_default_str();

  // A repeated single-valued flag takes its last value, so wrapper scripts'
  // defaults can be overridden by arguments passed after them.
  for (CLI::Option* option : app.get_options()) {
    if (option->get_items_expected_max() == 1) {
      option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      if (verbose) app.exit(e, std::cout, std::cerr);
      return 0;
    }
    if (verbose) {
      std::cerr << "kolo_bench: " << e.what() << "\nRun with --help for the "
                << "flags.\n";
    }
    return 2;
  }
  if (std::string problem = Validate(*flags); !problem.empty()) {
    if (verbose) {
      std::cerr << "kolo_bench: " << problem
                << "\nRun with --help for the flags.\n";
    }
    return 2;
  }

  flags->collectives.clear();
  for (Collective collective : AllCollectives()) {
    for (const std::string& name : collectives) {
      if (name == "all" || name == CollectiveName(collective)) {
        flags->collectives.push_back(collective);
        break;
      }
    }
  }
  auto wants = [&baselines](const char* name) {
    for (const std::string& b : baselines) {
      if (b == "all" || b == name) return true;
    }
    return false;
  };
  flags->cuda = device == "cuda";
  flags->kolo = !no_kolo;
  flags->mpi_baseline = wants("mpi");
  flags->gloo_baseline = wants("gloo");
  flags->memory_baseline = wants("memory");
  flags->nccl_baseline = wants("nccl");
  flags->command_line.assign(argv, argv + argc);
  return std::nullopt;
}

std::vector<int64_t> SweepSizes(const BenchFlags& flags) {
  std::vector<int64_t> sizes;
  for (int64_t bytes = flags.min_bytes; bytes <= flags.max_bytes;) {
    sizes.push_back(bytes);
    if (bytes > flags.max_bytes / flags.step_factor) break;
    bytes *= flags.step_factor;
  }
  return sizes;
}

}  // namespace kolo::bench
