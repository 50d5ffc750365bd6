#include "pq/formats/tensor_blob.h"

#include <gtest/gtest.h>

namespace pq::formats {
namespace {

TEST(TensorBlob, RoundTripsEveryField) {
  std::vector<QTensor> in(2);
  in[0] = {"weight_packed", DType::kU8, {2, 8}, {}};
  in[0].bytes.assign(16, 0x5a);
  in[1] = {"weight_scale", DType::kF8E4M3, {2, 1}, {}};
  in[1].bytes = {1, 2};
  BlobWriter w;
  w.Put(3.5);
  PutTensors(w, in);
  BlobReader r(w.blob());
  ASSERT_EQ(r.Get<double>().value(), 3.5);
  std::vector<QTensor> out;
  ASSERT_TRUE(GetTensors(r, out).ok());
  EXPECT_TRUE(r.done());
  ASSERT_EQ(out.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(out[i].suffix, in[i].suffix);
    EXPECT_EQ(out[i].dtype, in[i].dtype);
    EXPECT_EQ(out[i].shape, in[i].shape);
    EXPECT_TRUE(std::equal(out[i].bytes.begin(), out[i].bytes.end(), in[i].bytes.begin(),
                           in[i].bytes.end()));
  }
}

TEST(TensorBlob, TruncatedBlobIsDataLoss) {
  std::vector<QTensor> in(1);
  in[0] = {"weight", DType::kBF16, {4}, {}};
  in[0].bytes.assign(8, 7);
  BlobWriter w;
  PutTensors(w, in);
  for (size_t cut : {size_t{0}, size_t{5}, w.blob().size() - 1}) {
    BlobReader r(std::span(w.blob()).first(cut));
    std::vector<QTensor> out;
    EXPECT_EQ(GetTensors(r, out).code(), StatusCode::kDataLoss) << "cut at " << cut;
  }
}

}  // namespace
}  // namespace pq::formats
