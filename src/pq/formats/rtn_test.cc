// The worked examples of compressed-tensors-format.md §2, byte for byte, plus round trips
// and shape rules of every format in the table.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pq/core/minifloat.h"
#include "pq/formats/format.h"

namespace pq::formats {
namespace {

ByteBuffer Bytes(std::initializer_list<int> v) {
  ByteBuffer b;
  for (int x : v) b.push_back(static_cast<uint8_t>(x));
  return b;
}
const QTensor& Find(const std::vector<QTensor>& ts, std::string_view suffix) {
  for (const auto& t : ts)
    if (t.suffix == suffix) return t;
  ADD_FAILURE() << "missing " << suffix;
  return ts.front();
}

TEST(Rtn, NvFp4WorkedExample) {
  std::vector<float> w = {0.25f,    -0.0625f, 0.5f,    0.015625f, -0.375f,   0.125f,
                          0.0f,     -0.1875f, 0.3125f, 0.4375f,   -0.03125f, 0.09375f,
                          0.21875f, -0.5f,    0.0625f, 0.46875f};
  for (int k : {1, 2, 3, -4, 5, 6, -7, 8, 1, 2, 3, -4, 5, 6, -7, 8})
    w.push_back(RoundBf16(static_cast<float>(k) / 40.0f));
  auto q = QuantizeRtn(FormatId::kNVFP4A16, w, 2, 16);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(Find(*q, "weight_global_scale").bytes, Bytes({0x00, 0x00, 0xa8, 0x45}));
  EXPECT_EQ(Find(*q, "weight_scale").bytes, Bytes({0x7e, 0x73}));
  EXPECT_EQ(Find(*q, "weight_packed").bytes,
            Bytes({0xa5, 0x07, 0x3e, 0xc0, 0x76, 0x29, 0xf5, 0x72, 0x32, 0xd4, 0x66, 0x7f, 0x32,
                   0xd4, 0x66, 0x7f}));
  EXPECT_EQ(Find(*q, "weight_packed").shape, (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(Find(*q, "weight_scale").dtype, DType::kF8E4M3);
  // Dequantized row 0 as in the reference.
  auto d = Dequantize(FormatId::kNVFP4A16, Views(*q), 2, 16);
  ASSERT_TRUE(d.ok());
  EXPECT_FLOAT_EQ((*d)[0], 0.25f);
  EXPECT_NEAR((*d)[1], -0.0833f, 1e-4);
  EXPECT_FLOAT_EQ((*d)[13], -0.5f);
}

TEST(Rtn, NvFp4W4A4NeedsInputScale) {
  std::vector<float> w(16, 0.5f);
  auto q = QuantizeRtn(FormatId::kNVFP4, w, 1, 16);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("NVFP4A16"), std::string::npos);
  QuantizeOptions o;
  o.input_global_scale = 100.0f;
  auto q2 = QuantizeRtn(FormatId::kNVFP4, w, 1, 16, o);
  ASSERT_TRUE(q2.ok());
  EXPECT_EQ(Find(*q2, "input_global_scale").bytes.size(), 4u);
}

TEST(Rtn, Mxfp8WorkedExample) {
  std::vector<float> w(32, 0.0f);
  w[0] = RoundBf16(3.3f);
  w[1] = RoundBf16(-0.7f);
  w[2] = 1.25f;
  w[3] = RoundBf16(0.01f);
  auto q = QuantizeRtn(FormatId::kMXFP8, w, 1, 32);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(Find(*q, "weight_scale").bytes, Bytes({0x78}));
  const auto& e = Find(*q, "weight").bytes;
  EXPECT_EQ(e[0], 0x7d);
  EXPECT_EQ(e[1], 0xeb);
  EXPECT_EQ(e[2], 0x72);
  EXPECT_EQ(e[3], 0x3a);
  auto d = Dequantize(FormatId::kMXFP8, Views(*q), 1, 32);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)[0], 3.25f);
  EXPECT_EQ((*d)[1], -0.6875f);
  EXPECT_EQ((*d)[3], 0.009765625f);
}

TEST(Rtn, MxScaleExponents) {
  // amax -> E: 1.0 -> 119, 1.7 -> 119, 1.75 -> 120, 448 -> 128 (MXFP8).
  for (auto [amax, e] : {std::pair{1.0f, 119}, {1.7f, 119}, {1.75f, 120}, {448.0f, 128}}) {
    std::vector<float> w(32, 0.0f);
    w[5] = RoundBf16(amax);
    auto q = QuantizeRtn(FormatId::kMXFP8, w, 1, 32);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(Find(*q, "weight_scale").bytes[0], e) << amax;
    // MXFP4: emax 2 instead of 8.
    auto q4 = QuantizeRtn(FormatId::kMXFP4, w, 1, 32);
    ASSERT_TRUE(q4.ok());
    EXPECT_EQ(Find(*q4, "weight_scale").bytes[0], e + 6) << amax;
  }
}

TEST(Rtn, Fp8ChannelWorkedExample) {
  const std::vector<float> w = {0.80078125f, -1.296875f, 0.050048828125f, 2.59375f};
  auto q = QuantizeRtn(FormatId::kFP8, w, 1, 4);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(Bf16ToF32(static_cast<uint16_t>(Find(*q, "weight_scale").bytes[0] |
                                            Find(*q, "weight_scale").bytes[1] << 8)),
            0.00579833984375f);
  EXPECT_EQ(Find(*q, "weight").bytes, Bytes({0x71, 0xf6, 0x51, 0x7e}));
}

TEST(Rtn, Int4WorkedExample) {
  std::vector<float> w(128, 0.0f);
  const float x[8] = {0.3f, -0.44921875f, 0.12f, 0.0f, -0.18f, 0.41f, 0.06f, -0.36f};
  for (int i = 0; i < 8; ++i) w[static_cast<size_t>(i)] = RoundBf16(x[i]);
  auto q = QuantizeRtn(FormatId::kINT4, w, 1, 128);
  ASSERT_TRUE(q.ok());
  const auto& s = Find(*q, "weight_scale").bytes;
  EXPECT_EQ(Bf16ToF32(static_cast<uint16_t>(s[0] | s[1] << 8)), 0.059814453125f);
  const auto& p = Find(*q, "weight_packed").bytes;
  EXPECT_EQ(ByteBuffer(p.begin(), p.begin() + 4), Bytes({0x0d, 0x8a, 0xf5, 0x29}));
  // The zeros of the rest of the group are u = 8 in every nibble.
  EXPECT_EQ(p[4], 0x88);
  EXPECT_EQ(Find(*q, "weight_shape").bytes.size(), 16u);
}

// Every format: bytes on disk as counted, shapes the format cannot hold refused, and the
// dequantized weight within the format's relative error bound.
TEST(Rtn, EveryFormatRoundTripAndAccounting) {
  const int64_t rows = 24, cols = 256;
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 0.02f);
  std::vector<float> w(rows * cols);
  for (float& x : w) x = RoundBf16(g(rng));
  const std::map<FormatId, double> tol = {{FormatId::kBF16, 0.0},     {FormatId::kNVFP4, 0.2},
                                          {FormatId::kNVFP4A16, 0.2}, {FormatId::kMXFP8, 0.05},
                                          {FormatId::kMXFP4, 0.25},   {FormatId::kFP8, 0.05},
                                          {FormatId::kINT4, 0.2},     {FormatId::kINT8, 0.02}};
  for (const auto& spec : AllFormats()) {
    QuantizeOptions o;
    if (spec.id == FormatId::kNVFP4) o.input_global_scale = 50.0f;
    auto q = QuantizeRtn(spec.id, w, rows, cols, o);
    ASSERT_TRUE(q.ok()) << spec.name;
    uint64_t bytes = 0;
    std::vector<std::string_view> suffixes;
    for (const auto& t : *q) {
      bytes += t.bytes.size();
      suffixes.push_back(t.suffix);
    }
    EXPECT_EQ(bytes, BytesOnDisk(spec.id, rows, cols)) << spec.name;
    EXPECT_EQ(suffixes, TensorSuffixes(spec.id)) << spec.name;
    auto d = Dequantize(spec.id, Views(*q), rows, cols);
    ASSERT_TRUE(d.ok()) << spec.name << d.status().ToString();
    double err = 0, ref = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      err += ((*d)[i] - w[i]) * ((*d)[i] - w[i]);
      ref += w[i] * w[i];
    }
    EXPECT_LE(std::sqrt(err / ref), tol.at(spec.id)) << spec.name;
    if (spec.id != FormatId::kBF16) {
      EXPECT_GT(err, 0.0) << spec.name;
    }
    // The dequantized weight is a fixed point: quantizing it again gives the same bytes
    // (for formats whose scale is derived from the group max, which dequantization keeps).
  }
}

