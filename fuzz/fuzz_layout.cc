// Fuzz target: a checkpoint's layout as every command opens it (model::WeightSource::Open:
// config.json through the strict parser, architecture detection, layout resolution against
// the tensors, the compressed-tensors quantization_config, every config-implied shape), then
// layer 0 and the head loaded (dequantized when stored compressed).
// Input: config.json, a NUL byte, then the tensors as JSON {"name": ["DTYPE", [dims]]}; the
// harness writes a valid model.safetensors of zeros with those tensors (up to 8 MiB of data),
// so the fuzzer explores configs and tensor lists rather than the safetensors framing
// (fuzz_safetensors covers that).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "pq/core/dtype.h"
#include "pq/model/weights.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kMaxDataBytes = 8ull << 20;

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    std::string tmpl = (fs::temp_directory_path() / "pq_fuzz_layout_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) abort();
    return new std::string(tmpl);
  }();
  return *dir;
}

// Bytes of one element of a safetensors dtype name; 0 when unknown or not a whole byte.
uint64_t ElementBytes(const std::string& dtype) {
  const auto d = pq::ParseDType(dtype);
  return d ? static_cast<uint64_t>(pq::DTypeSize(*d)) : 0;
}

// The safetensors file for `tensors` ({"name": ["DTYPE", [dims]]}), data all zero; "" when
// the listing is malformed or too large.
std::string SafetensorsOf(const json& tensors) {
  if (!tensors.is_object()) return "";
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, spec] : tensors.items()) {
    if (!spec.is_array() || spec.size() != 2 || !spec[0].is_string() || !spec[1].is_array())
      return "";
    const uint64_t elem = ElementBytes(spec[0].get<std::string>());
    if (elem == 0) return "";
    uint64_t numel = 1;
    for (const auto& d : spec[1]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > kMaxDataBytes) return "";
      numel *= d.get<uint64_t>();
      if (numel > kMaxDataBytes) return "";
    }
    const uint64_t bytes = numel * elem;
    if (offset + bytes > kMaxDataBytes) return "";
    header[name] = {
        {"dtype", spec[0]}, {"shape", spec[1]}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  const std::string h = header.dump();
  std::string file(8, '\0');
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
  file += h;
  file.append(offset, '\0');
  return file;
}

void Write(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  if (nul == std::string_view::npos) return 0;
  const json tensors = json::parse(in.substr(nul + 1), nullptr, false);
  const std::string file = SafetensorsOf(tensors);
  if (file.empty()) return 0;
  const std::string& dir = ScratchDir();
  Write(dir + "/config.json", in.substr(0, nul));
  Write(dir + "/model.safetensors", file);
  auto ws = pq::model::WeightSource::Open(dir);
  if (!ws.ok()) return 0;
  if ((*ws)->config().num_layers > 0) (void)(*ws)->LoadLayer(0);
  (void)(*ws)->LoadHead();
  return 0;
}
