// Tests of the dataset and the multi-threaded batch loader, and of the resize
// against LibTorch's bilinear interpolation.
#include "examples/chexnet/data/batch_loader.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "examples/chexnet/data/dataset.h"
#include "examples/chexnet/data/image.h"
#include "examples/chexnet/data/random.h"
#include "examples/chexnet/data/splits.h"
#include "examples/chexnet/data/synthetic.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo::chexnet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kImages = 37;
constexpr int kSize = 32;

// A synthetic data set shared by the tests (generated once).
class BatchLoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(
        (fs::path(::testing::TempDir()) / "batch_loader_data").string());
    fs::remove_all(*dir_);
    SyntheticOptions options;
    options.out_dir = *dir_;
    options.num_images = kImages;
    options.image_size = 40;  // Loaded at kSize, so every image is resized.
    options.seed = 1;
    ASSERT_TRUE(GenerateSyntheticDataset(options).ok());
  }
  static void TearDownTestSuite() { delete dir_; }

  // All images of the set, in metadata order.
  ChestXrayDataset Dataset(const std::string& image_dir) {
    auto entries = ReadDataEntryCsv(*dir_ + "/Data_Entry_2017.csv");
    EXPECT_TRUE(entries.ok()) << entries.status();
    ImageOptions options;
    options.image_size = kSize;
    return ChestXrayDataset(image_dir, *entries, options);
  }
  ChestXrayDataset Dataset() { return Dataset(*dir_ + "/images"); }

  // Indices 0..n-1 shuffled with `seed`, as a sampler would give them.
  static std::vector<int64_t> Shuffled(int64_t n, uint64_t seed) {
    std::vector<int64_t> indices(n);
    for (int64_t i = 0; i < n; ++i) indices[i] = i;
    Rng rng(seed);
    Shuffle(indices, rng);
    return indices;
  }

  static std::vector<Batch> Drain(BatchLoader& loader) {
    std::vector<Batch> batches;
    while (true) {
      auto batch = loader.Next();
      EXPECT_TRUE(batch.ok()) << batch.status();
      if (!batch.ok() || !batch->has_value()) break;
      batches.push_back(**std::move(batch));
    }
    return batches;
  }

  static std::string* dir_;
};

std::string* BatchLoaderTest::dir_ = nullptr;

TEST_F(BatchLoaderTest, BatchesFollowTheIndicesWithMatchingContents) {
  const ChestXrayDataset dataset = Dataset();
  LoaderOptions options;
  options.batch_size = 8;
  options.num_workers = 3;
  BatchLoader loader(&dataset, options);
  const std::vector<int64_t> indices = Shuffled(kImages, 5);
  ASSERT_TRUE(loader.StartEpoch(indices, 0).ok());
  EXPECT_EQ(loader.num_batches(), 5);
  const std::vector<Batch> batches = Drain(loader);
  ASSERT_EQ(batches.size(), 5u);
  size_t position = 0;
  for (const Batch& batch : batches) {
    const int64_t rows = batch.images.size(0);
    EXPECT_EQ(batch.images.sizes(),
              (std::vector<int64_t>{rows, 3, kSize, kSize}));
    EXPECT_EQ(batch.images.dtype(), torch::kFloat32);
    EXPECT_EQ(batch.labels.sizes(), (std::vector<int64_t>{rows, kNumLabels}));
    ASSERT_EQ(batch.names.size(), static_cast<size_t>(rows));
    for (int64_t row = 0; row < rows; ++row, ++position) {
      const int64_t index = indices[position];
      EXPECT_EQ(batch.indices[row], index) << "position " << position;
      EXPECT_EQ(batch.names[row], dataset.entry(index).image_index);
      auto image = dataset.LoadImage(index, false);
      ASSERT_TRUE(image.ok()) << image.status();
      EXPECT_TRUE(torch::equal(batch.images[row], ImageToTensor(*image)))
          << "image of row " << row << " differs";
      for (int c = 0; c < kNumLabels; ++c) {
        EXPECT_EQ(batch.labels[row][c].item<float>(),
                  dataset.entry(index).labels[c]);
      }
    }
  }
  EXPECT_EQ(batches.back().images.size(0), kImages - 4 * 8);
  EXPECT_EQ(position, indices.size());
  // Past the end, Next() keeps saying so.
  auto end = loader.Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
}

