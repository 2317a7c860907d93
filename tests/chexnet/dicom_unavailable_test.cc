// The variant built without DCMTK (examples/chexnet/data/dicom_unavailable.cc),
// compiled into this test on its own so that it is tested in every build.
#include <string>

#include "examples/chexnet/data/dicom_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo::chexnet {
namespace {

TEST(DicomUnavailable, RefusesEveryFileNamingItAndWhy) {
  EXPECT_FALSE(DicomSupported());
  std::string bytes(128, '\0');
  bytes += "DICM";
  EXPECT_TRUE(HasDicomMagic(bytes));
  EXPECT_FALSE(HasDicomMagic("DICM"));
  const absl::StatusOr<Image> image = DecodeDicom(bytes, "scan.dcm");
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(
      image.status().message(),
      ::testing::HasSubstr("scan.dcm: this build has no DICOM support"));
}

}  // namespace
}  // namespace kolo::chexnet
