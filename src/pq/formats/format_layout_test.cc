// The format table's tensor layouts (FormatSpec::tensors) against the persisted ABI and
// against every writer and reader: RTN, PackCodes / QuantizeWithScales, Dequantize,
// UnpackCodes, byte accounting.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "pq/core/minifloat.h"
#include "pq/formats/format.h"
#include "pq/formats/quantize_with_scales.h"

namespace pq::formats {
namespace {

using Shape = std::vector<int64_t>;

struct Expected {
  std::string suffix;
  DType dtype;
  Shape shape;
};

// The on-disk layout of a [6, 256] weight, written out by hand from
// compressed-tensors-format.md §2 (the ABI the table must keep).
std::vector<Expected> AbiLayout6x256(FormatId id) {
  switch (id) {
    case FormatId::kBF16:
      return {{"weight", DType::kBF16, {6, 256}}};
    case FormatId::kNVFP4:
      return {{"weight_packed", DType::kU8, {6, 128}},
              {"weight_scale", DType::kF8E4M3, {6, 16}},
              {"weight_global_scale", DType::kF32, {1}},
              {"input_global_scale", DType::kF32, {1}}};
    case FormatId::kNVFP4A16:
      return {{"weight_packed", DType::kU8, {6, 128}},
              {"weight_scale", DType::kF8E4M3, {6, 16}},
              {"weight_global_scale", DType::kF32, {1}}};
    case FormatId::kMXFP8:
      return {{"weight", DType::kF8E4M3, {6, 256}}, {"weight_scale", DType::kU8, {6, 8}}};
    case FormatId::kMXFP4:
      return {{"weight_packed", DType::kU8, {6, 128}}, {"weight_scale", DType::kU8, {6, 8}}};
    case FormatId::kFP8:
      return {{"weight", DType::kF8E4M3, {6, 256}}, {"weight_scale", DType::kBF16, {6, 1}}};
    case FormatId::kINT4:
      return {{"weight_packed", DType::kI32, {6, 32}},
              {"weight_scale", DType::kBF16, {6, 2}},
              {"weight_shape", DType::kI64, {2}}};
    case FormatId::kINT8:
      return {{"weight_packed", DType::kI32, {6, 64}},
              {"weight_scale", DType::kBF16, {6, 1}},
              {"weight_shape", DType::kI64, {2}}};
  }
  return {};
}

// The byte counts BytesOnDisk gave before it was derived from the table (an independent
// oracle for the table's shape rules).
uint64_t LegacyBytes(FormatId id, uint64_t n, uint64_t k) {
  switch (id) {
    case FormatId::kBF16:
      return n * k * 2;
    case FormatId::kNVFP4A16:
      return n * k / 2 + n * (k / 16) + 4;
    case FormatId::kNVFP4:
      return n * k / 2 + n * (k / 16) + 4 + 4;
    case FormatId::kMXFP8:
      return n * k + n * (k / 32);
    case FormatId::kMXFP4:
      return n * k / 2 + n * (k / 32);
    case FormatId::kFP8:
      return n * k + n * 2;
    case FormatId::kINT4:
      return n * ((k * 4 + 31) / 32) * 4 + n * (k / 128) * 2 + 2 * 8;
    case FormatId::kINT8:
      return n * ((k * 8 + 31) / 32) * 4 + n * 2 + 2 * 8;
  }
  return 0;
}

std::vector<float> RandomWeight(int64_t rows, int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& x : w) x = RoundBf16(g(rng));
  return w;
}

QuantizeOptions Options(FormatId id) {
  QuantizeOptions o;
  if (id == FormatId::kNVFP4) o.input_global_scale = 37.0f;
  return o;
}

// Shapes each format can hold, including odd row counts and (INT8, FP8, BF16) odd K.
std::vector<std::pair<int64_t, int64_t>> ShapesFor(FormatId id) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (auto [r, c] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 128}, {3, 256}, {7, 384}, {2, 96}, {5, 33}, {4, 40}})
    if (CheckShape(id, r, c).ok()) out.push_back({r, c});
  return out;
}

// `ts` has exactly the table's tensors for [rows, cols]: names, dtypes, shapes, lengths.
void ExpectTableLayout(FormatId id, const std::vector<QTensor>& ts, int64_t rows, int64_t cols,
                       const std::string& what) {
  const FormatSpec& f = Spec(id);
  ASSERT_EQ(ts.size(), f.tensors.size()) << what;
  uint64_t bytes = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorSpec& t = f.tensors[i];
    const Shape shape = TensorShape(f, t, rows, cols);
    EXPECT_EQ(ts[i].suffix, t.suffix) << what;
    EXPECT_EQ(ts[i].dtype, t.dtype) << what << " " << t.suffix;
    EXPECT_EQ(ts[i].shape, shape) << what << " " << t.suffix;
    size_t numel = 1;
    for (int64_t d : shape) numel *= static_cast<size_t>(d);
    EXPECT_EQ(ts[i].bytes.size(), numel * DTypeSize(t.dtype)) << what << " " << t.suffix;
    bytes += ts[i].bytes.size();
  }
  EXPECT_EQ(bytes, BytesOnDisk(id, rows, cols)) << what;
}

