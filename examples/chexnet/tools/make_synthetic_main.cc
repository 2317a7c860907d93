// chexnet_make_synthetic: writes a small synthetic ChestX-ray14 in the NIH
// layout (see examples/chexnet/data/synthetic.h).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "absl/strings/str_format.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/data/synthetic.h"

int main(int argc, char** argv) {
  using kolo::chexnet::kLabelNames;
  using kolo::chexnet::kNumLabels;
  kolo::chexnet::SyntheticOptions options;

  CLI::App app(
      "Writes a synthetic ChestX-ray14 in exactly the NIH layout:\n"
      "  images/*.png               8-bit grayscale, "
      "<patient>_<follow-up>.png\n"
      "  Data_Entry_2017.csv        2017 header and rows (trailing commas)\n"
      "  Data_Entry_2017_v2020.csv  the same rows, v2020 header\n"
      "  train_val_list.txt, test_list.txt  about 80/20, split by patient\n"
      "  BBox_List_2017.csv         NIH's box file: where each of its 8\n"
      "                             findings was drawn in the test images\n"
      "Each finding is drawn as its own learnable shape or texture in its own\n"
      "region of a noisy chest-like picture. Over half the images are\n"
      "\"No Finding\"; class prevalence follows the real data set, except\n"
      "that rare classes are raised to at least 1% (Hernia is 0.2% in the\n"
      "real set) and every class is made positive in at least 2 images of\n"
      "each split, so that a small test split defines every class's AUROC.\n"
      "The same seed gives byte-identical files.");
  app.add_option("--out", options.out_dir, "Output directory (created)")
      ->required();
  app.add_option("--images", options.num_images, "Number of images")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  app.add_option("--size", options.image_size,
                 "Side of the square images in pixels")
      ->capture_default_str()
      ->check(CLI::Range(32, 1024));
  app.add_option("--seed", options.seed, "Random seed")->capture_default_str();
  app.add_option("--test-fraction", options.test_fraction,
                 "Fraction of images in test_list.txt (whole patients)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.95));
  CLI11_PARSE(app, argc, argv);

  const absl::StatusOr<kolo::chexnet::SyntheticSummary> summary =
      kolo::chexnet::GenerateSyntheticDataset(options);
  if (!summary.ok()) {
    std::fprintf(stderr, "chexnet_make_synthetic: %s\n",
                 std::string(summary.status().message()).c_str());
    return 1;
  }
  std::printf("%s: %d images of %dx%d from %d patients (seed %llu)\n",
              options.out_dir.c_str(), summary->num_images, options.image_size,
              options.image_size, summary->num_patients,
              static_cast<unsigned long long>(options.seed));
  std::printf("train_val %d, test %d, No Finding %d (%.1f%%)\n",
              summary->num_train_val, summary->num_test,
              summary->num_no_finding,
              100.0 * summary->num_no_finding / summary->num_images);
  std::printf("BBox_List_2017.csv: %d boxes\n", summary->num_boxes);
  std::printf("%-20s %9s %11s\n", "Finding", "Images", "Test images");
  for (int c = 0; c < kNumLabels; ++c) {
    std::printf("%-20s %9d %11d\n", std::string(kLabelNames[c]).c_str(),
                summary->positives[c], summary->test_positives[c]);
  }
  return 0;
}