TEST_F(BatchLoaderTest, DeterministicWhateverTheThreads) {
  const ChestXrayDataset dataset = Dataset();
  const std::vector<int64_t> indices = Shuffled(kImages, 9);
  std::vector<std::vector<Batch>> runs;
  for (int workers : {0, 1, 4, 8}) {
    for (int prefetch : {1, 3}) {
      LoaderOptions options;
      options.batch_size = 5;
      options.num_workers = workers;
      options.prefetch_batches = prefetch;
      options.random_horizontal_flip = true;
      options.seed = 77;
      BatchLoader loader(&dataset, options);
      ASSERT_TRUE(loader.StartEpoch(indices, 3).ok());
      runs.push_back(Drain(loader));
    }
  }
  for (size_t run = 1; run < runs.size(); ++run) {
    ASSERT_EQ(runs[run].size(), runs[0].size()) << "run " << run;
    for (size_t b = 0; b < runs[0].size(); ++b) {
      EXPECT_EQ(runs[run][b].names, runs[0][b].names)
          << "run " << run << " batch " << b;
      EXPECT_TRUE(torch::equal(runs[run][b].images, runs[0][b].images))
          << "run " << run << " batch " << b;
      EXPECT_TRUE(torch::equal(runs[run][b].labels, runs[0][b].labels));
    }
  }
}

TEST_F(BatchLoaderTest, FlipsDependOnSeedEpochAndIndexOnly) {
  const ChestXrayDataset dataset = Dataset();
  LoaderOptions options;
  options.batch_size = kImages;
  options.num_workers = 2;
  options.random_horizontal_flip = true;
  options.seed = 4;
  BatchLoader loader(&dataset, options);
  std::vector<int64_t> indices(kImages);
  for (int i = 0; i < kImages; ++i) indices[i] = i;

  auto flipped_rows = [&](int64_t epoch) {
    EXPECT_TRUE(loader.StartEpoch(indices, epoch).ok());
    const std::vector<Batch> batches = Drain(loader);
    std::vector<bool> flipped;
    for (int i = 0; i < kImages; ++i) {
      auto plain = dataset.LoadImage(i, false);
      auto mirrored = dataset.LoadImage(i, true);
      const torch::Tensor row = batches[0].images[i];
      const bool is_plain = torch::equal(row, ImageToTensor(*plain));
      const bool is_mirrored = torch::equal(row, ImageToTensor(*mirrored));
      EXPECT_TRUE(is_plain || is_mirrored) << "row " << i;
      flipped.push_back(is_mirrored && !is_plain);
    }
    return flipped;
  };
  const std::vector<bool> epoch0 = flipped_rows(0);
  const int count = std::count(epoch0.begin(), epoch0.end(), true);
  EXPECT_GT(count, kImages / 5);
  EXPECT_LT(count, kImages * 4 / 5);
  EXPECT_EQ(flipped_rows(0), epoch0);
  EXPECT_NE(flipped_rows(1), epoch0);

  // Without the option nothing is flipped.
  options.random_horizontal_flip = false;
  BatchLoader plain_loader(&dataset, options);
  ASSERT_TRUE(plain_loader.StartEpoch(indices, 0).ok());
  const std::vector<Batch> plain = Drain(plain_loader);
  for (int i = 0; i < kImages; ++i) {
    EXPECT_TRUE(torch::equal(plain[0].images[i],
                             ImageToTensor(*dataset.LoadImage(i, false))));
  }
}

