// Tests of the dtype table (runtime/common/dtype_dispatch.h) and of the MPI
// and NCCL datatype tables built on it, against expectations written out
// here independently of both.
#include "runtime/common/dtype_dispatch.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <set>
#include <string>
#include <typeindex>

#include "runtime/backend/mpi/mpi_datatype.h"
#if KOLO_TEST_HAVE_NCCL
#include "runtime/backend/nccl/nccl_datatype.h"
#endif

namespace kolo {
namespace {

// What each dtype must be, in kolo_dtype order.
struct Expected {
  DataType dtype;
  int64_t size;
  const char* name;
  DtypeKind kind;
};
constexpr Expected kExpected[] = {
    {DataType::kUint8, 1, "uint8", DtypeKind::kInteger},
    {DataType::kInt8, 1, "int8", DtypeKind::kInteger},
    {DataType::kInt32, 4, "int32", DtypeKind::kInteger},
    {DataType::kInt64, 8, "int64", DtypeKind::kInteger},
    {DataType::kFloat16, 2, "float16", DtypeKind::kHalf},
    {DataType::kBfloat16, 2, "bfloat16", DtypeKind::kHalf},
    {DataType::kFloat32, 4, "float32", DtypeKind::kFloating},
    {DataType::kFloat64, 8, "float64", DtypeKind::kFloating},
    {DataType::kBool, 1, "bool", DtypeKind::kLogical},
};

// What DispatchDtype handed the callback.
struct Seen {
  int calls = 0;
  DataType dtype = DataType::kFloat32;
  int64_t size = 0;
  std::string name;
  DtypeKind kind = DtypeKind::kInteger;
  std::type_index type = typeid(void);
};

Seen Dispatch(int value) {
  Seen seen;
  DispatchDtype(static_cast<DataType>(value), [&](auto tag) {
    using Tag = decltype(tag);
    ++seen.calls;
    seen.dtype = Tag::kDtype;
    seen.size = sizeof(typename Tag::Type);
    seen.name = Tag::kName;
    seen.kind = Tag::kKind;
    seen.type = typeid(typename Tag::Type);
  });
  return seen;
}

TEST(DtypeDispatch, EveryDataTypeHasItsOwnEntry) {
  ASSERT_EQ(std::size(kExpected), static_cast<size_t>(kNumDataTypes));
  std::set<std::type_index> types;
  for (int value = 0; value < kNumDataTypes; ++value) {
    const Expected& expected = kExpected[value];
    ASSERT_EQ(static_cast<int>(expected.dtype), value);
    const Seen seen = Dispatch(value);
    EXPECT_EQ(seen.calls, 1) << "dtype " << value;
    EXPECT_EQ(seen.dtype, expected.dtype) << "dtype " << value;
    EXPECT_EQ(seen.size, expected.size) << "dtype " << value;
    EXPECT_EQ(seen.size, DataTypeSize(expected.dtype)) << "dtype " << value;
    EXPECT_EQ(seen.name, expected.name) << "dtype " << value;
    EXPECT_STREQ(DataTypeName(expected.dtype), expected.name)
        << "dtype " << value;
    EXPECT_EQ(seen.kind, expected.kind) << "dtype " << value;
    EXPECT_EQ(DtypeKindOf(expected.dtype), expected.kind) << "dtype " << value;
    EXPECT_TRUE(types.insert(seen.type).second)
        << "dtype " << value << " shares its storage type " << seen.type.name()
        << " with another dtype";
  }
}

TEST(DtypeDispatch, ValueOutsideTheEnumCallsNothing) {
  for (int value : {-1, kNumDataTypes, 1000}) {
    EXPECT_EQ(Dispatch(value).calls, 0) << "value " << value;
    const int64_t size =
        DispatchDtype(static_cast<DataType>(value), [](auto tag) -> int64_t {
          return sizeof(typename decltype(tag)::Type);
        });
    EXPECT_EQ(size, 0) << "value " << value;
    EXPECT_EQ(DataTypeSize(static_cast<DataType>(value)), 0)
        << "value " << value;
    EXPECT_STREQ(DataTypeName(static_cast<DataType>(value)), "invalid")
        << "value " << value;
  }
}

// The MPI datatype every dtype must travel as; MPI_DATATYPE_NULL where MPI
// has none.
MPI_Datatype ExpectedMpiDatatype(DataType dtype) {
  const MPI_Datatype table[] = {
      MPI_UINT8_T, MPI_INT8_T,        MPI_INT32_T,
      MPI_INT64_T, MPI_DATATYPE_NULL, MPI_DATATYPE_NULL,
      MPI_FLOAT,   MPI_DOUBLE,        MPI_UNSIGNED_CHAR,
  };
  static_assert(std::size(table) == kNumDataTypes);
  return table[static_cast<int>(dtype)];
}

TEST(MpiDatatype, TotalOverTheDtypesMpiHas) {
  for (const Expected& expected : kExpected) {
    const StatusOr<MPI_Datatype> type = MpiDatatype(expected.dtype);
    const MPI_Datatype want = ExpectedMpiDatatype(expected.dtype);
    if (want == MPI_DATATYPE_NULL) {
      ASSERT_FALSE(type.ok()) << expected.name;
      EXPECT_EQ(type.status().code(), absl::StatusCode::kInvalidArgument)
          << expected.name;
      EXPECT_EQ(type.status().message(),
                std::string("MPI has no ") + expected.name + " datatype");
    } else {
      ASSERT_TRUE(type.ok()) << expected.name << ": " << type.status();
      EXPECT_TRUE(*type == want) << expected.name;
    }
  }
}

TEST(MpiDatatype, RefusesAValueOutsideTheEnum) {
  const StatusOr<MPI_Datatype> type =
      MpiDatatype(static_cast<DataType>(kNumDataTypes));
  ASSERT_FALSE(type.ok());
  EXPECT_EQ(type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(type.status().message(),
            "invalid dtype " + std::to_string(kNumDataTypes));
}

#if KOLO_TEST_HAVE_NCCL
TEST(NcclDatatype, TotalOverEveryDtype) {
  // bool is a byte, reduced with ncclMax / ncclMin (nccl_plan.h).
  const ncclDataType_t want[] = {
      ncclUint8,    ncclInt8,    ncclInt32,   ncclInt64, ncclFloat16,
      ncclBfloat16, ncclFloat32, ncclFloat64, ncclUint8,
  };
  static_assert(std::size(want) == kNumDataTypes);
  for (const Expected& expected : kExpected) {
    const StatusOr<ncclDataType_t> type = nccl::NcclDatatype(expected.dtype);
    ASSERT_TRUE(type.ok()) << expected.name << ": " << type.status();
    EXPECT_EQ(*type, want[static_cast<int>(expected.dtype)]) << expected.name;
  }
}

TEST(NcclDatatype, RefusesAValueOutsideTheEnum) {
  const StatusOr<ncclDataType_t> type =
      nccl::NcclDatatype(static_cast<DataType>(-1));
  ASSERT_FALSE(type.ok());
  EXPECT_EQ(type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(type.status().message(), "invalid dtype -1");
}
#endif  // KOLO_TEST_HAVE_NCCL

}  // namespace
}  // namespace kolo
