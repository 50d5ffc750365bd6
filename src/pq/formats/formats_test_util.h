// Test-only helpers shared by the format and quantizer tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pq/formats/format.h"

namespace pq::formats::testing {

// Two tensor lists are the same tensors, byte for byte.
inline void ExpectSameBytes(const std::vector<QTensor>& a, const std::vector<QTensor>& b,
                            const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].suffix, b[i].suffix) << what;
    EXPECT_EQ(a[i].dtype, b[i].dtype) << what;
    EXPECT_EQ(a[i].shape, b[i].shape) << what;
    EXPECT_EQ(a[i].bytes, b[i].bytes) << what << " " << a[i].suffix;
  }
}

}  // namespace pq::formats::testing