TEST_F(BatchLoaderTest, DropLastAndRepeatedIndices) {
  const ChestXrayDataset dataset = Dataset();
  LoaderOptions options;
  options.batch_size = 4;
  options.drop_last = true;
  BatchLoader loader(&dataset, options);
  ASSERT_TRUE(loader.StartEpoch({0, 1, 2, 3, 4, 5, 6, 0, 0, 1}, 0).ok());
  const std::vector<Batch> batches = Drain(loader);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1].indices, (std::vector<int64_t>{4, 5, 6, 0}));
  EXPECT_TRUE(torch::equal(batches[0].images[0], batches[1].images[3]));
  // An empty epoch has no batches.
  ASSERT_TRUE(loader.StartEpoch({}, 1).ok());
  EXPECT_EQ(loader.num_batches(), 0);
  auto none = loader.Next();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(BatchLoaderTest, ExplicitBatchesKeepTheirSizesAndOrder) {
  const ChestXrayDataset dataset = Dataset();
  LoaderOptions options;
  options.batch_size = 2;  // Not used for explicit batches.
  options.drop_last = true;
  options.num_workers = 2;
  BatchLoader loader(&dataset, options);
  const std::vector<std::vector<int64_t>> wanted = {{5, 1, 7}, {}, {2, 9}};
  ASSERT_TRUE(loader.StartEpochBatches(wanted, 2).ok());
  EXPECT_EQ(loader.num_batches(), 3);
  const std::vector<Batch> batches = Drain(loader);
  ASSERT_EQ(batches.size(), 3u);
  for (size_t b = 0; b < wanted.size(); ++b) {
    EXPECT_EQ(batches[b].indices, wanted[b]) << "batch " << b;
    EXPECT_EQ(batches[b].images.size(0), static_cast<int64_t>(wanted[b].size()))
        << "batch " << b;
  }
  const absl::Status status = loader.StartEpochBatches({{0}, {kImages}}, 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("index 37 at position 1"));
}

TEST_F(BatchLoaderTest, RejectsIndicesOutsideTheDataset) {
  const ChestXrayDataset dataset = Dataset();
  BatchLoader loader(&dataset, LoaderOptions());
  const absl::Status status = loader.StartEpoch({0, kImages}, 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("index 37 at position 1"));
}

TEST_F(BatchLoaderTest, AbandonedEpochsAndEarlyDestruction) {
  const ChestXrayDataset dataset = Dataset();
  LoaderOptions options;
  options.batch_size = 2;
  options.num_workers = 4;
  options.prefetch_batches = 2;
  {
    BatchLoader loader(&dataset, options);
    ASSERT_TRUE(loader.StartEpoch(Shuffled(kImages, 1), 0).ok());
    ASSERT_TRUE(loader.Next().ok());
    // Restart mid-epoch: the new epoch starts from its first batch.
    const std::vector<int64_t> second = Shuffled(kImages, 2);
    ASSERT_TRUE(loader.StartEpoch(second, 1).ok());
    auto batch = loader.Next();
    ASSERT_TRUE(batch.ok() && batch->has_value());
    EXPECT_EQ((*batch)->indices, (std::vector<int64_t>{second[0], second[1]}));
    ASSERT_TRUE(loader.StartEpoch(second, 2).ok());
  }  // Destroyed with workers blocked on a full queue: must not hang.
}

class BadImagesTest : public BatchLoaderTest {
 protected:
  void SetUp() override {
    image_dir_ = (fs::path(::testing::TempDir()) / "bad_images").string();
    fs::remove_all(image_dir_);
    fs::copy(*dir_ + "/images", image_dir_);
    const ChestXrayDataset dataset = Dataset(image_dir_);
    missing_ = dataset.ImagePath(5);
    corrupt_ = dataset.ImagePath(6);
    fs::remove(missing_);
    std::ofstream(corrupt_, std::ios::binary | std::ios::trunc)
        << "\x89PNG\r\n\x1a\n garbage";
  }
  std::string image_dir_, missing_, corrupt_;
};

