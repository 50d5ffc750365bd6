// `prismaquant generate MODEL --prompt TEXT`
#include <cstdio>
#include <functional>
#include <string_view>

#include "commands.h"
#include "flags.h"
#include "pq/core/log.h"
#include "pq/engine/generate_text.h"

namespace pq::cli {
namespace {

struct GenerateArgs {
  engine::GenerateTextOptions o;
  ExecFlags exec;
  double resident_gb = 4;
  bool no_bos = false, json = false;
};

Status Run(const GenerateArgs& a) {
  engine::GenerateTextOptions o = a.o;
  o.add_bos = !a.no_bos;
  o.generate.resident_bytes = static_cast<uint64_t>(a.resident_gb * 1e9);
  o.exec = a.exec.Context();
  // Text mode streams prompt + continuation to stdout as it is generated.
  std::function<void(std::string_view)> print;
  if (!a.json) {
    print = [](std::string_view s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    };
  }
  PQ_ASSIGN_OR_RETURN(engine::GenerateTextResult r, engine::GenerateText(o, print));
  if (a.json) {
    std::printf("%s\n",
                r.ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return Status::Ok();
  }
  std::printf("\n");
  std::fflush(stdout);
  const engine::GenerateResult& g = r.generated;
  char line[256];
  std::snprintf(line, sizeof line,
                "%zu new tokens (stop: %s), mean NLL %.6f nats/token, %.1f tokens/s%s",
                g.tokens.size(), engine::StopReasonName(g.stop), g.mean_nll, g.tokens_per_s,
                g.resident ? "" : " (layers streamed)");
  LogInfo(line);
  return Status::Ok();
}

}  // namespace

void AddGenerateCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<GenerateArgs>();
  engine::GenerateTextOptions& o = a->o;
  CLI::App* sub = app.add_subcommand(
      "generate",
      "Continue a prompt with MODEL (any checkpoint we read, including compressed-tensors\n"
      "output: weights dequantized on load, inputs of NVFP4/MXFP8/MXFP4/FP8 Linears quantized as\n"
      "the runtime does). Prints prompt + continuation as it is generated, then the new tokens'\n"
      "mean NLL under the model and tokens/s on stderr. Greedy by default; --temperature T > 0\n"
      "samples (optionally --top-p), reproducibly for a --seed on every platform.\n"
      "Example: prismaquant generate models/stories260K --prompt \"Once upon a time\" -n 64");
  sub->add_option("model", o.model, "Model directory or .safetensors file")->required();
  sub->add_option("--prompt", o.prompt, "Prompt text")->required();
  sub->add_option("-n,--max-new-tokens", o.generate.max_new_tokens,
                  "New tokens at most (default 128)");
  sub->add_option("--temperature", o.generate.temperature, "0 = greedy (default); > 0 samples");
  sub->add_option("--top-p", o.generate.top_p,
                  "Sample from the smallest set with this mass (default 1)");
  sub->add_option("--seed", o.generate.seed, "Sampling seed (default 0)");
  sub->add_option("--tokenizer", o.tokenizer,
                  "Tokenizer directory or file (default: MODEL's tokenizer.json / tokenizer.bin)");
  a->exec.Register(sub);
  sub->add_option("--resident-gb", a->resident_gb,
                  "Keep all layers loaded when they fit in this many GB (default 4)")
      ->check(FiniteNonNegative());
  sub->add_flag("--no-bos", a->no_bos, "Do not prepend BOS to the prompt");
  sub->add_flag("--weights-only", o.weights_only,
                "Do not quantize Linear inputs at run time (see eval --weights-only)");
  sub->add_flag("--json", a->json,
                "Print {prompt, prompt_tokens, text, tokens, new_tokens, stop, mean_nll, "
                "tokens_per_s, ...} instead of the text");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
