// Fuzz target: a config.json's compressed-tensors quantization_config resolved against a
// fixed layout (dense Linears, experts, lm_head), as eval, inspect and dequantize do.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "pq/io/json_util.h"
#include "pq/model/quant_config.h"

namespace {

const pq::model::ModelLayout& Layout() {
  static const pq::model::ModelLayout layout = [] {
    pq::model::ModelLayout l;
    for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
                          "model.layers.0.mlp.experts.1.gate_proj", "lm_head"}) {
      pq::model::LinearInfo li;
      li.module = m;
      li.rows = 64;
      li.cols = 128;
      li.is_lm_head = std::string(m) == "lm_head";
      l.linears.push_back(li);
    }
    return l;
  }();
  return layout;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The strict parser every reader uses (duplicate keys and deep nesting refused).
  const auto j = pq::io::ParseJson(
      std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
  if (!j.ok() || !j->is_object()) return 0;
  std::vector<std::string> violations;
  (void)pq::model::ResolveLinearFormats(*j, Layout(), &violations);
  return 0;
}
