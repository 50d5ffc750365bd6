// Fuzz target: a model's config.json as every command reads it: the strict parser, the
// architecture detection and the model configuration (dims, RoPE, MoE, hybrid layer types).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pq/io/json_util.h"
#include "pq/model/arch.h"
#include "pq/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j =
      pq::io::ParseJson(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
  if (!j.ok()) return 0;
  auto arch = pq::model::DetectArchitecture(*j);
  if (!arch.ok()) return 0;
  (void)pq::model::ParseModelConfig(*j, std::string((*arch)->name));
  return 0;
}
