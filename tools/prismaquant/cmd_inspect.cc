// `prismaquant inspect CKPT [--json]`
#include <cstdio>

#include "commands.h"
#include "pq/pipeline/inspect.h"

namespace pq::cli {

void AddInspectCommand(CLI::App& app, int* exit_code) {
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand(
      "inspect",
      "Summarise a checkpoint (formats, bytes, bits per parameter) and verify the vLLM loader\n"
      "rules: every Linear targeted by exactly one config group or ignored, fused siblings\n"
      "sharing one scheme and NVFP4 global scales, complete tensor sets with the right dtypes\n"
      "and shapes. Exits 1 when a rule is violated.\n"
      "Example: prismaquant inspect out/stories-nvfp4 --json");
  sub->add_option("checkpoint", *path, "Checkpoint directory or .safetensors file")->required();
  sub->add_flag("--json", *json, "Print the report as JSON");
  sub->callback([path, json, exit_code] {
    auto rep = pipeline::Inspect(*path);
    if (!rep.ok()) {
      *exit_code = ExitCodeFor(rep.status());
      return;
    }
    std::printf("%s", *json ? (rep->ToJson().dump(2) + "\n").c_str() : rep->ToText().c_str());
    *exit_code = rep->ok() ? 0 : 1;
  });
}

}  // namespace pq::cli