TEST_F(BadImagesTest, FailsNamingTheFileInBatchOrder) {
  const ChestXrayDataset dataset = Dataset(image_dir_);
  LoaderOptions options;
  options.batch_size = 4;
  options.num_workers = 3;
  BatchLoader loader(&dataset, options);
  std::vector<int64_t> indices = {0, 1, 2, 3, 4, 5, 6, 7};
  ASSERT_TRUE(loader.StartEpoch(indices, 0).ok());
  auto first = loader.Next();
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = loader.Next();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(second.status().message(), HasSubstr(missing_));

  ASSERT_TRUE(loader.StartEpoch({6}, 0).ok());
  auto corrupt = loader.Next();
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(corrupt.status().message(), HasSubstr(corrupt_));
}

TEST_F(BadImagesTest, SkipBadImagesSkipsAndCounts) {
  const ChestXrayDataset dataset = Dataset(image_dir_);
  LoaderOptions options;
  options.batch_size = 4;
  options.num_workers = 2;
  options.skip_bad_images = true;
  BatchLoader loader(&dataset, options);
  ASSERT_TRUE(loader.StartEpoch({0, 1, 2, 3, 4, 5, 6, 7, 5, 6}, 0).ok());
  const std::vector<Batch> batches = Drain(loader);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].images.size(0), 4);
  EXPECT_TRUE(batches[0].skipped.empty());
  EXPECT_EQ(batches[1].indices, (std::vector<int64_t>{4, 7}));
  EXPECT_EQ(batches[1].images.size(0), 2);
  EXPECT_EQ(batches[1].labels.size(0), 2);
  ASSERT_EQ(batches[1].skipped.size(), 2u);
  EXPECT_THAT(batches[1].skipped[0], HasSubstr(missing_));
  EXPECT_THAT(batches[1].skipped[1], HasSubstr(corrupt_));
  // A batch of bad images only is still returned, empty.
  EXPECT_EQ(batches[2].images.sizes(),
            (std::vector<int64_t>{0, 3, kSize, kSize}));
  EXPECT_EQ(batches[2].skipped.size(), 2u);
  EXPECT_EQ(loader.skipped_images(), 4);
}

TEST(ResizeBilinear, MatchesTorchInterpolate) {
  const uint64_t seed = 20240607;
  Rng rng(seed);
  for (auto [in_h, in_w, out_h, out_w] :
       std::vector<std::array<int, 4>>{{64, 64, 32, 32},
                                       {37, 53, 64, 64},
                                       {100, 80, 29, 29},
                                       {16, 16, 17, 15}}) {
    Image image(3, in_h, in_w);
    for (float& p : image.pixels) p = static_cast<float>(rng.Uniform());
    const Image resized = ResizeBilinear(image, out_h, out_w);
    const torch::Tensor reference =
        torch::nn::functional::interpolate(
            ImageToTensor(image).unsqueeze(0),
            torch::nn::functional::InterpolateFuncOptions()
                .size(std::vector<int64_t>{out_h, out_w})
                .mode(torch::kBilinear)
                .align_corners(false))
            .squeeze(0);
    const float difference =
        (ImageToTensor(resized) - reference).abs().max().item<float>();
    EXPECT_LT(difference, 1e-5) << in_h << "x" << in_w << " -> " << out_h << "x"
                                << out_w << " (seed " << seed << ")";
  }
}

TEST(ImageToTensor, CopiesChannelsRowsColumns) {
  Image image(3, 2, 2);
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = i;
  const torch::Tensor tensor = ImageToTensor(image);
  EXPECT_EQ(tensor.sizes(), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(tensor[2][1][0].item<float>(), 10.0f);
}

TEST(ChestXrayDataset, PositiveFraction) {
  std::vector<DataEntry> entries(4);
  entries[0].labels[1] = 1;
  entries[1].labels[1] = 1;
  entries[2].labels[13] = 1;
  const ChestXrayDataset dataset("/images", entries, ImageOptions());
  const LabelVector fraction = dataset.PositiveFraction();
  EXPECT_FLOAT_EQ(fraction[1], 0.5f);
  EXPECT_FLOAT_EQ(fraction[13], 0.25f);
  EXPECT_FLOAT_EQ(fraction[0], 0.0f);
  EXPECT_EQ(dataset.ImagePath(0), "/images/");
}

}  // namespace
}  // namespace kolo::chexnet
