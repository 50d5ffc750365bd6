// Fuzz target: a Hugging Face tokenizer.json (loader: model, normalizer, pre-tokenizer,
// decoder, added tokens) and, when it loads, encode + decode of fixed texts.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "pq/tokenizer/hf_tokenizer.h"

namespace {

// The loader reads files: one per process, rewritten for every input.
const std::string& TokenizerPath() {
  static const std::string path = "/tmp/pq_fuzz_tokenizer_" + std::to_string(::getpid()) + ".json";
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::ofstream f(TokenizerPath(), std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto tok = pq::tokenizer::HfTokenizer::Load(TokenizerPath(), "");
  if (!tok.ok()) return 0;
  for (const char* text : {"Hello world", "  tabs\tand\nnew lines  ", "caf\xc3\xa9 \xe2\x82\xac 12345",
                           "<|endoftext|><s></s>", "\xf0\x9f\x98\x80 \xff\xfe bad utf-8"}) {
    auto ids = (*tok)->Encode(text);
    if (ids.ok()) (void)(*tok)->Decode(*ids);
  }
  return 0;
}
