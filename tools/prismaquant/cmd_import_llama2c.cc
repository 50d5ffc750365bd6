// `prismaquant import-llama2c BIN --tokenizer TOK -o DIR [--dtype F32|BF16] [--overwrite]`
#include <cctype>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "pq/convert/import_llama2c.h"
#include "pq/core/dtype.h"

namespace pq::cli {

void AddImportLlama2cCommand(CLI::App& app, int* exit_code) {
  struct Flags {
    std::string bin;
    std::string tokenizer;
    std::string out;
    std::string dtype = "F32";
    bool overwrite = false;
    bool json = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = app.add_subcommand(
      "import-llama2c",
      "Convert a legacy (v0) llama2.c checkpoint and its tokenizer.bin into a Hugging Face\n"
      "Llama directory: model.safetensors + config.json (LlamaForCausalLM), tokenizer.json,\n"
      "tokenizer_config.json and special_tokens_map.json (a byte-fallback BPE that encodes\n"
      "like llama2.c's run.c), and a copy of tokenizer.bin. q/k rows are permuted from\n"
      "llama2.c's interleaved RoPE pairs to HF's rotate-half layout. Both inputs are\n"
      "validated completely first; the output appears atomically or not at all.\n"
      "Example: prismaquant import-llama2c stories260K.bin --tokenizer tok512.bin "
      "-o models/stories260K");
  sub->add_option("bin", flags->bin, "llama2.c checkpoint (.bin, legacy v0 format run.c reads)")
      ->required();
  sub->add_option("--tokenizer", flags->tokenizer,
                  "llama2.c tokenizer.bin the model was trained with (e.g. tok512.bin)")
      ->required();
  sub->add_option("-o,--output", flags->out, "Output directory (must not exist, see --overwrite)")
      ->required();
  sub->add_option("--dtype", flags->dtype, "Tensor dtype: F32 (lossless, default) or BF16")
      ->check(CLI::IsMember({"F32", "BF16"}, CLI::ignore_case));
  sub->add_flag("--overwrite", flags->overwrite, "Replace an existing output directory");
  sub->add_flag("--json", flags->json, "Print the result as JSON");
  sub->callback([flags, exit_code] {
    convert::ImportOptions opts;
    std::string name = flags->dtype;
    for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    opts.dtype = name == "BF16" ? DType::kBF16 : DType::kF32;  // IsMember allows only these
    opts.overwrite = flags->overwrite;
    auto r = convert::ImportLlama2c(flags->bin, flags->tokenizer, flags->out, opts);
    if (!r.ok()) {
      *exit_code = ExitCodeFor(r.status());
      return;
    }
    const io::Llama2cConfig& c = r->config;
    if (flags->json) {
      nlohmann::ordered_json j;
      j["output"] = r->out_dir;
      j["dtype"] = DTypeName(opts.dtype);
      j["tensors"] = r->num_tensors;
      j["params"] = r->num_params;
      j["tensor_bytes"] = r->tensor_bytes;
      j["files"] = r->files;
      j["config"] = {{"dim", c.dim},
                     {"hidden_dim", c.hidden_dim},
                     {"n_layers", c.n_layers},
                     {"n_heads", c.n_heads},
                     {"n_kv_heads", c.n_kv_heads},
                     {"vocab_size", c.vocab_size},
                     {"seq_len", c.seq_len},
                     {"tie_word_embeddings", c.shared_classifier}};
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("wrote %s\n", r->out_dir.c_str());
      std::printf(
          "  model: dim=%d hidden=%d layers=%d heads=%d kv_heads=%d vocab=%d seq_len=%d%s\n", c.dim,
          c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
          c.shared_classifier ? " (tied embeddings)" : "");
      std::printf("  tensors: %lld (%s), %lld params, %llu bytes\n",
                  static_cast<long long>(r->num_tensors),
                  std::string(DTypeName(opts.dtype)).c_str(), static_cast<long long>(r->num_params),
                  static_cast<unsigned long long>(r->tensor_bytes));
      std::string files;
      for (const auto& f : r->files) files += (files.empty() ? "" : ", ") + f;
      std::printf("  files: model.safetensors, %s\n", files.c_str());
    }
    *exit_code = 0;
  });
}

}  // namespace pq::cli
