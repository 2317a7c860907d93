// chexnet_train checkpoints in torch::serialize archives (see checkpoint.h).
#include "examples/chexnet/train/checkpoint.h"

#include <c10/util/Exception.h>
#include <sys/stat.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "examples/chexnet/data/file_util.h"

namespace kolo::chexnet {
namespace {

constexpr int kHistoryColumns = 6;

void WriteMeta(const CheckpointMeta& meta, torch::serialize::OutputArchive* a) {
  a->write("meta/arch", c10::IValue(meta.arch));
  a->write("meta/image_size", c10::IValue(meta.image_size));
  a->write("meta/num_classes", c10::IValue(meta.num_classes));
  a->write("meta/optimizer", c10::IValue(meta.optimizer));
  a->write("meta/epochs_completed", c10::IValue(meta.epochs_completed));
  a->write("meta/global_step", c10::IValue(meta.global_step));
  a->write("meta/seed", c10::IValue(static_cast<int64_t>(meta.seed)));
  a->write("meta/world_size", c10::IValue(meta.world_size));
  a->write("meta/plateau_best", c10::IValue(meta.plateau.best));
  a->write("meta/plateau_bad_epochs", c10::IValue(meta.plateau.bad_epochs));
  a->write("meta/plateau_lr_factor", c10::IValue(meta.plateau.lr_factor));
  a->write("meta/best_validation_loss", c10::IValue(meta.best_validation_loss));
  a->write("meta/best_epoch", c10::IValue(meta.best_epoch));
  torch::Tensor history =
      torch::zeros({static_cast<int64_t>(meta.history.size()), kHistoryColumns},
                   torch::kFloat64);
  auto rows = history.accessor<double, 2>();
  for (size_t i = 0; i < meta.history.size(); ++i) {
    const EpochRecord& r = meta.history[i];
    const double values[kHistoryColumns] = {
        static_cast<double>(r.epoch), r.train_loss,    r.validation_loss,
        r.validation_auroc,           r.learning_rate, r.seconds};
    for (int j = 0; j < kHistoryColumns; ++j) rows[i][j] = values[j];
  }
  a->write("meta/history", history, /*is_buffer=*/true);
  a->write("meta/epoch_step", c10::IValue(meta.epoch_step));
  a->write("meta/epoch_loss_sum", c10::IValue(meta.epoch_loss_sum));
  a->write("meta/epoch_loss_rows", c10::IValue(meta.epoch_loss_rows));
}

void ReadMeta(torch::serialize::InputArchive& a, CheckpointMeta* meta) {
  c10::IValue v;
  a.read("meta/arch", v);
  meta->arch = v.toStringRef();
  a.read("meta/image_size", v);
  meta->image_size = v.toInt();
  a.read("meta/num_classes", v);
  meta->num_classes = v.toInt();
  a.read("meta/optimizer", v);
  meta->optimizer = v.toStringRef();
  a.read("meta/epochs_completed", v);
  meta->epochs_completed = v.toInt();
  a.read("meta/global_step", v);
  meta->global_step = v.toInt();
  a.read("meta/seed", v);
  meta->seed = static_cast<uint64_t>(v.toInt());
  a.read("meta/world_size", v);
  meta->world_size = v.toInt();
  a.read("meta/plateau_best", v);
  meta->plateau.best = v.toDouble();
  a.read("meta/plateau_bad_epochs", v);
  meta->plateau.bad_epochs = v.toInt();
  a.read("meta/plateau_lr_factor", v);
  meta->plateau.lr_factor = v.toDouble();
  a.read("meta/best_validation_loss", v);
  meta->best_validation_loss = v.toDouble();
  a.read("meta/best_epoch", v);
  meta->best_epoch = v.toInt();
  torch::Tensor history;
  a.read("meta/history", history, /*is_buffer=*/true);
  TORCH_CHECK(history.dim() == 2 && history.size(1) == kHistoryColumns,
              "meta/history has shape ", history.sizes());
  // The archive may have been read onto a GPU (a resumed CUDA run).
  history = history.to(torch::kCPU, torch::kFloat64).contiguous();
  auto rows = history.accessor<double, 2>();
  meta->history.clear();
  for (int64_t i = 0; i < history.size(0); ++i) {
    EpochRecord r;
    r.epoch = static_cast<int64_t>(rows[i][0]);
    r.train_loss = rows[i][1];
    r.validation_loss = rows[i][2];
    r.validation_auroc = rows[i][3];
    r.learning_rate = rows[i][4];
    r.seconds = rows[i][5];
    meta->history.push_back(r);
  }
  // Absent in files written before mid-epoch checkpoints: epoch boundaries.
  meta->epoch_step = a.try_read("meta/epoch_step", v) ? v.toInt() : 0;
  meta->epoch_loss_sum =
      a.try_read("meta/epoch_loss_sum", v) ? v.toDouble() : 0;
  meta->epoch_loss_rows = a.try_read("meta/epoch_loss_rows", v) ? v.toInt() : 0;
}

// Everything in the meta that sizes or indexes something later (the model's
// head, the input images, the epoch loop) is checked before it is used: a
// checkpoint may come from anywhere.
absl::Status CheckMeta(const CheckpointMeta& meta) {
  if (meta.arch != "densenet121" && meta.arch != "vgg16") {
    return absl::InvalidArgumentError(
        absl::StrCat("meta/arch is \"", meta.arch.substr(0, 64),
                     "\"; expected densenet121 or vgg16"));
  }
  if (meta.num_classes != kNumFindings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "meta/num_classes is ", meta.num_classes, "; CheXNet models have ",
        kNumFindings, " outputs, one per finding"));
  }
  if (meta.image_size < kMinCheckpointImageSize ||
      meta.image_size > kMaxCheckpointImageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("meta/image_size is ", meta.image_size, "; expected ",
                     kMinCheckpointImageSize, " to ", kMaxCheckpointImageSize));
  }
  if (meta.epochs_completed < 0 ||
      meta.epochs_completed > kMaxCheckpointEpochs || meta.global_step < 0 ||
      meta.world_size < 1 || meta.best_epoch < -1 ||
      meta.best_epoch >= std::max<int64_t>(meta.epochs_completed, 0) ||
      meta.plateau.bad_epochs < 0 ||
      static_cast<int64_t>(meta.history.size()) > meta.epochs_completed ||
      meta.epoch_step < 0 || meta.epoch_loss_rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "inconsistent meta: epochs_completed ", meta.epochs_completed,
        ", global_step ", meta.global_step, ", world_size ", meta.world_size,
        ", best_epoch ", meta.best_epoch, ", plateau_bad_epochs ",
        meta.plateau.bad_epochs, ", ", meta.history.size(),
        " history rows, epoch_step ", meta.epoch_step, ", epoch_loss_rows ",
        meta.epoch_loss_rows));
  }
  if (!(meta.plateau.lr_factor > 0 && meta.plateau.lr_factor <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("meta/plateau_lr_factor is ", meta.plateau.lr_factor,
                     "; expected a factor in (0, 1]"));
  }
  return absl::OkStatus();
}

