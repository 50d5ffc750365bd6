#include "pq/quant/rtn_candidate.h"

#include <algorithm>
#include <cmath>

#include "pq/core/minifloat.h"

namespace pq::quant {

Result<std::vector<float>> RtnCandidate(formats::FormatId f, std::span<const float> w, int64_t rows,
                                        int64_t cols, float weight_global_scale,
                                        float input_global_scale) {
  std::vector<float> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = RoundBf16(w[i]);
  if (f == formats::FormatId::kBF16) return wb;
  formats::QuantizeOptions q;
  q.weight_global_scale = weight_global_scale;
  q.input_global_scale = input_global_scale;
  PQ_ASSIGN_OR_RETURN(auto tensors, formats::QuantizeRtn(f, wb, rows, cols, q));
  return formats::Dequantize(f, formats::Views(tensors), rows, cols);
}

float Bf16AbsMax(std::span<const float> w) {
  float m = 0;
  for (float v : w) m = std::max(m, std::fabs(RoundBf16(v)));
  return m;
}

}  // namespace pq::quant