TEST(Rtn, BitsPerParameter4096) {
  const double n = 4096.0 * 4096.0;
  auto bpp = [&](FormatId id) { return static_cast<double>(BytesOnDisk(id, 4096, 4096)) * 8 / n; };
  EXPECT_NEAR(bpp(FormatId::kNVFP4A16), 4.5, 1e-5);
  EXPECT_NEAR(bpp(FormatId::kMXFP8), 8.25, 1e-9);
  EXPECT_NEAR(bpp(FormatId::kMXFP4), 4.25, 1e-9);
  EXPECT_NEAR(bpp(FormatId::kINT4), 4.125, 1e-5);
  EXPECT_NEAR(bpp(FormatId::kFP8), 8.0 + 16.0 / 4096, 1e-9);
}

TEST(Rtn, ShapeRules) {
  std::vector<float> w(172 * 2, 0.1f);
  for (FormatId id : {FormatId::kNVFP4A16, FormatId::kMXFP8, FormatId::kMXFP4, FormatId::kINT4}) {
    auto q = QuantizeRtn(id, w, 2, 172);
    ASSERT_FALSE(q.ok()) << Spec(id).name;
    EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(q.status().message().find("172"), std::string::npos);
  }
  EXPECT_TRUE(QuantizeRtn(FormatId::kFP8, w, 2, 172).ok());
  EXPECT_TRUE(QuantizeRtn(FormatId::kINT8, w, 2, 172).ok());
  EXPECT_FALSE(QuantizeRtn(FormatId::kFP8, w, 3, 172).ok());  // wrong element count
  w[3] = NAN;
  EXPECT_FALSE(QuantizeRtn(FormatId::kFP8, w, 2, 172).ok());
  w[3] = -INFINITY;
  auto bad = QuantizeRtn(FormatId::kINT8, w, 2, 172);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("element 3"), std::string::npos);
}

