// The synthetic ChestX-ray14 generator.
//
// Coordinates: u runs left to right and v top to bottom over the image, both
// in [0, 1]. The picture is in radiological convention, so the patient's
// right lung is the one at small u. Findings sit in distinct regions and, as
// training mirrors images left-right, also differ in shape or texture from
// the finding at the mirrored region (Mass/Nodule, Pneumothorax/
// Consolidation, Fibrosis/Pneumonia, Emphysema/Infiltration).
#include "examples/chexnet/data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "examples/chexnet/data/csv.h"
#include "examples/chexnet/data/data_entry.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/png_io.h"
#include "examples/chexnet/data/random.h"
#include "examples/chexnet/data/splits.h"

namespace kolo::chexnet {

const std::array<double, kNumLabels> kRealPrevalence = {
    0.103,  // Atelectasis
    0.025,  // Cardiomegaly
    0.119,  // Effusion
    0.177,  // Infiltration
    0.052,  // Mass
    0.056,  // Nodule
    0.013,  // Pneumonia
    0.047,  // Pneumothorax
    0.042,  // Consolidation
    0.021,  // Edema
    0.022,  // Emphysema
    0.015,  // Fibrosis
    0.030,  // Pleural_Thickening
    0.002,  // Hernia
};

namespace {

constexpr double kTwoPi = 6.283185307179586;

// Independent random streams, so that changing how one part of the data set
// is drawn leaves the others as they were.
enum Stream : uint64_t {
  kPatientsStream = 1,
  kLabelsStream,
  kSplitStream,
  kMetadataStream,
  kImageStream,
};

double Clamp01(double x) { return std::clamp(x, 0.0, 1.0); }

// Coverage of a shape at signed distance d from its edge (negative inside),
// blurred over `soft`.
double Edge(double d, double soft) { return Clamp01(0.5 - d / soft); }

// Approximate signed distance to an axis-aligned ellipse.
double EllipseDistance(double u, double v, double cx, double cy, double rx,
                       double ry) {
  const double du = (u - cx) / rx;
  const double dv = (v - cy) / ry;
  return (std::sqrt(du * du + dv * dv) - 1.0) * std::min(rx, ry);
}

double Ellipse(double u, double v, double cx, double cy, double rx, double ry,
               double soft) {
  return Edge(EllipseDistance(u, v, cx, cy, rx, ry), soft);
}

double Disc(double u, double v, double cx, double cy, double r, double soft) {
  return Edge(std::hypot(u - cx, v - cy) - r, soft);
}

double Mix(double a, double b, double t) { return a + (b - a) * t; }

struct Circle {
  double u = 0.0;
  double v = 0.0;
  double r = 0.0;
};

// Everything random about one image, drawn before any pixel is computed.
// All fields are drawn whatever the labels, so the labels change only what
// is drawn, never the jitter of the rest.
struct Scene {
  bool has[kNumLabels] = {};
  double amplitude[kNumLabels] = {};

  double shift_u, shift_v, scale, contrast, brightness, noise_sigma;
  Circle shading[5];
  double shading_amplitude[5];
  double heart_rx, heart_ry;