std::string ErrorText(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return error->what_without_backtrace();
  }
  return e.what();
}

// Parameters and buffers under their state_dict names, '.' written as '/'.
std::string ModelKey(const std::string& name) {
  std::string key = name;
  std::replace(key.begin(), key.end(), '.', '/');
  return key;
}

std::vector<std::pair<std::string, torch::Tensor>> ModelTensors(
    const torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& item : model.named_parameters()) {
    tensors.emplace_back(item.key(), item.value());
  }
  for (const auto& item : model.named_buffers()) {
    tensors.emplace_back(item.key(), item.value());
  }
  return tensors;
}

// Checkpoints hold CPU tensors only, whatever device trained the model, so
// chexnet_predict and a resumed run read them on either device.
void WriteModel(const torch::nn::Module& model,
                torch::serialize::OutputArchive* archive) {
  for (const auto& [name, tensor] : ModelTensors(model)) {
    archive->write(ModelKey(name), tensor.detach().to(torch::kCPU),
                   /*is_buffer=*/true);
  }
}

// Where the optimizer's parameters (and so its state) live.
torch::Device OptimizerDevice(const torch::optim::Optimizer& optimizer) {
  for (const auto& group : optimizer.param_groups()) {
    if (!group.params().empty()) return group.params()[0].device();
  }
  return torch::kCPU;
}

