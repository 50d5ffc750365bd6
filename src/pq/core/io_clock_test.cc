#include "pq/core/io_clock.h"

#include <gtest/gtest.h>

#include <thread>

namespace pq {
namespace {

TEST(IoClock, NestedScopesCountOnce) {
  const double before = IoSeconds();
  {
    const IoTimer outer;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    {
      const IoTimer inner;
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  }
  const double spent = IoSeconds() - before;
  EXPECT_GE(spent, 0.055);
  EXPECT_LT(spent, 0.115);  // twice 60 ms would be 0.12 s
}

}  // namespace
}  // namespace pq