TEST(FormatLayout, TableMatchesThePersistedAbi) {
  for (const FormatSpec& f : AllFormats()) {
    const std::vector<Expected> abi = AbiLayout6x256(f.id);
    ASSERT_EQ(f.tensors.size(), abi.size()) << f.name;
    for (size_t i = 0; i < abi.size(); ++i) {
      EXPECT_EQ(f.tensors[i].suffix, abi[i].suffix) << f.name;
      EXPECT_EQ(f.tensors[i].dtype, abi[i].dtype) << f.name << " " << abi[i].suffix;
      EXPECT_EQ(TensorShape(f, f.tensors[i], 6, 256), abi[i].shape)
          << f.name << " " << abi[i].suffix;
    }
    std::vector<std::string_view> suffixes;
    for (const auto& e : abi) suffixes.push_back(e.suffix);
    EXPECT_EQ(TensorSuffixes(f.id), suffixes) << f.name;
  }
}

TEST(FormatLayout, RolesAndLookups) {
  for (const FormatSpec& f : AllFormats()) {
    // Every format stores its elements; all but BF16 a scale tensor; roles are unique.
    EXPECT_NE(FindTensor(f.id, TensorRole::kElements), nullptr) << f.name;
    EXPECT_EQ(FindTensor(f.id, TensorRole::kScales) != nullptr, f.id != FormatId::kBF16) << f.name;
    for (const TensorSpec& t : f.tensors) {
      EXPECT_EQ(FindTensor(f.id, t.role), &t) << f.name << " " << t.suffix;
      EXPECT_EQ(FindTensor(f.id, t.suffix), &t) << f.name << " " << t.suffix;
      // Only NVFP4 has global scales, and the calibrated one only in W4A4.
      const bool nvfp4 = f.id == FormatId::kNVFP4 || f.id == FormatId::kNVFP4A16;
      EXPECT_TRUE(!IsGlobalScale(t.role) || nvfp4) << f.name << " " << t.suffix;
      EXPECT_TRUE(t.role != TensorRole::kInputGlobalScale || f.needs_calibration) << f.name;
    }
    EXPECT_EQ(FindTensor(f.id, "bias"), nullptr);
  }
  EXPECT_NE(FindTensor(FormatId::kNVFP4, TensorRole::kInputGlobalScale), nullptr);
  EXPECT_EQ(FindTensor(FormatId::kNVFP4A16, TensorRole::kInputGlobalScale), nullptr);
  EXPECT_EQ(FindTensor(FormatId::kNVFP4A16, kSuffixInputGlobalScale), nullptr);
}

TEST(FormatLayout, BytesOnDiskIsTheSumOfTheTable) {
  for (const FormatSpec& f : AllFormats())
    for (int64_t rows : {1, 3, 64, 4096})
      for (int64_t cols : {128, 256, 768, 4095, 4096, 13824}) {
        if (!CheckShape(f.id, rows, cols).ok()) continue;
        uint64_t sum = 0;
        for (const TensorSpec& t : f.tensors) {
          uint64_t n = DTypeSize(t.dtype);
          for (int64_t d : TensorShape(f, t, rows, cols)) n *= static_cast<uint64_t>(d);
          sum += n;
        }
        EXPECT_EQ(BytesOnDisk(f.id, rows, cols), sum) << f.name << " " << rows << "x" << cols;
        EXPECT_EQ(BytesOnDisk(f.id, rows, cols),
                  LegacyBytes(f.id, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols)))
            << f.name << " " << rows << "x" << cols;
      }
}

TEST(FormatLayout, MakeTensorsIsTheLayoutWithTheShapeFilledIn) {
  for (const FormatSpec& f : AllFormats())
    for (auto [rows, cols] : ShapesFor(f.id)) {
      std::vector<QTensor> ts = MakeTensors(f.id, rows, cols);
      ExpectTableLayout(f.id, ts, rows, cols, std::string(f.name) + " MakeTensors");
      if (!FindTensor(f.id, TensorRole::kShape)) continue;
      const QTensor& s = TensorOf(f.id, ts, TensorRole::kShape);
      int64_t v[2];
      std::memcpy(v, s.bytes.data(), sizeof v);
      EXPECT_EQ(v[0], rows);
      EXPECT_EQ(v[1], cols);
    }
}

TEST(FormatLayout, RtnWritesExactlyTheTable) {
  for (const FormatSpec& f : AllFormats())
    for (auto [rows, cols] : ShapesFor(f.id)) {
      const std::vector<float> w = RandomWeight(rows, cols, 3);
      const std::string what =
          std::string(f.name) + " " + std::to_string(rows) + "x" + std::to_string(cols);
      for (bool reference : {false, true}) {
        QuantizeOptions o = Options(f.id);
        o.reference_kernels = reference;
        auto q = QuantizeRtn(f.id, w, rows, cols, o);
        ASSERT_TRUE(q.ok()) << what << ": " << q.status().ToString();
        ExpectTableLayout(f.id, *q, rows, cols, what + " RTN");
      }
    }
}

