// `prismaquant tokenize MODEL --text FILE [--split ...]`
#include <cstdio>

#include "commands.h"
#include "pq/pipeline/eval_text.h"

namespace pq::cli {

void AddTokenizeCommand(CLI::App& app, int* exit_code) {
  struct Args {
    std::string model, text, split = "none";
    int64_t max_docs = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "tokenize",
      "Print the token ids MODEL's tokenizer gives a text: one document per line, ids separated\n"
      "by spaces, no BOS (the format `eval --tokens` reads).\n"
      "Example: prismaquant tokenize models/stories260K --text story.txt --split paragraphs");
  sub->add_option("model", a->model,
                  "Model directory (tokenizer.json or tokenizer.bin) or tokenizer file")
      ->required();
  sub->add_option("--text", a->text, "UTF-8 text file")->required();
  sub->add_option("--split", a->split, "Documents: none (whole file), lines, paragraphs");
  sub->add_option("--max-docs", a->max_docs, "Only the first N documents");
  sub->callback([a, exit_code] {
    pipeline::EvalInput in;
    in.text_file = a->text;
    in.max_docs = a->max_docs;
    in.add_bos = false;
    auto split = pipeline::ParseDocSplit(a->split);
    if (!split.ok()) {
      *exit_code = ExitCodeFor(split.status());
      return;
    }
    in.split = *split;
    auto docs = pipeline::LoadEvalDocuments(a->model, in);
    if (!docs.ok()) {
      *exit_code = ExitCodeFor(docs.status());
      return;
    }
    for (const auto& d : *docs) {
      for (size_t i = 0; i < d.size(); ++i) std::printf(i ? " %d" : "%d", d[i]);
      std::printf("\n");
    }
    *exit_code = 0;
  });
}

}  // namespace pq::cli
