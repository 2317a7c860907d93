// mnist.cc and mnist_kolo.cc: a LibTorch MNIST trainer shaped like the
// official example (a small CNN, train() and test() functions that take the
// usual LibTorch types, SGD with momentum, a StepLR schedule, a checkpoint of
// the optimizer per epoch), once for one process (mnist.cc) and once made
// distributed with kolo (mnist_kolo.cc: every rank trains on its share of
// each batch; kolo::torch::DistributedOptimizer averages the gradients and is
// the torch::optim::Optimizer that train(), StepLR and torch::save take).
// The README shows the diff between the two files.
//
// Usage: mnist DATA_DIR BATCH_SIZE EPOCHS BATCHES_PER_EPOCH OUT
// DATA_DIR holds the four MNIST idx files; OUT receives the final parameters
// (torch::save of a std::vector<torch::Tensor>) and OUT.optimizer the last
// optimizer checkpoint.
#include <kolo/torch.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

struct Net : torch::nn::Module {
  Net()
      : conv1(torch::nn::Conv2dOptions(1, 8, /*kernel_size=*/5)),
        conv2(torch::nn::Conv2dOptions(8, 16, /*kernel_size=*/5)),
        fc1(16 * 4 * 4, 64),
        fc2(64, 10) {
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(torch::max_pool2d(conv1->forward(x), 2));  // 8 x 12 x 12
    x = torch::relu(torch::max_pool2d(conv2->forward(x), 2));  // 16 x 4 x 4
    x = torch::relu(fc1->forward(x.flatten(1)));
    return torch::log_softmax(fc2->forward(x), /*dim=*/1);
  }

  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2;
};

template <typename DataLoader>
void train(int64_t epoch, Net& model, DataLoader& loader,
           torch::optim::Optimizer& optimizer, int64_t batches) {
  model.train();
  int64_t index = 0;
  for (auto& batch : loader) {
    if (index == batches) break;
    optimizer.zero_grad();
    torch::Tensor loss =
        torch::nll_loss(model.forward(batch.data), batch.target);
    loss.backward();
    optimizer.step();
    if (index++ % 10 == 0) {
      std::printf("epoch %lld batch %lld loss %.4f\n",
                  static_cast<long long>(epoch), static_cast<long long>(index),
                  loss.item<float>());
    }
  }
}

template <typename DataLoader>
void test(Net& model, DataLoader& loader, size_t dataset_size) {
  torch::NoGradGuard no_grad;
  model.eval();
  double loss = 0;
  int64_t correct = 0;
  for (const auto& batch : loader) {
    const torch::Tensor output = model.forward(batch.data);
    const torch::Tensor target = batch.target;
    loss += torch::nll_loss(output, target, {}, torch::Reduction::Sum)
                .item<double>();
    correct += output.argmax(1).eq(target).sum().item<int64_t>();
  }
  std::printf("test: mean loss %.4f, accuracy %.4f\n", loss / dataset_size,
              static_cast<double>(correct) / dataset_size);
}

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr,
                 "usage: %s DATA_DIR BATCH_SIZE EPOCHS BATCHES_PER_EPOCH OUT\n",
                 argv[0]);
    return 2;
  }
  const std::string data_dir = argv[1];
  const int64_t batch_size = std::stoll(argv[2]);
  const int64_t epochs = std::stoll(argv[3]);
  const int64_t batches = std::stoll(argv[4]);
  const std::string out = argv[5];
  torch::manual_seed(1);
  kolo::torch::init();

  Net model;
  kolo::torch::broadcast_parameters(model, 0);
  auto train_set =
      torch::data::datasets::MNIST(data_dir)
          .map(torch::data::transforms::Normalize<>(0.1307, 0.3081))
          .map(torch::data::transforms::Stack<>());
  const size_t train_size = train_set.size().value();
  auto sampler = kolo::torch::DistributedSampler(
      train_size, kolo::torch::size(), kolo::torch::rank(), /*shuffle=*/false);
  auto train_loader =
      torch::data::make_data_loader(std::move(train_set), sampler, batch_size);
  auto test_set = torch::data::datasets::MNIST(
                      data_dir, torch::data::datasets::MNIST::Mode::kTest)
                      .map(torch::data::transforms::Normalize<>(0.1307, 0.3081))
                      .map(torch::data::transforms::Stack<>());
  const size_t test_size = test_set.size().value();
  auto test_loader = torch::data::make_data_loader(std::move(test_set), 1000);

  auto options = torch::optim::SGDOptions(0.01).momentum(0.5);
  kolo::torch::DistributedOptimizer optimizer(
      std::make_shared<torch::optim::SGD>(model.parameters(), options),
      model.named_parameters());
  torch::optim::StepLR scheduler(optimizer, /*step_size=*/1, /*gamma=*/0.7);
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    train(epoch, model, *train_loader, optimizer, batches);
    test(model, *test_loader, test_size);
    scheduler.step();
    torch::save(optimizer, out + ".optimizer");
  }
  torch::save(model.parameters(), out);
}
