// Quantization with given scales against QuantizeRtn: with the scales RTN picks, the bytes
// are RTN's, on random and adversarial data (ties, zeros, -0, subnormal and huge values).
#include "pq/formats/quantize_with_scales.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "pq/core/minifloat.h"
#include "pq/formats/formats_test_util.h"

namespace pq::formats {
namespace {

using testing::ExpectSameBytes;

std::vector<float> Weights(size_t n, uint32_t seed, bool adversarial) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, adversarial ? 9 : 5), exp(-140, 20);
  std::vector<float> w(n);
  for (float& x : w) {
    switch (kind(rng)) {
      case 6:
        x = 0.0f;
        break;
      case 7:
        x = -0.0f;
        break;
      case 8:
        x = std::ldexp(g(rng), exp(rng));  // any magnitude, incl. subnormal
        break;
      case 9:
        x = static_cast<float>(static_cast<int>(g(rng) * 8)) * 0.25f;  // ties
        break;
      default:
        x = g(rng) * 0.02f;
    }
    x = RoundBf16(x);
  }
  return w;
}

std::vector<FormatId> Quantized() {
  std::vector<FormatId> ids;
  for (const auto& f : AllFormats())
    if (f.id != FormatId::kBF16) ids.push_back(f.id);
  return ids;
}

QuantizeOptions Options(FormatId id) {
  QuantizeOptions o;
  if (id == FormatId::kNVFP4) o.input_global_scale = 3.0f;
  return o;
}

// The scales RTN picks, group by group, through the codec.
std::vector<float> RtnScales(const GroupCodec& c, const std::vector<float>& w, int64_t rows,
                             int64_t cols) {
  std::vector<float> s;
  const int64_t g = c.group_size();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; j += g)
      s.push_back(c.RtnScale({w.data() + r * cols + j, static_cast<size_t>(g)}));
  return s;
}

TEST(QuantizeWithScales, RtnScalesGiveRtnBytesEveryFormat) {
  for (uint32_t seed = 0; seed < 8; ++seed) {
    const int64_t rows = 5 + seed, cols = 256 + 128 * (seed % 3);
    const auto w = Weights(static_cast<size_t>(rows * cols), seed, seed % 2 == 1);
    for (FormatId id : Quantized()) {
      const std::string what = std::string(Spec(id).name) + " seed " + std::to_string(seed);
      QuantizeOptions o = Options(id);
      if (seed == 3 && (id == FormatId::kNVFP4 || id == FormatId::kNVFP4A16))
        o.weight_global_scale = 1234.5f;  // a sibling's shared global scale
      auto rtn = QuantizeRtn(id, w, rows, cols, o);
      ASSERT_TRUE(rtn.ok()) << rtn.status().ToString();
      auto codec = GroupCodec::Create(id, cols, WeightGlobalScale(id, w, o));
      ASSERT_TRUE(codec.ok()) << codec.status().ToString();
      const auto scales = RtnScales(*codec, w, rows, cols);
      // The codec's scale rule is the one RTN stored.
      auto unpacked = UnpackCodes(id, Views(*rtn), rows, cols);
      ASSERT_TRUE(unpacked.ok()) << unpacked.status().ToString();
      EXPECT_EQ(unpacked->scales, scales) << what;
      o.num_threads = 2;
      auto given = QuantizeWithScales(id, w, rows, cols, scales, o);
      ASSERT_TRUE(given.ok()) << given.status().ToString();
      ExpectSameBytes(*given, *rtn, what);
      // Pack(Unpack(t)) is t.
      auto repacked = PackCodes(id, *unpacked, rows, cols);
      ASSERT_TRUE(repacked.ok()) << repacked.status().ToString();
      ExpectSameBytes(*repacked, *rtn, what + " repack");
    }
  }
}

