#include "pq/core/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pq/core/check.h"

namespace pq {
namespace {

TEST(Status, OkAndErrors) {
  const Status ok = Status::Ok();
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.code(), StatusCode::kOk);
  EXPECT_EQ(ok.ToString(), "OK");

  const struct {
    Status s;
    StatusCode code;
    const char* text;
  } cases[] = {
      {InvalidArgument("m"), StatusCode::kInvalidArgument, "invalid argument: m"},
      {NotFound("m"), StatusCode::kNotFound, "not found: m"},
      {DataLoss("m"), StatusCode::kDataLoss, "corrupt input: m"},
      {IoError("m"), StatusCode::kIoError, "I/O error: m"},
      {Unimplemented("m"), StatusCode::kUnimplemented, "unimplemented: m"},
      {Internal("m"), StatusCode::kInternal, "internal error: m"},
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(c.s.ok());
    EXPECT_EQ(c.s.code(), c.code);
    EXPECT_EQ(c.s.message(), "m");
    EXPECT_EQ(c.s.ToString(), c.text);
  }
}

TEST(Status, WithContextPrefixesErrorsOnly) {
  EXPECT_TRUE(Status::Ok().WithContext("reading x").ok());
  EXPECT_EQ(Status::Ok().WithContext("reading x").message(), "");
  const Status s = NotFound("no tensor").WithContext("layer 3").WithContext("probe");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "probe: layer 3: no tensor");
}

TEST(Result, HoldsAValueOrAStatus) {
  Result<std::string> v = std::string("abc");
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v.status().ok());
  EXPECT_EQ(*v, "abc");
  EXPECT_EQ(v->size(), 3u);
  v.value() += "d";
  EXPECT_EQ(v.value(), "abcd");
  EXPECT_EQ(std::move(v).value(), "abcd");

  Result<std::string> e = DataLoss("bad");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(e.status().message(), "bad");
}

TEST(Result, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

// Helpers for the macros: each returns early exactly when its input is an error.
Status Step(bool fail, std::vector<int>* trace, int id) {
  trace->push_back(id);
  return fail ? Internal("step " + std::to_string(id)) : Status::Ok();
}

Status TwoSteps(bool fail_first, std::vector<int>* trace) {
  PQ_RETURN_IF_ERROR(Step(fail_first, trace, 1));
  PQ_RETURN_IF_ERROR(Step(false, trace, 2));
  return Status::Ok();
}

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  PQ_ASSIGN_OR_RETURN(const int h, Half(x));
  PQ_ASSIGN_OR_RETURN(int q, Half(h));  // two uses on different lines: distinct temporaries
  return q;
}

TEST(StatusMacros, ReturnIfErrorStopsAtTheFirstError) {
  std::vector<int> trace;
  EXPECT_TRUE(TwoSteps(false, &trace).ok());
  EXPECT_EQ(trace, (std::vector<int>{1, 2}));
  trace.clear();
  const Status s = TwoSteps(true, &trace);
  EXPECT_EQ(s.message(), "step 1");
  EXPECT_EQ(trace, (std::vector<int>{1}));
}

TEST(StatusMacros, AssignOrReturnUnwrapsOrPropagates) {
  auto q = Quarter(12);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, 3);
  auto odd = Quarter(7);
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.status().message(), "7 is odd");
  auto odd_half = Quarter(6);  // 6 / 2 = 3 is odd
  ASSERT_FALSE(odd_half.ok());
  EXPECT_EQ(odd_half.status().message(), "3 is odd");
}

TEST(CheckDeathTest, FailedCheckAbortsNamingTheCondition) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PQ_CHECK(1 + 1 == 2, "arithmetic");  // a passing check does nothing
  EXPECT_DEATH(PQ_CHECK(1 + 1 == 3, "arithmetic is broken"),
               "check failed: 1 \\+ 1 == 3 \\(arithmetic is broken\\)");
}

}  // namespace
}  // namespace pq
