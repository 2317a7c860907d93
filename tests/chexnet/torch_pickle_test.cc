// The torch.save format parser on hostile input: deep nesting, object and
// stack floods, self-referencing memo entries, huge declared storages,
// overflowing tensor views and truncation at every byte must each end in a
// clear error naming the file, never a crash, a hang or a huge allocation.
// Valid files are built by hand here; torchvision's real files are read in
// models_test.cc.
#include "examples/chexnet/models/torch_pickle.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/chexnet/pickle_fixture.h"

namespace kolo {
namespace chexnet {
namespace {

using std::string_literals::operator""s;
using testing::Floats;
using ::testing::HasSubstr;
using testing::Int;
using testing::KeyList;
using testing::Le;
using testing::LegacyHeader;
using testing::OrderedDict;
using testing::StateDictPickle;
using testing::Storage;
using testing::Str;
using testing::Tensor;

// {"w": tensor([1.5, -2, 0.25]), "b": tensor([-2])} sharing one storage.
std::string ValidLegacyFile() {
  const std::string storage = Storage("0", 3, true);
  return LegacyHeader() +
         StateDictPickle({{"w", Tensor(storage, 0, {3}, {1})},
                          {"b", Tensor(storage, 1, {1}, {1})}}) +
         KeyList({"0"}) + Floats({1.5f, -2.0f, 0.25f});
}

void ExpectError(const absl::StatusOr<StateDictLayout>& layout,
                 absl::StatusCode code, const std::string& text) {
  ASSERT_FALSE(layout.ok()) << "accepted; expected: " << text;
  EXPECT_EQ(layout.status().code(), code) << layout.status();
  EXPECT_THAT(std::string(layout.status().message()), HasSubstr(text));
  EXPECT_THAT(std::string(layout.status().message()), HasSubstr("n.pth"));
}

// ---- valid files
// ---------------------------------------------------------------

TEST(TorchPickle, ReadsALegacyFileWithASharedStorage) {
  const std::string file = ValidLegacyFile();
  absl::StatusOr<StateDictLayout> layout = ParseLegacyFile(file, "n.pth");
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->storages.size(), 1u);
  EXPECT_EQ(layout->storages[0].numel, 3);
  EXPECT_EQ(layout->storages[0].type, StorageType::kFloat32);
  EXPECT_EQ(layout->storages[0].file_offset, file.size() - 12);
  ASSERT_EQ(layout->tensors.size(), 2u);
  EXPECT_EQ(layout->tensors[0].name, "w");
  EXPECT_EQ(layout->tensors[1].name, "b");
  EXPECT_EQ(layout->tensors[1].storage, 0u);
  EXPECT_EQ(layout->tensors[1].offset, 1);
  EXPECT_EQ(layout->tensors[1].sizes, std::vector<int64_t>{1});
}

TEST(TorchPickle, ReadsAZipPickleAndKeepsOnlyTheStateDictsStorages) {
  // A training checkpoint: the optimizer's storage is not the state_dict's.
  const std::string checkpoint =
      "\x80\x02}(" + Str("optimizer") +
      Tensor(Storage("9", 5, false), 0, {5}, {1}) + Str("state_dict") +
      OrderedDict({{"w", Tensor(Storage("0", 4, false), 0, {2, 2}, {2, 1})}}) +
      "u.";
  absl::StatusOr<StateDictLayout> layout = ParseZipPickle(checkpoint, "n.pth");
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->storages.size(), 1u);
  EXPECT_EQ(layout->storages[0].key, "0");
  ASSERT_EQ(layout->tensors.size(), 1u);
  EXPECT_EQ(layout->tensors[0].sizes, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(layout->tensors[0].strides, (std::vector<int64_t>{2, 1}));
}

// ---- nesting, floods and cycles
// -------------------------------------------------

TEST(TorchPickle, DeepNestingIsAnErrorNotAStackOverflow) {
  // The file: None in a million nested 1-tuples. Building, and
  // destroying, such a graph once recursed.
  const std::string file = "\x80\x02N"s + std::string(1000000, '\x85') + ".";
  ExpectError(ParseLegacyFile(file, "n.pth"),
              absl::StatusCode::kInvalidArgument,
              "objects are nested more than 1000 levels deep");
  ExpectError(ParseZipPickle(file, "n.pth"), absl::StatusCode::kInvalidArgument,
              "objects are nested more than 1000 levels deep");
  // Up to the limit the nesting itself is fine.
  const std::string deep = "\x80\x02N"s + std::string(1000, '\x85') + ".";
  ExpectError(ParseZipPickle(deep, "n.pth"), absl::StatusCode::kInvalidArgument,
              "holds a tuple, not a state_dict");
}

TEST(TorchPickle, NestingThroughListsAndDictsIsBoundedToo) {
  // [[[...]]] built with EMPTY_LIST ... APPEND, and {"k": {"k": ...}}.
  std::string lists = "\x80\x02";
  for (int i = 0; i < 2000; ++i) lists += "]";
  for (int i = 0; i < 1999; ++i) lists += "a";
  lists += ".";
  ExpectError(ParseZipPickle(lists, "n.pth"),
              absl::StatusCode::kInvalidArgument, "nested more than 1000");
  std::string dicts = "\x80\x02";
  for (int i = 0; i < 2000; ++i) dicts += "}" + Str("k");
  dicts += "N";
  for (int i = 0; i < 2000; ++i) dicts += "s";
  dicts += ".";
  ExpectError(ParseZipPickle(dicts, "n.pth"),
              absl::StatusCode::kInvalidArgument, "nested more than 1000");
}

TEST(TorchPickle, ObjectStackMarkAndMemoFloodsHitTheirLimits) {
  PickleLimits limits;
  limits.max_objects = 1000;
  limits.max_stack = 500;
  std::string objects = "\x80\x02";
  for (int i = 0; i < 1001; ++i) objects += "N0";  // NONE, POP
  ExpectError(ParseZipPickle(objects + "N.", "n.pth", limits),
              absl::StatusCode::kInvalidArgument, "more than 1000 objects");
  // DUP and BINGET push without creating objects.
  ExpectError(ParseZipPickle("\x80\x02N"s + std::string(600, '2') + ".",
                             "n.pth", limits),
              absl::StatusCode::kInvalidArgument,
              "more than 500 stack entries");
  ExpectError(ParseZipPickle("\x80\x02"s + std::string(600, '(') + ".", "n.pth",
                             limits),
              absl::StatusCode::kInvalidArgument, "more than 500 marks");
  std::string memo = "\x80\x02N";
  for (uint32_t i = 0; i < 600; ++i) memo += "r" + Le(i, 4);  // LONG_BINPUT
  ExpectError(ParseZipPickle(memo + ".", "n.pth", limits),
              absl::StatusCode::kInvalidArgument, "more than 500 memo");
}

TEST(TorchPickle, CopiesOfADictCountAgainstTheElementLimit) {
  // d = {0: None, ..., 99: None}; then OrderedDict(d) over and over.
  std::string pickle = "\x80\x02}q\x00("s;
  for (int i = 0; i < 100; ++i)
    pickle += "K" + std::string(1, static_cast<char>(i)) + "N";
  pickle += "u0";
  for (int i = 0; i < 200; ++i) {
    pickle += "ccollections\nOrderedDict\nh\x00\x85R0"s;
  }
  PickleLimits limits;
  limits.max_elements = 10000;
  ExpectError(ParseZipPickle(pickle + "N.", "n.pth", limits),
              absl::StatusCode::kInvalidArgument,
              "more than 10000 container elements");
}

TEST(TorchPickle, StackGlobalCannotCopyHugeNamesAgainAndAgain) {
  const std::string pickle = "\x80\x04"s + Str(std::string(4096, 'm')) +
                             "q\x00"s + Str("name") + "\x93.";
  ExpectError(ParseZipPickle(pickle, "n.pth"),
              absl::StatusCode::kInvalidArgument, "is longer than 1024 bytes");
}

TEST(TorchPickle, SelfReferencingObjectsAreErrorsNotHangs) {
  // l = []; l.append(l) a thousand times: a cycle through the memo.
  std::string list = "\x80\x02]q\x00"s;
  for (int i = 0; i < 1100; ++i)
    list +=
        "h\x00"
        "a"s;
  ExpectError(ParseZipPickle(list + ".", "n.pth"),
              absl::StatusCode::kInvalidArgument,
              "nested more than 1000 levels");
  // d = {}; d["state_dict"] = d.
  const std::string dict = "\x80\x02}q\x00"s + Str("state_dict") + "h\x00s."s;
  ExpectError(ParseZipPickle(dict, "n.pth"), absl::StatusCode::kInvalidArgument,
              "state_dict entry \"state_dict\" is a dict, not a tensor");
}

TEST(TorchPickle, ManyDictKeysTakeLinearTime) {
  // 200000 distinct keys: a linear scan per assignment took minutes.
  std::string pickle = "\x80\x02}(";
  for (int i = 0; i < 200000; ++i)
    pickle += Str("key" + std::to_string(i)) + "N";
  pickle += "u.";
  const auto start = std::chrono::steady_clock::now();
  ExpectError(ParseZipPickle(pickle, "n.pth"),
              absl::StatusCode::kInvalidArgument,
              "state_dict entry \"key0\" is None, not a tensor");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_LT(seconds, 10.0);
}

TEST(TorchPickle, RepeatedKeysReplaceTheirValue) {
  const std::string storage = Storage("0", 4, false);
  const std::string pickle =
      StateDictPickle({{"w", Tensor(storage, 0, {1}, {1})},
                       {"w", Tensor(storage, 3, {1}, {1})}});
  absl::StatusOr<StateDictLayout> layout = ParseZipPickle(pickle, "n.pth");
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->tensors.size(), 1u);
  EXPECT_EQ(layout->tensors[0].offset, 3);
}

// ---- storages and views
// ------------------------------------------------------

TEST(TorchPickle, HugeDeclaredStorageIsCheckedAgainstTheFile) {
  // A trillion floats declared, twelve bytes present.
  const std::string storage = Storage("0", int64_t{1} << 40, true);
  const std::string file =
      LegacyHeader() + StateDictPickle({{"w", Tensor(storage, 0, {3}, {1})}}) +
      KeyList({"0"}) + Le(int64_t{1} << 40, 8) + std::string(12, '\0');
  ExpectError(ParseLegacyFile(file, "n.pth"), absl::StatusCode::kDataLoss,
              "expected 1099511627776 elements of 4 bytes");
  // Sizes whose byte count overflows are refused outright.
  const std::string overflow = Storage("0", int64_t{1} << 62, false);
  ExpectError(
      ParseZipPickle(StateDictPickle({{"w", Tensor(overflow, 0, {1}, {1})}}),
                     "n.pth"),
      absl::StatusCode::kInvalidArgument, "is larger than any file");
}

TEST(TorchPickle, TensorViewsMustStayInTheirStorage) {
  const std::string storage = Storage("0", 3, false);
  for (const auto& [sizes, strides, offset] : std::vector<
           std::tuple<std::vector<int64_t>, std::vector<int64_t>, int64_t>>{
           {{4}, {1}, 0},
           {{2}, {1}, 2},
           {{0}, {1}, 4},
           // (2^61) * 8 wraps to 0 in 64 bits: once accepted as in bounds.
           {{(int64_t{1} << 61) + 1}, {8}, 0},
           {{int64_t{1} << 40, int64_t{1} << 40}, {0, 0}, 0},
           {{1}, {1}, -1}}) {
    ExpectError(
        ParseZipPickle(
            StateDictPickle({{"w", Tensor(storage, offset, sizes, strides)}}),
            "n.pth"),
        absl::StatusCode::kInvalidArgument, "exceeds its 3-element storage");
  }
  // Broadcast (stride 0) and empty views inside the storage are fine.
  absl::StatusOr<StateDictLayout> layout =
      ParseZipPickle(StateDictPickle({{"a", Tensor(storage, 2, {5}, {0})},
                                      {"b", Tensor(storage, 3, {0}, {1})}}),
                     "n.pth");
  EXPECT_TRUE(layout.ok()) << layout.status();
}

TEST(TorchPickle, LegacyStorageListMustMatchThePickle) {
  const std::string storage = Storage("0", 1, true);
  const std::string object =
      LegacyHeader() + StateDictPickle({{"w", Tensor(storage, 0, {1}, {1})}});
  ExpectError(
      ParseLegacyFile(object + KeyList({"0", "0"}) + Floats({1}) + Floats({1}),
                      "n.pth"),
      absl::StatusCode::kDataLoss, "names \"0\" twice");
  ExpectError(ParseLegacyFile(object + KeyList({"7"}) + Floats({1}), "n.pth"),
              absl::StatusCode::kDataLoss,
              "names \"7\", which the pickle never refers to");
  ExpectError(ParseLegacyFile(object + KeyList({}), "n.pth"),
              absl::StatusCode::kDataLoss,
              "the data of storage \"0\" (tensor \"w\") is missing");
}

TEST(TorchPickle, EveryTruncationIsAnError) {
  const std::string file = ValidLegacyFile();
  for (size_t size = 0; size < file.size(); ++size) {
    absl::StatusOr<StateDictLayout> layout =
        ParseLegacyFile(file.substr(0, size), "n.pth");
    ASSERT_FALSE(layout.ok()) << "accepted the first " << size << " bytes";
    EXPECT_THAT(std::string(layout.status().message()), HasSubstr("n.pth"));
  }
}

}  // namespace
}  // namespace chexnet
}  // namespace kolo