TEST(QuantizeWithScales, PerChannelOddWidths) {
  for (int64_t cols : {1, 3, 5, 173}) {
    const auto w = Weights(static_cast<size_t>(4 * cols), static_cast<uint32_t>(cols), true);
    for (FormatId id : {FormatId::kFP8, FormatId::kINT8}) {
      auto rtn = QuantizeRtn(id, w, 4, cols);
      auto codec = GroupCodec::Create(id, cols);
      ASSERT_TRUE(rtn.ok() && codec.ok());
      EXPECT_EQ(codec->group_size(), cols);
      auto given = QuantizeWithScales(id, w, 4, cols, RtnScales(*codec, w, 4, cols));
      ASSERT_TRUE(given.ok()) << given.status().ToString();
      ExpectSameBytes(*given, *rtn, std::string(Spec(id).name) + " " + std::to_string(cols));
    }
  }
}

TEST(QuantizeWithScales, DecodeIsDequantize) {
  const int64_t rows = 6, cols = 256;
  const auto w = Weights(static_cast<size_t>(rows * cols), 11, true);
  for (FormatId id : Quantized()) {
    auto rtn = QuantizeRtn(id, w, rows, cols, Options(id));
    ASSERT_TRUE(rtn.ok());
    auto d = Dequantize(id, Views(*rtn), rows, cols);
    auto q = UnpackCodes(id, Views(*rtn), rows, cols);
    ASSERT_TRUE(d.ok() && q.ok());
    auto codec = GroupCodec::Create(id, cols, q->weight_global_scale);
    ASSERT_TRUE(codec.ok());
    const int64_t g = codec->group_size();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r * cols + c);
        const float scale = q->scales[static_cast<size_t>(r * (cols / g) + c / g)];
        ASSERT_EQ(codec->Decode(q->codes[i], scale), (*d)[i]) << Spec(id).name;
        ASSERT_EQ(codec->Encode(w[i], scale), q->codes[i]) << Spec(id).name << " " << w[i];
        EXPECT_EQ(codec->QuantDequant(w[i], scale), (*d)[i]);
      }
    }
  }
}

TEST(QuantizeWithScales, QuantizeColumnMatchesElementwise) {
  auto codec = GroupCodec::Create(FormatId::kNVFP4A16, 64, 2688.0f / 3.0f);
  ASSERT_TRUE(codec.ok());
  const auto x = Weights(9, 4, false);
  std::vector<float> s(9), v(9);
  std::vector<uint8_t> c(9);
  for (size_t r = 0; r < 9; ++r) s[r] = codec->RoundScale(0.3f + 0.1f * static_cast<float>(r));
  codec->QuantizeColumn(x, s, c, v);
  for (size_t r = 0; r < 9; ++r) {
    EXPECT_EQ(c[r], codec->Encode(x[r], s[r]));
    EXPECT_EQ(v[r], codec->Decode(c[r], s[r]));
  }
}

// The batched QuantDequant (one loop per format, used by the scale search) is the scalar
// Decode(Encode(x, s), s) bit for bit, on adversarial values and scales across the range.
TEST(QuantizeWithScales, BatchQuantDequantMatchesElementwise) {
  for (FormatId id : Quantized()) {
    auto codec = GroupCodec::Create(id, 256, 2688.0f / 3.0f);
    ASSERT_TRUE(codec.ok());
    const auto x = Weights(4096, 11, true);
    std::vector<float> out(x.size());
    for (float raw : {1e-30f, 3e-3f, 0.07f, 0.3f, 1.0f, 17.0f, 300.0f, 6e4f}) {
      const float s = codec->RoundScale(raw);
      if (s == 0.0f) continue;
      codec->QuantDequant(x, s, out);
      for (size_t i = 0; i < x.size(); ++i) {
        const float want = codec->QuantDequant(x[i], s);
        ASSERT_EQ(std::memcmp(&out[i], &want, sizeof(float)), 0)
            << Spec(id).name << " x=" << x[i] << " s=" << s << ": " << out[i] << " vs " << want;
      }
    }
  }
}