  double atelectasis_u, atelectasis_v, atelectasis_angle;
  double effusion_level;
  Circle infiltration[7];
  Circle mass;
  Circle nodules[3];
  Circle pneumonia;
  double pneumothorax_depth;
  double consolidation_u, consolidation_v, consolidation_angle;
  double edema_spread;
  Circle bullae[3];
  double fibrosis_u, fibrosis_v, fibrosis_angle;
  double pleural_width;
  Circle hernia;
};

Scene DrawScene(const LabelVector& labels, Rng& rng) {
  Scene s;
  for (int c = 0; c < kNumLabels; ++c) {
    s.has[c] = labels[c] != 0.0f;
    s.amplitude[c] = rng.Uniform(0.7, 1.0);
  }
  s.shift_u = rng.Uniform(-0.025, 0.025);
  s.shift_v = rng.Uniform(-0.025, 0.025);
  s.scale = rng.Uniform(0.94, 1.06);
  s.contrast = rng.Uniform(0.85, 1.15);
  s.brightness = rng.Uniform(-0.05, 0.05);
  s.noise_sigma = rng.Uniform(0.015, 0.035);
  for (int i = 0; i < 5; ++i) {
    s.shading[i] = {rng.Uniform(), rng.Uniform(), rng.Uniform(0.12, 0.3)};
    s.shading_amplitude[i] = rng.Uniform(-0.05, 0.05);
  }
  s.heart_rx = rng.Uniform(0.105, 0.125);
  s.heart_ry = rng.Uniform(0.083, 0.097);

  s.atelectasis_u = 0.37 + rng.Uniform(-0.02, 0.02);
  s.atelectasis_v = 0.62 + rng.Uniform(-0.02, 0.02);
  s.atelectasis_angle = rng.Uniform(-0.25, 0.25);
  s.effusion_level = 0.60 + rng.Uniform(-0.025, 0.02);
  for (Circle& blob : s.infiltration) {
    blob = {0.62 + rng.Uniform(-0.065, 0.065), 0.31 + rng.Uniform(-0.06, 0.06),
            rng.Uniform(0.018, 0.03)};
  }
  s.mass = {0.23 + rng.Uniform(-0.02, 0.02), 0.45 + rng.Uniform(-0.03, 0.03),
            rng.Uniform(0.05, 0.065)};
  for (Circle& nodule : s.nodules) {
    nodule = {0.77 + rng.Uniform(-0.05, 0.05), 0.45 + rng.Uniform(-0.07, 0.07),
              rng.Uniform(0.022, 0.03)};
  }
  s.pneumonia = {0.76 + rng.Uniform(-0.02, 0.02),
                 0.62 + rng.Uniform(-0.02, 0.02), rng.Uniform(0.05, 0.065)};
  s.pneumothorax_depth = rng.Uniform(0.3, 0.45);
  s.consolidation_u = 0.76 + rng.Uniform(-0.02, 0.02);
  s.consolidation_v = 0.30 + rng.Uniform(-0.02, 0.02);
  s.consolidation_angle = rng.Uniform(-0.3, 0.3);
  s.edema_spread = rng.Uniform(0.9, 1.1);
  for (Circle& bulla : s.bullae) {
    bulla = {0.37 + rng.Uniform(-0.05, 0.05), 0.28 + rng.Uniform(-0.05, 0.05),
             rng.Uniform(0.032, 0.045)};
  }
  s.fibrosis_u = 0.23 + rng.Uniform(-0.02, 0.02);
  s.fibrosis_v = 0.61 + rng.Uniform(-0.02, 0.02);
  s.fibrosis_angle = rng.Uniform(0.0, 1.5);
  s.pleural_width = rng.Uniform(0.022, 0.032);
  s.hernia = {0.5 + rng.Uniform(-0.015, 0.015),
              0.775 + rng.Uniform(-0.015, 0.015), rng.Uniform(0.048, 0.058)};
  return s;
}

// Intensity in [0, 1] (before pose, contrast and noise) at anatomical
// coordinates (u, v).
double Intensity(const Scene& s, double u, double v) {
  const double* a = s.amplitude;
  const double right_lung = Ellipse(u, v, 0.31, 0.45, 0.16, 0.29, 0.02);
  const double left_lung = Ellipse(u, v, 0.69, 0.45, 0.16, 0.29, 0.02);
  const double lung = std::max(right_lung, left_lung);

  double value = 0.06;
  value = Mix(value, 0.50, Ellipse(u, v, 0.5, 0.58, 0.47, 0.56, 0.03));
  double lung_tone = 0.20 + 0.10 * (v - 0.16) / 0.58;
  if (s.has[10]) lung_tone -= 0.07 * a[10];  // Emphysema: hyperlucent.
  value = Mix(value, lung_tone, lung);
  const double rib = std::pow(
      0.5 + 0.5 * std::sin(kTwoPi * (v * 7.5 + 3.0 * (u - 0.5) * (u - 0.5))),
      8.0);
  value += 0.07 * rib * lung;
  value = Mix(value, 0.62,
              Edge(std::abs(u - 0.5) - 0.055, 0.02) * Edge(0.12 - v, 0.02));

  // Heart; Cardiomegaly (1) enlarges it by half or more.
  const double grow = s.has[1] ? 1.45 + 0.25 * a[1] : 1.0;
  value = Mix(
      value, 0.63,
      Ellipse(u, v, 0.55, 0.64, s.heart_rx * grow, s.heart_ry * grow, 0.015));

  for (int i = 0; i < 5; ++i) {
    const Circle& c = s.shading[i];
    const double d2 = (u - c.u) * (u - c.u) + (v - c.v) * (v - c.v);
    value += s.shading_amplitude[i] * std::exp(-d2 / (2.0 * c.r * c.r));
  }

  if (s.has[0]) {  // Atelectasis: a thin tilted plate.
    const double du = u - s.atelectasis_u, dv = v - s.atelectasis_v;
    const double ca = std::cos(s.atelectasis_angle);
    const double sa = std::sin(s.atelectasis_angle);
    const double p = ca * du + sa * dv, q = -sa * du + ca * dv;
    value += 0.38 * a[0] * Edge(std::abs(p) - 0.075, 0.01) *
             Edge(std::abs(q) - 0.013, 0.008);
  }
  if (s.has[2]) {  // Effusion: fluid filling the base, meniscus laterally.
    const double level = s.effusion_level - 0.07 * Clamp01((0.31 - u) / 0.16);
    value = Mix(value, 0.58, a[2] * right_lung * Edge(level - v, 0.012));
  }
  if (s.has[3]) {  // Infiltration: patchy soft blobs.
    double patches = 0.0;
    for (const Circle& c : s.infiltration) {
      patches += Disc(u, v, c.u, c.v, c.r, 0.8 * c.r);
    }
    value += 0.24 * a[3] * std::min(1.0, patches);
  }
  if (s.has[4]) {  // Mass: one large, sharp disc.
    value += 0.40 * a[4] * Disc(u, v, s.mass.u, s.mass.v, s.mass.r, 0.008);
  }
  if (s.has[5]) {  // Nodule: a few small, sharp dots.
    double dots = 0.0;
    for (const Circle& c : s.nodules) {
      dots = std::max(dots, Disc(u, v, c.u, c.v, c.r, 0.006));
    }
    value += 0.45 * a[5] * dots;
  }
  if (s.has[6]) {  // Pneumonia: a mottled, soft-edged cloud.
    const Circle& c = s.pneumonia;
    const double d2 = (u - c.u) * (u - c.u) + (v - c.v) * (v - c.v);
    const double mottle =
        0.7 + 0.3 * std::sin(45.0 * u + 3.0) * std::sin(41.0 * v + 1.0);
    value += 0.42 * a[6] * std::exp(-d2 / (2.0 * c.r * c.r)) * mottle;
  }
  if (s.has[7]) {  // Pneumothorax: black apex, bright pleural line.
    const double rx = 0.16 * (1.0 - s.pneumothorax_depth);
    const double d = EllipseDistance(u, v, 0.34, 0.52, rx, 0.25);
    const double upper = Edge(v - 0.55, 0.03);
    value = Mix(value, 0.03, 0.9 * a[7] * right_lung * upper * Edge(-d, 0.01));
    value +=
        0.35 * a[7] * right_lung * upper * Edge(std::abs(d) - 0.004, 0.005);
  }
  if (s.has[8]) {  // Consolidation: dense block with dark air bronchograms.
    const double du = u - s.consolidation_u, dv = v - s.consolidation_v;
    const double ca = std::cos(s.consolidation_angle);
    const double sa = std::sin(s.consolidation_angle);
    const double p = ca * du + sa * dv, q = -sa * du + ca * dv;
    const double block =
        Edge(std::max(std::abs(p) - 0.065, std::abs(q) - 0.045), 0.008);
    const double bronchus =
        std::max(Edge(std::abs(q - 0.35 * p) - 0.005, 0.004),
                 Edge(std::abs(q + 0.5 * p) - 0.005, 0.004));
    value += 0.42 * a[8] * block * (1.0 - 0.7 * bronchus);
  }
  if (s.has[9]) {  // Edema: symmetric perihilar "bat wings".
    const double rx = 0.055 * s.edema_spread, ry = 0.11 * s.edema_spread;
    value += 0.26 * a[9] *
             std::max(Ellipse(u, v, 0.395, 0.46, rx, ry, 0.04),
                      Ellipse(u, v, 0.605, 0.46, rx, ry, 0.04));
  }
  if (s.has[10]) {  // Emphysema: dark bullae with thin walls.
    for (const Circle& c : s.bullae) {
      const double d = std::hypot(u - c.u, v - c.v) - c.r;
      value = Mix(value, 0.04, 0.8 * a[10] * Edge(d, 0.004));
      value += 0.25 * a[10] * Edge(std::abs(d) - 0.004, 0.004);
    }
  }
  if (s.has[11]) {  // Fibrosis: a reticular net.
    const double du = u - s.fibrosis_u, dv = v - s.fibrosis_v;
    const double ca = std::cos(s.fibrosis_angle);
    const double sa = std::sin(s.fibrosis_angle);
    const double period = 0.036;
    const double p = (ca * du + sa * dv) / period;
    const double q = (-sa * du + ca * dv) / period;
    const double line =
        std::min(std::abs(p - std::round(p)), std::abs(q - std::round(q))) *
        period;
    value += 0.36 * a[11] * Edge(line - 0.005, 0.004) *
             Ellipse(u, v, s.fibrosis_u, s.fibrosis_v, 0.075, 0.075, 0.02);
  }
  if (s.has[12]) {  // Pleural thickening: bright rind on the lateral wall.
    const double w = s.pleural_width;
    const double d = EllipseDistance(u, v, 0.69, 0.45, 0.16, 0.29);
    const double rind = Edge(std::abs(d + 0.5 * w) - 0.5 * w, 0.006);
    const double region =
        Edge(0.73 - u, 0.02) * Edge(std::abs(v - 0.45) - 0.17, 0.03);
    value = Mix(value, 0.66, a[12] * rind * region);
  }
  if (s.has[13]) {  // Hernia: gas bubble with fluid level and bright rim.
    const Circle& c = s.hernia;
    const double d = std::hypot(u - c.u, v - c.v) - c.r;
    const double gas = Edge(d + 0.01, 0.005) * Edge(v - (c.v + 0.01), 0.004);
    value = Mix(value, 0.08, a[13] * gas);
    value = Mix(value, 0.82, a[13] * Edge(std::abs(d) - 0.007, 0.005));
  }
  return value;
}

int ImagesForNextPatient(Rng& rng) {
  // 1 + a geometric count: mean about 3 images per patient, a long tail.
  const int extra = static_cast<int>(-std::log(1.0 - rng.Uniform()) * 2.6);
  return 1 + std::min(extra, 24);
}

// Probability of each finding given that an image is abnormal, chosen so
// that drawing findings independently and redrawing empty sets gives the
// target marginal prevalence.
std::array<double, kNumLabels> ConditionalProbabilities(
    const std::array<double, kNumLabels>& prevalence, double abnormal) {
  double k = 1.0;
  std::array<double, kNumLabels> q{};
  for (int iteration = 0; iteration < 100; ++iteration) {
    double none = 1.0;
    for (int c = 0; c < kNumLabels; ++c) {
      q[c] = std::min(0.95, k * prevalence[c] / abnormal);
      none *= 1.0 - q[c];
    }
    k = 1.0 - none;
  }
  return q;
}

struct ImageRecord {
  std::string name;
  int patient = 0;
  int follow_up = 0;
  LabelVector labels{};
  bool test = false;
};

void EnsureMinimumPositives(std::vector<ImageRecord*>& split, Rng& rng) {
  for (int c = 0; c < kNumLabels; ++c) {
    int count = 0;
    for (const ImageRecord* r : split) count += r->labels[c] != 0.0f;
    // Prefer images that already have findings, to keep "No Finding" the
    // majority.
    std::vector<ImageRecord*> abnormal, normal;
    for (ImageRecord* r : split) {
      if (r->labels[c] != 0.0f) continue;
      bool any = false;
      for (float l : r->labels) any = any || l != 0.0f;
      (any ? abnormal : normal).push_back(r);
    }
    Shuffle(abnormal, rng);
    Shuffle(normal, rng);
    abnormal.insert(abnormal.end(), normal.begin(), normal.end());
    for (size_t i = 0; count < kMinPositivesPerSplit && i < abnormal.size();
         ++i, ++count) {
      abnormal[i]->labels[c] = 1.0f;
    }
  }
}

}  // namespace

std::vector<uint8_t> RenderSyntheticImage(const LabelVector& labels, int size,
                                          uint64_t seed) {
  Rng rng(seed);
  const Scene scene = DrawScene(labels, rng);
  std::vector<uint8_t> pixels(static_cast<size_t>(size) * size);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const double u = (x + 0.5) / size, v = (y + 0.5) / size;
      const double au = (u - 0.5 - scene.shift_u) / scene.scale + 0.5;
      const double av = (v - 0.5 - scene.shift_v) / scene.scale + 0.5;
      double value = Intensity(scene, au, av);
      value = (value - 0.4) * scene.contrast + 0.4 + scene.brightness;
      value += scene.noise_sigma * rng.Normal();
      pixels[static_cast<size_t>(y) * size + x] =
          static_cast<uint8_t>(std::lround(Clamp01(value) * 255.0));
    }
  }
  return pixels;
}