// Optimizer::save writes state tensors where they are. State on a GPU makes
// a round trip through memory: loaded back onto the CPU, written, and loaded
// onto its device again, so the file holds CPU tensors and the optimizer is
// left as it was (its state tensors are new objects with the same values).
void WriteOptimizer(torch::optim::Optimizer* optimizer,
                    torch::serialize::OutputArchive* archive) {
  const torch::Device device = OptimizerDevice(*optimizer);
  if (device.is_cpu()) {
    optimizer->save(*archive);
    return;
  }
  std::ostringstream saved;
  {
    torch::serialize::OutputArchive on_device;
    optimizer->save(on_device);
    on_device.save_to(saved);
  }
  const std::string bytes = saved.str();
  auto load_onto = [&](torch::Device target) {
    std::istringstream in(bytes);
    torch::serialize::InputArchive state;
    state.load_from(in, target);
    optimizer->load(state);
  };
  load_onto(torch::kCPU);
  try {
    optimizer->save(*archive);
  } catch (...) {
    load_onto(device);
    throw;
  }
  load_onto(device);
}

// All or nothing: every tensor is checked before any is copied.
absl::Status ReadModel(torch::serialize::InputArchive& archive,
                       torch::nn::Module* model) {
  const auto tensors = ModelTensors(*model);
  std::vector<torch::Tensor> loaded;
  std::vector<std::string> problems;
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor value;
    if (!archive.try_read(ModelKey(name), value, /*is_buffer=*/true)) {
      problems.push_back(absl::StrCat(name, " is missing"));
    } else if (value.sizes() != tensor.sizes()) {
      std::ostringstream shapes;
      shapes << name << " has shape " << value.sizes() << ", the model "
             << tensor.sizes();
      problems.push_back(shapes.str());
    }
    loaded.push_back(value);
  }
  const size_t in_file = archive.keys().size();
  if (problems.empty() && in_file != tensors.size()) {
    problems.push_back(absl::StrCat("the file has ", in_file,
                                    " tensors, the model ", tensors.size()));
  }
  if (!problems.empty()) {
    if (problems.size() > 5) {
      const size_t more = problems.size() - 5;
      problems.resize(5);
      problems.push_back(absl::StrCat("and ", more, " more"));
    }
    return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < tensors.size(); ++i) {
    tensors[i].second.copy_(loaded[i]);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SaveCheckpoint(const std::string& path, const CheckpointMeta& meta,
                            const torch::nn::Module& model,
                            torch::optim::Optimizer* optimizer,
                            const IndexSampler* sampler) {
  SamplerSaver save_sampler;
  if (sampler != nullptr) {
    save_sampler = [sampler](torch::serialize::OutputArchive& archive) {
      sampler->save(archive);
    };
  }
  return SaveCheckpoint(path, meta, model, optimizer, save_sampler);
}

absl::Status SaveCheckpoint(const std::string& path, const CheckpointMeta& meta,
                            const torch::nn::Module& model,
                            torch::optim::Optimizer* optimizer,
                            const SamplerSaver& save_sampler) {
  absl::StatusOr<std::unique_ptr<AtomicFileWriter>> writer =
      AtomicFileWriter::Open(path);
  if (!writer.ok()) return writer.status();
  absl::Status write_status;
  try {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string(kCheckpointFormat)));
    WriteMeta(meta, &archive);
    torch::serialize::OutputArchive model_archive(archive.compilation_unit());
    WriteModel(model, &model_archive);
    archive.write("model", model_archive);
    if (optimizer != nullptr) {
      torch::serialize::OutputArchive optimizer_archive(
          archive.compilation_unit());
      WriteOptimizer(optimizer, &optimizer_archive);
      archive.write("optimizer", optimizer_archive);
    }
    if (save_sampler) {
      torch::serialize::OutputArchive sampler_archive(
          archive.compilation_unit());
      save_sampler(sampler_archive);
      archive.write("sampler", sampler_archive);
    }
    archive.save_to([&](const void* data, size_t size) -> size_t {
      write_status = (*writer)->Append(data, size);
      return write_status.ok() ? size : 0;
    });
  } catch (const c10::Error& e) {
    if (!write_status.ok()) return write_status;
    return absl::InternalError(
        absl::StrCat(path, ": cannot write checkpoint: ", ErrorText(e)));
  }
  if (!write_status.ok()) return write_status;
  return (*writer)->Commit();
}

