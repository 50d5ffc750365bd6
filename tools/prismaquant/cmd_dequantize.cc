// `prismaquant dequantize CKPT -o OUT`
#include <cstdio>

#include "commands.h"
#include "flags.h"
#include "pq/pipeline/dequantize.h"

namespace pq::cli {

void AddDequantizeCommand(CLI::App& app, int* exit_code) {
  struct Args {
    std::string in, out;
    bool overwrite = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "dequantize",
      "Write a dense copy of a compressed-tensors checkpoint: every quantized Linear becomes\n"
      "an F32 weight holding exactly our dequantization (what vLLM computes with).\n"
      "Example: prismaquant dequantize out/stories-nvfp4 -o out/stories-nvfp4-dense");
  sub->add_option("checkpoint", a->in, "compressed-tensors checkpoint")->required();
  AddOutputDirFlag(sub, &a->out, "Output directory");
  AddOverwriteFlag(sub, &a->overwrite);
  sub->callback([a, exit_code] {
    pipeline::DequantizeOptions o;
    o.overwrite = a->overwrite;
    auto n = pipeline::DequantizeCheckpoint(a->in, a->out, o);
    if (n.ok()) std::printf("wrote %s (%zu Linears dequantized)\n", a->out.c_str(), *n);
    *exit_code = ExitCodeFor(n.status());
  });
}

}  // namespace pq::cli