std::vector<FindingBox> SyntheticFindingBoxes(const std::string& image_index,
                                              const LabelVector& labels,
                                              const std::vector<int>& findings,
                                              int size, uint64_t seed) {
  // The same draws as RenderSyntheticImage, so the same pose and shapes.
  Rng rng(seed);
  const Scene scene = DrawScene(labels, rng);
  std::vector<FindingBox> boxes;
  for (int finding : findings) {
    if (!scene.has[finding]) continue;
    Scene without = scene;
    without.has[finding] = false;
    int x0 = size, y0 = size, x1 = -1, y1 = -1;
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        const double u = (x + 0.5) / size, v = (y + 0.5) / size;
        const double au = (u - 0.5 - scene.shift_u) / scene.scale + 0.5;
        const double av = (v - 0.5 - scene.shift_v) / scene.scale + 0.5;
        const double change =
            std::abs(Intensity(scene, au, av) - Intensity(without, au, av)) *
            scene.contrast;
        if (change <= kFindingRegionThreshold) continue;
        x0 = std::min(x0, x);
        y0 = std::min(y0, y);
        x1 = std::max(x1, x);
        y1 = std::max(y1, y);
      }
    }
    if (x1 < 0) continue;
    FindingBox box;
    box.image_index = image_index;
    box.finding = finding;
    box.box = {static_cast<double>(x0), static_cast<double>(y0),
               static_cast<double>(x1 - x0 + 1),
               static_cast<double>(y1 - y0 + 1)};
    boxes.push_back(std::move(box));
  }
  return boxes;
}