absl::Status LoadCheckpoint(const std::string& path, CheckpointMeta* meta,
                            torch::nn::Module* model,
                            torch::optim::Optimizer* optimizer,
                            IndexSampler* sampler) {
  SamplerLoader load_sampler;
  if (sampler != nullptr) {
    load_sampler = [sampler](torch::serialize::InputArchive& archive) {
      sampler->load(archive);
    };
  }
  return LoadCheckpoint(path, meta, model, optimizer, load_sampler);
}

absl::Status LoadCheckpoint(const std::string& path, CheckpointMeta* meta,
                            torch::nn::Module* model,
                            torch::optim::Optimizer* optimizer,
                            const SamplerLoader& load_sampler) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": no such checkpoint"));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file, not a checkpoint"));
  }
  // Tensors are read onto the optimizer's device (its state must live beside
  // the parameters) or the CPU; model tensors are copied to wherever the
  // model is.
  torch::Device device = torch::kCPU;
  if (optimizer != nullptr && !optimizer->param_groups().empty() &&
      !optimizer->param_groups()[0].params().empty()) {
    device = optimizer->param_groups()[0].params()[0].device();
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a readable torch archive: ", ErrorText(e)));
  }
  c10::IValue format;
  if (!archive.try_read("format", format) || !format.isString() ||
      format.toStringRef() != kCheckpointFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a chexnet_train checkpoint (expected format ",
                     kCheckpointFormat, ")"));
  }
  const char* part = "meta";
  try {
    ReadMeta(archive, meta);
    if (absl::Status status = CheckMeta(*meta); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": not a checkpoint chexnet_train writes: ", status.message()));
    }
    if (model != nullptr) {
      part = "model";
      torch::serialize::InputArchive model_archive;
      archive.read("model", model_archive);
      absl::Status status = ReadModel(model_archive, model);
      if (!status.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": the checkpoint's model does not fit: ", status.message()));
      }
    }
    if (optimizer != nullptr) {
      part = "optimizer";
      torch::serialize::InputArchive optimizer_archive;
      archive.read("optimizer", optimizer_archive);
      optimizer->load(optimizer_archive);
    }
    if (load_sampler) {
      part = "sampler";
      torch::serialize::InputArchive sampler_archive;
      archive.read("sampler", sampler_archive);
      load_sampler(sampler_archive);
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": cannot load the checkpoint's ", part, ": ", ErrorText(e)));
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointModel> LoadModelFromCheckpoint(
    const std::string& path) {
  CheckpointMeta meta;
  absl::Status status = LoadCheckpoint(path, &meta, nullptr, nullptr, nullptr);
  if (!status.ok()) return status;
  absl::StatusOr<std::shared_ptr<ChexnetModel>> model =
      MakeModel(meta.arch, meta.num_classes, /*head_bias_one=*/false);
  if (!model.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", model.status().message()));
  }
  status = LoadCheckpoint(path, &meta, model->get(), nullptr, nullptr);
  if (!status.ok()) return status;
  (*model)->eval();
  return CheckpointModel{*std::move(model), std::move(meta)};
}

}  // namespace kolo::chexnet
