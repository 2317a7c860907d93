// Multi-rank tests of broadcast_object and allgather_object: bytes of length
// 0, 1 and several MiB, different on every rank, from every root; and
// IValues through torch::pickle_save. Each rank computes every rank's bytes
// itself, as the reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kolo/torch.h"
#include "test_util.h"

namespace kolo {
namespace torch {
namespace {

using testing::Equal;

// Rank `who`'s object of `length` bytes (every byte value occurs).
std::string BytesOf(int who, size_t length) {
  std::string bytes(length, '\0');
  for (size_t i = 0; i < length; ++i) {
    bytes[i] = static_cast<char>((who * 31 + i * 7) % 256);
  }
  return bytes;
}

// The first index where two strings differ, for failure messages.
size_t FirstDifference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

TEST(BroadcastObject, EmptyOneByteAndSeveralMiBFromEveryRoot) {
  const size_t kLarge = (3u << 20) + 3;
  for (int root = 0; root < size(); ++root) {
    for (size_t length : {size_t{0}, size_t{1}, kLarge}) {
      // Non-roots pass bytes of another length, which must be ignored.
      const std::string mine =
          rank() == root ? BytesOf(root, length) : BytesOf(rank(), 17);
      const std::string expected = BytesOf(root, length);
      const std::string got = broadcast_object(mine, root, "bo.string");
      ASSERT_EQ(got.size(), expected.size()) << "root " << root;
      ASSERT_TRUE(got == expected)
          << "root " << root << ", length " << length << ": first difference "
          << "at byte " << FirstDifference(got, expected);

      if (root != 0) continue;  // one root suffices for vector<char>
      const std::vector<char> as_vector(mine.begin(), mine.end());
      const std::vector<char> got_vector =
          broadcast_object(as_vector, root, "bo.vector");
      ASSERT_TRUE(std::string(got_vector.begin(), got_vector.end()) == expected)
          << "vector<char>, root " << root << ", length " << length;
    }
  }
}

TEST(AllgatherObject, DifferentLengthsPerRankIncludingEmptyAndLarge) {
  // Rank 0: empty; the last rank: several MiB; the others one byte.
  auto length_of = [](int who) -> size_t {
    return who == 0 ? 0 : who == size() - 1 ? (3u << 20) + who : 1;
  };
  const std::vector<std::string> all =
      allgather_object(BytesOf(rank(), length_of(rank())), "ago.string");
  ASSERT_EQ(static_cast<int>(all.size()), size());
  for (int r = 0; r < size(); ++r) {
    const std::string expected = BytesOf(r, length_of(r));
    ASSERT_EQ(all[r].size(), expected.size()) << "from rank " << r;
    EXPECT_TRUE(all[r] == expected)
        << "from rank " << r << ": first difference at byte "
        << FirstDifference(all[r], expected);
  }
  const std::string mine = BytesOf(rank() + 7, rank() * 3);
  const std::vector<std::vector<char>> vectors = allgather_object(
      std::vector<char>(mine.begin(), mine.end()), "ago.vector");
  ASSERT_EQ(static_cast<int>(vectors.size()), size());
  for (int r = 0; r < size(); ++r) {
    EXPECT_TRUE(std::string(vectors[r].begin(), vectors[r].end()) ==
                BytesOf(r + 7, r * 3))
        << "vector<char> from rank " << r;
  }
  // Every rank empty.
  for (const std::string& bytes : allgather_object("", "ago.empty")) {
    EXPECT_TRUE(bytes.empty());
  }
}

TEST(BroadcastObject, IValuesThroughPickle) {
  const int root = size() - 1;
  c10::Dict<std::string, at::Tensor> dict;
  dict.insert("weights",
              ::torch::arange(12, at::kDouble).reshape({3, 4}) * (rank() + 1));
  dict.insert("mask", ::torch::tensor({rank() % 2 == 0, true}));
  const c10::IValue got = broadcast_object(c10::IValue(dict), root, "bo.dict");
  ASSERT_TRUE(got.isGenericDict());
  const auto received = got.toGenericDict();
  EXPECT_TRUE(
      Equal(received.at("weights").toTensor(),
            ::torch::arange(12, at::kDouble).reshape({3, 4}) * (root + 1)));
  EXPECT_TRUE(received.at("mask").toTensor().equal(
      ::torch::tensor({root % 2 == 0, true})));
  // A tensor converts to an IValue; so does a string.
  const at::Tensor tensor =
      broadcast_object(::torch::full({2}, rank(), at::kLong), 0, "bo.tensor")
          .toTensor();
  EXPECT_TRUE(tensor.equal(::torch::full({2}, 0, at::kLong)));
  EXPECT_EQ(broadcast_object(
                c10::IValue(std::string("config ") + std::to_string(rank())),
                root, "bo.ivalue_string")
                .toStringRef(),
            "config " + std::to_string(root));
}

TEST(AllgatherObject, IValuesOfDifferentShapes) {
  const std::vector<c10::IValue> all = allgather_object(
      c10::IValue(::torch::full({rank() + 1, 2}, rank(), at::kFloat)),
      "ago.tensor");
  ASSERT_EQ(static_cast<int>(all.size()), size());
  for (int r = 0; r < size(); ++r) {
    EXPECT_TRUE(
        all[r].toTensor().equal(::torch::full({r + 1, 2}, r, at::kFloat)))
        << "from rank " << r;
  }
}

}  // namespace
}  // namespace torch
}  // namespace kolo