TEST(FormatLayout, QuantizeWithScalesWritesExactlyTheTable) {
  for (const FormatSpec& f : AllFormats()) {
    if (f.id == FormatId::kBF16) continue;  // no codes
    for (auto [rows, cols] : ShapesFor(f.id)) {
      const std::vector<float> w = RandomWeight(rows, cols, 4);
      const std::string what =
          std::string(f.name) + " " + std::to_string(rows) + "x" + std::to_string(cols);
      const QuantizeOptions o = Options(f.id);
      auto rtn = QuantizeRtn(f.id, w, rows, cols, o);
      ASSERT_TRUE(rtn.ok()) << what;
      auto codes = UnpackCodes(f.id, Views(*rtn), rows, cols);
      ASSERT_TRUE(codes.ok()) << what << ": " << codes.status().ToString();
      auto packed = PackCodes(f.id, *codes, rows, cols);
      ASSERT_TRUE(packed.ok()) << what << ": " << packed.status().ToString();
      ExpectTableLayout(f.id, *packed, rows, cols, what + " PackCodes");
      auto qws = QuantizeWithScales(f.id, w, rows, cols, codes->scales, o);
      ASSERT_TRUE(qws.ok()) << what << ": " << qws.status().ToString();
      ExpectTableLayout(f.id, *qws, rows, cols, what + " QuantizeWithScales");
    }
  }
}

// Every layout tensor, for every format: dropping it, changing its shape or its dtype makes
// Dequantize (and UnpackCodes) fail with a message naming that tensor.
TEST(FormatLayout, ReadersRejectAMissingOrMisshapenTensorNamingIt) {
  const int64_t rows = 4, cols = 256;
  const std::vector<float> w = RandomWeight(rows, cols, 5);
  for (const FormatSpec& f : AllFormats()) {
    auto q = QuantizeRtn(f.id, w, rows, cols, Options(f.id));
    ASSERT_TRUE(q.ok()) << f.name;
    ASSERT_TRUE(Dequantize(f.id, Views(*q), rows, cols).ok()) << f.name;
    for (size_t i = 0; i < q->size(); ++i) {
      const std::string suffix = (*q)[i].suffix;
      const std::string what = std::string(f.name) + " " + suffix;
      auto check = [&](const std::vector<QTensor>& ts, StatusCode code, const std::string& how) {
        auto d = Dequantize(f.id, Views(ts), rows, cols);
        ASSERT_FALSE(d.ok()) << what << " " << how;
        EXPECT_EQ(d.status().code(), code) << what << " " << how;
        EXPECT_NE(d.status().message().find(suffix), std::string::npos)
            << what << " " << how << ": " << d.status().message();
        if (f.id == FormatId::kBF16) return;
        auto u = UnpackCodes(f.id, Views(ts), rows, cols);
        ASSERT_FALSE(u.ok()) << what << " " << how;
        EXPECT_NE(u.status().message().find(suffix), std::string::npos)
            << what << " " << how << ": " << u.status().message();
      };
      std::vector<QTensor> missing = *q;
      missing.erase(missing.begin() + static_cast<std::ptrdiff_t>(i));
      check(missing, StatusCode::kNotFound, "missing");

      std::vector<QTensor> reshaped = *q;
      reshaped[i].shape.insert(reshaped[i].shape.begin(), 1);  // same bytes, one more dim
      check(reshaped, StatusCode::kInvalidArgument, "reshaped");

      std::vector<QTensor> retyped = *q;
      retyped[i].dtype = retyped[i].dtype == DType::kF32 ? DType::kI32 : DType::kF32;
      check(retyped, StatusCode::kInvalidArgument, "retyped");

      std::vector<QTensor> truncated = *q;
      truncated[i].bytes.pop_back();
      check(truncated, StatusCode::kInvalidArgument, "truncated");
    }
  }
}

TEST(FormatLayout, ShapeTensorMustHoldTheLinearsShape) {
  const std::vector<float> w = RandomWeight(4, 256, 6);
  for (FormatId id : {FormatId::kINT4, FormatId::kINT8}) {
    auto q = QuantizeRtn(id, w, 4, 256);
    ASSERT_TRUE(q.ok());
    QTensor& s = TensorOf(id, *q, TensorRole::kShape);
    const int64_t wrong[2] = {256, 4};
    std::memcpy(s.bytes.data(), wrong, sizeof wrong);
    auto d = Dequantize(id, Views(*q), 4, 256);
    ASSERT_FALSE(d.ok());
    EXPECT_NE(d.status().message().find("weight_shape"), std::string::npos);
    EXPECT_FALSE(UnpackCodes(id, Views(*q), 4, 256).ok());
  }
}

}  // namespace
}  // namespace pq::formats