TEST(QuantizeWithScales, GivenScalesAreStoredAsIs) {
  // A scale RTN would never pick (a larger E4M3 value) is written directly, no re-derivation.
  const int64_t rows = 2, cols = 32;
  const auto w = Weights(64, 5, false);
  QuantizeOptions o;
  o.weight_global_scale = 2688.0f / 0.1f;
  auto codec = GroupCodec::Create(FormatId::kNVFP4A16, cols, *o.weight_global_scale);
  ASSERT_TRUE(codec.ok());
  std::vector<float> scales = RtnScales(*codec, w, rows, cols);
  for (float& s : scales) s = codec->RoundScale(s * 1.4f);
  auto q = QuantizeWithScales(FormatId::kNVFP4A16, w, rows, cols, scales, o);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  auto back = UnpackCodes(FormatId::kNVFP4A16, Views(*q), rows, cols);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->scales, scales);
  EXPECT_EQ(back->weight_global_scale, *o.weight_global_scale);
}

TEST(QuantizeWithScales, RoundScaleIsStorable) {
  for (FormatId id : Quantized()) {
    auto codec = GroupCodec::Create(id, 256, 100.0f);
    ASSERT_TRUE(codec.ok());
    for (float s : {1e-30f, 0.001f, 0.37f, 1.0f, 3.3f, 300.0f, 1e5f}) {
      const float r = codec->RoundScale(s);
      if (r != 0.0f) {
        EXPECT_TRUE(codec->IsStorableScale(r)) << Spec(id).name << " " << s;
      }
      EXPECT_EQ(codec->RoundScale(r), r);
    }
    EXPECT_FALSE(codec->IsStorableScale(0.0f));
    EXPECT_FALSE(codec->IsStorableScale(-1.0f));
    EXPECT_FALSE(codec->IsStorableScale(NAN));
  }
  // E8M0: only powers of two; 0.5 .. 1.5 times s0 collapse to {s0/2, s0, 2 s0}.
  auto mx = GroupCodec::Create(FormatId::kMXFP4, 32);
  ASSERT_TRUE(mx.ok());
  EXPECT_FALSE(mx->IsStorableScale(3.0f));
  EXPECT_TRUE(mx->IsStorableScale(std::ldexp(1.0f, -127)));
  for (int i = 0; i < 32; ++i) {
    const float r = mx->RoundScale(0.25f * (0.5f + static_cast<float>(i) / 31.0f));
    EXPECT_TRUE(r == 0.125f || r == 0.25f || r == 0.5f) << r;
  }
}

TEST(QuantizeWithScales, RejectsBadInput) {
  const auto w = Weights(64, 1, false);
  auto codec = GroupCodec::Create(FormatId::kINT4, 128);
  ASSERT_TRUE(codec.ok());
  // Not a bf16 value.
  std::vector<float> bad(1, 0.1f);
  auto q = QuantizeWithScales(FormatId::kINT4, std::vector<float>(128, 0.5f), 1, 128, bad);
  EXPECT_FALSE(q.ok());
  // Wrong scale count.
  q = QuantizeWithScales(FormatId::kMXFP8, w, 2, 32, std::vector<float>(1, 1.0f));
  EXPECT_FALSE(q.ok());
  // Not a power of two for E8M0.
  q = QuantizeWithScales(FormatId::kMXFP8, w, 2, 32, std::vector<float>(2, 3.0f));
  EXPECT_FALSE(q.ok());
  // NVFP4 (W4A4) without an input global scale.
  q = QuantizeWithScales(FormatId::kNVFP4, w, 4, 16, std::vector<float>(4, 1.0f));
  EXPECT_FALSE(q.ok());
  EXPECT_FALSE(GroupCodec::Create(FormatId::kBF16, 16).ok());
  EXPECT_FALSE(GroupCodec::Create(FormatId::kNVFP4A16, 24).ok());
  // Invalid codes.
  QCodes c;
  c.codes.assign(32, 16);
  c.scales.assign(1, 1.0f);
  EXPECT_FALSE(PackCodes(FormatId::kMXFP4, c, 1, 32).ok());
  c.codes.assign(32, 0x7f);
  EXPECT_FALSE(PackCodes(FormatId::kMXFP8, c, 1, 32).ok());
}

}  // namespace
}  // namespace pq::formats
