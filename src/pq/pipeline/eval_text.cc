#include "pq/pipeline/eval_text.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pq/io/file_util.h"
#include "pq/io/safetensors.h"
#include "pq/model/arch.h"
#include "pq/model/config.h"
#include "pq/tokenizer/tokenizer.h"

namespace pq::pipeline {
namespace {

bool IsBlank(const std::string& line) {
  return line.find_first_not_of(" \t\r\n\v\f") == std::string::npos;
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n\v\f");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n\v\f");
  return s.substr(b, e - b + 1);
}

Result<std::string> ReadText(const std::string& path) {
  // A regular file only (a FIFO would block); no size limit beyond memory.
  return io::ReadFileToString(path, std::numeric_limits<uint64_t>::max());
}

// The BOS id: the tokenizer's, else config.json's bos_token_id.
Result<int32_t> BosId(const std::string& model_dir, const tokenizer::Tokenizer* tok) {
  if (tok && tok->bos_id()) return *tok->bos_id();
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model_dir));
  PQ_ASSIGN_OR_RETURN(nlohmann::json whole, model::ReadConfig(ckpt->dir()));
  const nlohmann::json& c = whole.contains("bos_token_id") ? whole : model::TextConfig(whole);
  if (c.contains("bos_token_id") && c["bos_token_id"].is_number_integer())
    return c["bos_token_id"].get<int32_t>();
  return InvalidArgument(model_dir + ": no BOS token known (tokenizer or config.json " +
                         "bos_token_id); pass --no-bos");
}

}  // namespace

Result<DocSplit> ParseDocSplit(const std::string& name) {
  if (name == "none") return DocSplit::kNone;
  if (name == "lines") return DocSplit::kLines;
  if (name == "paragraphs") return DocSplit::kParagraphs;
  if (name == "jsonl") return DocSplit::kJsonl;
  return InvalidArgument("--split must be none, lines, paragraphs or jsonl (got \"" + name + "\")");
}

std::vector<std::string> SplitDocuments(const std::string& text, DocSplit split) {
  std::vector<std::string> docs;
  if (split == DocSplit::kNone) {
    if (!IsBlank(text)) docs.push_back(text);
    return docs;
  }
  std::istringstream in(text);
  std::string line, para;
  while (std::getline(in, line)) {
    if (split == DocSplit::kLines || split == DocSplit::kJsonl) {
      if (!IsBlank(line)) docs.push_back(line);
      continue;
    }
    if (IsBlank(line)) {
      if (!Trim(para).empty()) docs.push_back(Trim(para));
      para.clear();
    } else {
      para += (para.empty() ? "" : "\n") + line;
    }
  }
  if (split == DocSplit::kParagraphs && !Trim(para).empty()) docs.push_back(Trim(para));
  return docs;
}

namespace {

// The "text" string of one JSON-lines record.
Result<std::string> JsonlText(const std::string& line, const std::string& file, int64_t n) {
  const std::string where = file + ": record " + std::to_string(n);
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument(where + " is not valid JSON");
  if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
    return InvalidArgument(where + " has no \"text\" string field");
  return j["text"].get<std::string>();
}

}  // namespace

Result<std::vector<std::vector<int32_t>>> LoadEvalDocuments(const std::string& model_dir,
                                                            const EvalInput& in) {
  std::vector<std::vector<int32_t>> docs;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!in.tokens_file.empty()) {
    PQ_ASSIGN_OR_RETURN(std::string text, ReadText(in.tokens_file));
    for (const std::string& line : SplitDocuments(text, DocSplit::kLines)) {
      std::vector<int32_t> ids;
      std::istringstream ls(line);
      std::string word;
      while (ls >> word) {
        char* end = nullptr;
        const long v = std::strtol(word.c_str(), &end, 10);
        if (*end != '\0' || v < 0 || v > INT32_MAX)
          return InvalidArgument(in.tokens_file + ": \"" + word + "\" is not a token id");
        ids.push_back(static_cast<int32_t>(v));
      }
      docs.push_back(std::move(ids));
    }
  } else {
    PQ_ASSIGN_OR_RETURN(std::string text, ReadText(in.text_file));
    PQ_ASSIGN_OR_RETURN(tok, tokenizer::LoadTokenizer(model_dir));
    int64_t line = 0;
    for (const std::string& d : SplitDocuments(text, in.split)) {
      ++line;
      if (in.max_docs > 0 && static_cast<int64_t>(docs.size()) >= in.max_docs) break;
      std::string doc = d;
      if (in.split == DocSplit::kJsonl) {
        PQ_ASSIGN_OR_RETURN(doc, JsonlText(d, in.text_file, line));
      }
      PQ_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok->Encode(doc));
      docs.push_back(std::move(ids));
    }
  }
  if (in.max_docs > 0 && static_cast<int64_t>(docs.size()) > in.max_docs)
    docs.resize(static_cast<size_t>(in.max_docs));
  if (docs.empty()) return InvalidArgument("no documents in the input (is it empty?)");
  if (in.add_bos) {
    PQ_ASSIGN_OR_RETURN(int32_t bos, BosId(model_dir, tok.get()));
    for (auto& d : docs) d.insert(d.begin(), bos);
  }
  return docs;
}

}  // namespace pq::pipeline