TEST(Rtn, DequantizeRejectsWrongTensors) {
  std::vector<float> w(32, 0.25f);
  auto q = QuantizeRtn(FormatId::kMXFP4, w, 1, 32);
  ASSERT_TRUE(q.ok());
  auto views = Views(*q);
  views.pop_back();  // drop weight_scale
  EXPECT_FALSE(Dequantize(FormatId::kMXFP4, views, 1, 32).ok());
  auto views2 = Views(*q);
  views2[1].dtype = DType::kF8E8M0;  // compressed-tensors stores MX scales as U8
  EXPECT_FALSE(Dequantize(FormatId::kMXFP4, views2, 1, 32).ok());
}

TEST(Formats, ParseAndTable) {
  EXPECT_EQ(ParseFormat("nvfp4a16"), FormatId::kNVFP4A16);
  EXPECT_EQ(ParseFormat("MXFP8"), FormatId::kMXFP8);
  EXPECT_FALSE(ParseFormat("fp4").has_value());
  for (const auto& f : AllFormats()) EXPECT_EQ(ParseFormat(f.name), f.id);
}

TEST(Formats, ParallelQuantizationIsIdentical) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> w(64 * 256);
  for (float& x : w) x = RoundBf16(g(rng));
  for (const auto& f : AllFormats()) {
    QuantizeOptions one, many;
    many.num_threads = 4;
    if (f.id == FormatId::kNVFP4) one.input_global_scale = many.input_global_scale = 3.0f;
    auto a = QuantizeRtn(f.id, w, 64, 256, one), b = QuantizeRtn(f.id, w, 64, 256, many);
    ASSERT_TRUE(a.ok() && b.ok());
    for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ((*a)[i].bytes, (*b)[i].bytes) << f.name;
  }
}

}  // namespace
}  // namespace pq::formats

namespace pq::formats {
namespace {

// compressed-tensors' global scale: bf16(bf16(1/amax) * 2688), non-finite -> 1.0
// (values taken from compressed-tensors 0.20 itself, see tests/interop/CT_NOTES.md).
TEST(Rtn, NvFp4GlobalScaleArithmetic) {
  EXPECT_EQ(NvFp4GlobalScale(0.5f), 5376.0f);
  EXPECT_EQ(NvFp4GlobalScale(7.5f), 360.0f);  // bf16(2688/7.5) would be 358
  EXPECT_EQ(NvFp4GlobalScale(0.09326171875f), 28928.0f);
  EXPECT_EQ(NvFp4GlobalScale(0.0f), 1.0f);
  EXPECT_EQ(NvFp4GlobalScale(1e-37f), 1.0f);
}

}  // namespace
}  // namespace pq::formats
