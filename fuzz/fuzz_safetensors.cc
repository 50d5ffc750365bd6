// Fuzz target: the safetensors header parser and validator (every checkpoint we read goes
// through it) and the dtype conversion of every tensor it accepts.
#include <cstddef>
#include <cstdint>
#include <span>

#include "pq/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, std::string> meta;
  auto tensors = pq::io::ParseSafetensorsHeader(std::span(data, size), "fuzz.safetensors", &meta);
  if (!tensors.ok()) return 0;
  for (const auto& t : *tensors)
    if (t.numel() <= (1 << 16)) (void)pq::io::ReadAsF32(t);
  return 0;
}
