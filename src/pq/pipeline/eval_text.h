// Turning an eval input file into token documents: text split into documents (whole file,
// lines, or blank-line-separated paragraphs) and tokenized, or pre-tokenized ids.
#pragma once

#include <string>
#include <vector>

#include "pq/core/status.h"

namespace pq::pipeline {

enum class DocSplit { kNone, kLines, kParagraphs, kJsonl };

Result<DocSplit> ParseDocSplit(const std::string& name);

// Splits text into documents. kLines: every non-blank line. kParagraphs: maximal runs of
// lines that are not blank (blank = only whitespace), joined by "\n" with the paragraph's
// leading/trailing whitespace removed. kNone: the whole text. Empty documents are dropped.
// kJsonl is handled by LoadEvalDocuments (one JSON object per line, its "text" string);
// here it splits like kLines.
std::vector<std::string> SplitDocuments(const std::string& text, DocSplit split);

struct EvalInput {
  std::string text_file;    // or
  std::string tokens_file;  // pre-tokenized (one document per line, ids separated by spaces)
  DocSplit split = DocSplit::kNone;
  int64_t max_docs = 0;  // 0 = all
  bool add_bos = true;
};

// Token documents for `model_dir`'s tokenizer, each starting with BOS when add_bos.
Result<std::vector<std::vector<int32_t>>> LoadEvalDocuments(const std::string& model_dir,
                                                            const EvalInput& in);

}  // namespace pq::pipeline