absl::StatusOr<SyntheticSummary> GenerateSyntheticDataset(
    const SyntheticOptions& options) {
  namespace fs = std::filesystem;
  if (options.out_dir.empty()) {
    return absl::InvalidArgumentError("--out: an output directory is required");
  }
  if (options.num_images < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--images must be at least 1, got ", options.num_images));
  }
  if (options.image_size < 32 || options.image_size > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--size must be in [32, 1024], got ", options.image_size));
  }
  if (!(options.test_fraction >= 0.0 && options.test_fraction < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "test fraction must be in [0, 1), got ", options.test_fraction));
  }
  const fs::path out(options.out_dir);
  const fs::path images_dir = out / kImagesDir;
  std::error_code error;
  fs::create_directories(images_dir, error);
  if (error) {
    return absl::InternalError(absl::StrCat(
        images_dir.string(), ": cannot create directory: ", error.message()));
  }

  // Patients and their images.
  std::vector<ImageRecord> records;
  std::vector<std::pair<size_t, size_t>> patient_ranges;  // [begin, end)
  {
    Rng rng(HashCombine(options.seed, kPatientsStream));
    int patient = 0;
    while (static_cast<int>(records.size()) < options.num_images) {
      ++patient;
      const int count =
          std::min(ImagesForNextPatient(rng),
                   options.num_images - static_cast<int>(records.size()));
      patient_ranges.emplace_back(records.size(), records.size() + count);
      for (int f = 0; f < count; ++f) {
        ImageRecord r;
        r.name = absl::StrFormat("%08d_%03d.png", patient, f);
        r.patient = patient;
        r.follow_up = f;
        records.push_back(std::move(r));
      }
    }
  }

  // Findings.
  {
    Rng rng(HashCombine(options.seed, kLabelsStream));
    std::array<double, kNumLabels> prevalence;
    for (int c = 0; c < kNumLabels; ++c) {
      prevalence[c] = std::max(kRealPrevalence[c], kMinPrevalence);
    }
    const double abnormal = 1.0 - kRealNoFindingFraction;
    const std::array<double, kNumLabels> q =
        ConditionalProbabilities(prevalence, abnormal);
    for (ImageRecord& r : records) {
      if (!rng.Bernoulli(abnormal)) continue;
      bool any = false;
      while (!any) {
        for (int c = 0; c < kNumLabels; ++c) {
          r.labels[c] = rng.Bernoulli(q[c]) ? 1.0f : 0.0f;
          any = any || r.labels[c] != 0.0f;
        }
      }
    }
  }

  // Patient-level test split, then the per-split minimum of positives.
  {
    Rng rng(HashCombine(options.seed, kSplitStream));
    std::vector<size_t> order(patient_ranges.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    Shuffle(order, rng);
    const int target = static_cast<int>(
        std::lround(options.test_fraction * options.num_images));
    int in_test = 0;
    // The last patient in the shuffled order always stays in train_val.
    for (size_t i = 0; i + 1 < order.size() && in_test < target; ++i) {
      const auto [begin, end] = patient_ranges[order[i]];
      for (size_t j = begin; j < end; ++j) records[j].test = true;
      in_test += static_cast<int>(end - begin);
    }
    std::vector<ImageRecord*> train_val, test;
    for (ImageRecord& r : records) (r.test ? test : train_val).push_back(&r);
    EnsureMinimumPositives(train_val, rng);
    EnsureMinimumPositives(test, rng);
  }

  // Metadata files and split lists.
  SyntheticSummary summary;
  summary.num_images = options.num_images;
  summary.num_patients = static_cast<int>(patient_ranges.size());
  std::string csv_2017 =
      "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
      "Patient Gender,View Position,OriginalImage[Width,Height],"
      "OriginalImagePixelSpacing[x,y],\n";
  std::string csv_2020 =
      "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
      "Patient Gender,View Position,OriginalImage[Width,Height],"
      "OriginalImagePixelSpacing[x,y]\n";
  std::string train_val_list, test_list;
  {
    Rng rng(HashCombine(options.seed, kMetadataStream));
    std::vector<int> age(summary.num_patients + 1);
    std::vector<char> gender(summary.num_patients + 1);
    for (int p = 1; p <= summary.num_patients; ++p) {
      age[p] = static_cast<int>(
          std::clamp(std::lround(47.0 + 16.0 * rng.Normal()), 1L, 95L));
      gender[p] = rng.Bernoulli(0.56) ? 'M' : 'F';
    }
    // The notional original film: 2048-3056 pixels a side, 0.139-0.168 mm.
    for (const ImageRecord& r : records) {
      const int width = 2048 + 8 * static_cast<int>(rng.UniformInt(127));
      const int height = 2048 + 8 * static_cast<int>(rng.UniformInt(127));
      const double spacing = rng.Bernoulli(0.5) ? 0.143 : 0.139;
      const std::string row = absl::StrFormat(
          "%s,%s,%d,%d,%d,%c,%s,%d,%d,%.3f,%.3f", r.name,
          QuoteCsvField(FormatFindingLabels(r.labels)), r.follow_up, r.patient,
          age[r.patient] + r.follow_up / 4, gender[r.patient],
          rng.Bernoulli(0.6) ? "PA" : "AP", width, height, spacing, spacing);
      absl::StrAppend(&csv_2017, row, ",\n");
      absl::StrAppend(&csv_2020, row, "\n");
      absl::StrAppend(r.test ? &test_list : &train_val_list, r.name, "\n");
      (r.test ? summary.num_test : summary.num_train_val) += 1;
      bool any = false;
      for (int c = 0; c < kNumLabels; ++c) {
        if (r.labels[c] == 0.0f) continue;
        any = true;
        ++summary.positives[c];
        if (r.test) ++summary.test_positives[c];
      }
      if (!any) ++summary.num_no_finding;
    }
  }
  // Images first, each from its own stream so any one can be re-rendered
  // alone; the metadata and lists last, so an interrupted run leaves no list
  // naming a missing image.
  std::vector<int> boxed_findings;
  for (int c = 0; c < kNumBoxedFindings; ++c) boxed_findings.push_back(c);
  std::vector<FindingBox> boxes;
  for (size_t i = 0; i < records.size(); ++i) {
    const uint64_t image_seed =
        HashCombine(HashCombine(options.seed, kImageStream), i);
    const std::vector<uint8_t> pixels =
        RenderSyntheticImage(records[i].labels, options.image_size, image_seed);
    if (records[i].test) {
      for (FindingBox& box : SyntheticFindingBoxes(
               records[i].name, records[i].labels, boxed_findings,
               options.image_size, image_seed)) {
        boxes.push_back(std::move(box));
      }
    }
    absl::StatusOr<std::string> png =
        EncodePng8(pixels.data(), options.image_size, options.image_size, 1);
    if (!png.ok()) return png.status();
    // A generated set is made again rather than recovered after a crash, so
    // its files skip the fsync that would cost seconds per thousand images.
    if (absl::Status s =
            WriteStringToFile((images_dir / records[i].name).string(), *png,
                              Durability::kUnsynced);
        !s.ok()) {
      return s;
    }
  }
  summary.num_boxes = static_cast<int>(boxes.size());
  const std::string bbox_list = FormatBBoxListCsv(boxes);
  for (const auto& [name, contents] :
       {std::pair<const char*, const std::string&>{kBBoxList, bbox_list},
        {kDataEntry2017, csv_2017},
        {kDataEntry2020, csv_2020},
        {kTrainValList, train_val_list},
        {kTestList, test_list}}) {
    if (absl::Status s = WriteStringToFile((out / name).string(), contents,
                                           Durability::kUnsynced);
        !s.ok()) {
      return s;
    }
  }

  return summary;
}

}  // namespace kolo::chexnet
