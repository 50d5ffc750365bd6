// `prismaquant generate MODEL --prompt TEXT`
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "pq/compute/ops.h"
#include "pq/core/log.h"
#include "pq/engine/generate.h"
#include "pq/tokenizer/tokenizer.h"

namespace pq::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt, tokenizer;
  int64_t max_new_tokens = 128;
  double temperature = 0, top_p = 1.0;
  uint64_t seed = 0;
  int threads = 0;
  double resident_gb = 4;
  bool no_bos = false, json = false, weights_only = false;
};

// Length of the longest prefix of s that does not end inside a UTF-8 sequence.
size_t CompleteUtf8Prefix(const std::string& s) {
  size_t i = s.size(), back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i, ++back;
  if (i == 0) return s.size();
  const auto lead = static_cast<unsigned char>(s[i - 1]);
  size_t need = 1;
  if ((lead & 0xE0) == 0xC0) need = 2;
  else if ((lead & 0xF0) == 0xE0) need = 3;
  else if ((lead & 0xF8) == 0xF0) need = 4;
  return need > back + 1 ? i - 1 : s.size();
}

// The continuation as text: decode(prompt + new) minus decode(prompt) when that is a prefix
// (keeps the spaces a SentencePiece decoder strips at the start of a text).
std::string Continuation(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& prompt,
                         const std::vector<int32_t>& gen) {
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const std::string full = tok.Decode(all), head = tok.Decode(prompt);
  if (full.compare(0, head.size(), head) == 0) return full.substr(head.size());
  return tok.Decode(gen);
}

Status Run(const GenerateArgs& a) {
  compute::cpu::SetNumThreads(a.threads);
  PQ_ASSIGN_OR_RETURN(auto src, model::WeightSource::Open(a.model));
  if (a.weights_only) {
    src->set_linear_hook([](model::LinearWeights& l) {
      l.act_format = formats::FormatId::kBF16;
      l.input_global_scale.reset();
      return Status::Ok();
    });
  }
  std::string tok_path = a.tokenizer;
  if (tok_path.empty()) {
    namespace fs = std::filesystem;
    tok_path = fs::is_directory(a.model) ? a.model : fs::path(a.model).parent_path().string();
    if (tok_path.empty()) tok_path = ".";
  }
  PQ_ASSIGN_OR_RETURN(auto tok, tokenizer::LoadTokenizer(tok_path));
  PQ_ASSIGN_OR_RETURN(std::vector<int32_t> text_ids, tok->Encode(a.prompt));
  const model::ModelConfig& c = src->config();
  std::vector<int32_t> prompt_ids;
  if (!a.no_bos) {
    const int32_t bos = tok->bos_id() ? *tok->bos_id() : c.bos_id;
    if (bos < 0)
      return InvalidArgument(a.model + ": no BOS token known (tokenizer or config.json " +
                             "bos_token_id); pass --no-bos");
    prompt_ids.push_back(bos);
  }
  prompt_ids.insert(prompt_ids.end(), text_ids.begin(), text_ids.end());
  for (int32_t id : prompt_ids)
    if (id < 0 || id >= c.vocab)
      return InvalidArgument("prompt token id " + std::to_string(id) + " is outside the model's " +
                             "vocabulary of " + std::to_string(c.vocab));

  engine::GenerateOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.temperature = a.temperature;
  o.top_p = a.top_p;
  o.seed = a.seed;
  o.resident_bytes = static_cast<uint64_t>(a.resident_gb * 1e9);
  for (std::optional<int32_t> e : {std::optional<int32_t>(c.eos_id), tok->eos_id()})
    if (e && *e >= 0 && std::find(o.eos_ids.begin(), o.eos_ids.end(), *e) == o.eos_ids.end())
      o.eos_ids.push_back(*e);
  auto is_eos = [&](int32_t t) {
    return std::find(o.eos_ids.begin(), o.eos_ids.end(), t) != o.eos_ids.end();
  };

  // Streamed text: decode(prompt + new tokens so far) (BOS and EOS left out), printed from
  // where the last print ended, holding back an incomplete UTF-8 character.
  const std::vector<int32_t> shown_prompt(prompt_ids.begin() + (a.no_bos ? 0 : 1),
                                          prompt_ids.end());
  std::vector<int32_t> shown = shown_prompt, gen_text;
  size_t printed = 0;
  auto flush = [&](bool final) {
    const std::string s = tok->Decode(shown);
    const size_t upto = final ? s.size() : CompleteUtf8Prefix(s);
    if (upto > printed) {
      std::fwrite(s.data() + printed, 1, upto - printed, stdout);
      std::fflush(stdout);
      printed = upto;
    }
  };
  if (!a.json) flush(false);
  auto on_token = [&](int32_t t) {
    if (is_eos(t)) return;
    shown.push_back(t);
    gen_text.push_back(t);
    if (!a.json) flush(false);
  };
  PQ_ASSIGN_OR_RETURN(engine::GenerateResult r,
                      engine::Generate(*src, prompt_ids, o, on_token));
  const std::string text = Continuation(*tok, shown_prompt, gen_text);
  if (a.json) {
    nlohmann::json j = {{"prompt", a.prompt},
                        {"prompt_tokens", prompt_ids},
                        {"text", text},
                        {"tokens", r.tokens},
                        {"new_tokens", r.tokens.size()},
                        {"stop", engine::StopReasonName(r.stop)},
                        {"mean_nll", r.mean_nll},
                        {"tokens_per_s", r.tokens_per_s},
                        {"seconds", r.seconds},
                        {"temperature", a.temperature},
                        {"top_p", a.top_p},
                        {"seed", a.seed},
                        {"resident", r.resident}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    flush(true);
    std::printf("\n");
    std::fflush(stdout);
    char line[256];
    std::snprintf(line, sizeof line,
                  "%zu new tokens (stop: %s), mean NLL %.6f nats/token, %.1f tokens/s%s",
                  r.tokens.size(), engine::StopReasonName(r.stop), r.mean_nll, r.tokens_per_s,
                  r.resident ? "" : " (layers streamed)");
    LogInfo(line);
  }
  return Status::Ok();
}

}  // namespace

void AddGenerateCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand(
      "generate",
      "Continue a prompt with MODEL (any checkpoint we read, including compressed-tensors\n"
      "output: weights dequantized on load, inputs of NVFP4/MXFP8/MXFP4/FP8 Linears quantized as\n"
      "the runtime does). Prints prompt + continuation as it is generated, then the new tokens'\n"
      "mean NLL under the model and tokens/s on stderr. Greedy by default; --temperature T > 0\n"
      "samples (optionally --top-p), reproducibly for a --seed on every platform.\n"
      "Example: prismaquant generate models/stories260K --prompt \"Once upon a time\" -n 64");
  sub->add_option("model", a->model, "Model directory or .safetensors file")->required();
  sub->add_option("--prompt", a->prompt, "Prompt text")->required();
  sub->add_option("-n,--max-new-tokens", a->max_new_tokens, "New tokens at most (default 128)");
  sub->add_option("--temperature", a->temperature, "0 = greedy (default); > 0 samples");
  sub->add_option("--top-p", a->top_p, "Sample from the smallest set with this mass (default 1)");
  sub->add_option("--seed", a->seed, "Sampling seed (default 0)");
  sub->add_option("--tokenizer", a->tokenizer,
                  "Tokenizer directory or file (default: MODEL's tokenizer.json / tokenizer.bin)");
  sub->add_option("--threads", a->threads, "Threads (default: all cores)");
  sub->add_option("--resident-gb", a->resident_gb,
                  "Keep all layers loaded when they fit in this many GB (default 4)");
  sub->add_flag("--no-bos", a->no_bos, "Do not prepend BOS to the prompt");
  sub->add_flag("--weights-only", a->weights_only,
                "Do not quantize Linear inputs at run time (see eval --weights-only)");
  sub->add_flag("--json", a->json,
                "Print {prompt, prompt_tokens, text, tokens, new_tokens, stop, mean_nll, "
                "tokens_per_s, ...} instead of the text");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
