#include "pq/core/hash.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace pq {
namespace {

TEST(Hasher, IsFnv1a64) {
  // Published FNV-1a 64-bit test vectors.
  EXPECT_EQ(Hasher().value(), 0xcbf29ce484222325ull);
  EXPECT_EQ(Hasher().Bytes("a", 1).value(), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Hasher().Bytes("foobar", 6).value(), 0x85944171f73967e8ull);
  EXPECT_EQ(Hasher().Bytes("foo", 3).Bytes("bar", 3).value(),
            Hasher().Bytes("foobar", 6).value());  // streaming
}

// Work dirs persist these values: they must never change (see hash.h).
TEST(Hasher, PersistedValuesAreStable) {
  EXPECT_EQ(Hasher().Str("abc").hex(), "c11ab6d2519bc2b2");  // length (u64 LE), then bytes
  const std::vector<int64_t> v = {-1, 2, 5};
  EXPECT_EQ(Hasher().Ints(std::span<const int64_t>(v)).hex(), "d65053cca8970fb9");
  EXPECT_EQ(Hasher().hex().size(), 16u);
}

TEST(Hasher, LengthPrefixesSeparateFields) {
  // Without the length prefix ("ab","c") and ("a","bc") would collide.
  EXPECT_NE(Hasher().Str("ab").Str("c").value(), Hasher().Str("a").Str("bc").value());
  EXPECT_EQ(Hasher().Bytes("ab", 2).Bytes("c", 1).value(),
            Hasher().Bytes("a", 1).Bytes("bc", 2).value());
  const std::vector<int32_t> a = {1, 2}, b = {1}, c = {2};
  EXPECT_NE(Hasher().Ints(std::span<const int32_t>(a)).value(),
            Hasher().Ints(std::span<const int32_t>(b)).Ints(std::span<const int32_t>(c)).value());
  EXPECT_NE(Hasher().Int(1).value(), Hasher().Int(1ull << 32).value());
}

}  // namespace
}  // namespace pq
