// Driver for tests/tokenizer/check_tokenizers.py (the equivalence check against the Hugging
// Face `tokenizers` library). Skipped unless PQ_TOKENIZER_CASES names a cases file:
//
//   {"cases": [
//     {"kind": "encode", "tokenizer": PATH, "input": IN, "output": OUT},
//     {"kind": "info", "tokenizer": PATH, "output": OUT},
//     {"kind": "nfc", "input": IN, "output": OUT}]}
//
// IN has one JSON string per line. For "encode", OUT gets one JSON object per input line:
// {"ids": [...], "text": Decode(ids)} or {"error": message}; "info" writes one object with
// vocab_size, bos, eos and the description; "nfc" writes the NFC form of each input line as a
// JSON string. Invalid UTF-8 in decoded text is written as U+FFFD.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pq/io/file_util.h"
#include "pq/io/json_util.h"
#include "pq/tokenizer/tokenizer.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer {
namespace {

using nlohmann::json;

std::string DumpJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::vector<std::string>> ReadJsonLines(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(std::string data, io::ReadFileToString(path));
  std::vector<std::string> out;
  size_t pos = 0, line = 0;
  while (pos < data.size()) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    ++line;
    PQ_ASSIGN_OR_RETURN(json j, io::ParseJson(std::string_view(data).substr(pos, end - pos),
                                              path + ":" + std::to_string(line)));
    if (!j.is_string()) return DataLoss(path + ":" + std::to_string(line) + ": not a string");
    out.push_back(j.get<std::string>());
    pos = end + 1;
  }
  return out;
}

std::string CaseString(const json& c, const char* key) {
  auto it = c.find(key);
  return it != c.end() && it->is_string() ? it->get<std::string>() : std::string();
}

TEST(TokenizerInterop, RunCases) {
  const char* cases_path = std::getenv("PQ_TOKENIZER_CASES");
  if (cases_path == nullptr || *cases_path == '\0') {
    GTEST_SKIP() << "set PQ_TOKENIZER_CASES (see tests/tokenizer/check_tokenizers.py)";
  }
  auto cases = io::ReadJsonFile(cases_path);
  ASSERT_TRUE(cases.ok()) << cases.status().ToString();
  ASSERT_TRUE(cases->contains("cases") && (*cases)["cases"].is_array());
  std::unique_ptr<Tokenizer> loaded;
  std::string loaded_path;
  for (const json& c : (*cases)["cases"]) {
    const std::string kind = CaseString(c, "kind");
    const std::string out_path = CaseString(c, "output");
    const auto t0 = std::chrono::steady_clock::now();
    std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
    ASSERT_TRUE(out.good()) << out_path;
    size_t count = 0;
    if (kind == "nfc") {
      auto lines = ReadJsonLines(CaseString(c, "input"));
      ASSERT_TRUE(lines.ok()) << lines.status().ToString();
      for (const std::string& s : *lines) out << DumpJson(json(unicode::Nfc(s))) << '\n';
      count = lines->size();
    } else {
      // Cases come grouped by tokenizer: keep the last one loaded.
      if (!loaded || loaded_path != CaseString(c, "tokenizer")) {
        loaded_path = CaseString(c, "tokenizer");
        auto tok = LoadTokenizer(loaded_path);
        ASSERT_TRUE(tok.ok()) << tok.status().ToString();
        loaded = std::move(tok).value();
      }
      const Tokenizer& t = *loaded;
      if (kind == "info") {
        json info = {{"vocab_size", t.vocab_size()}, {"describe", t.Describe()}};
        info["bos"] = t.bos_id() ? json(*t.bos_id()) : json();
        info["eos"] = t.eos_id() ? json(*t.eos_id()) : json();
        out << DumpJson(info) << '\n';
      } else {
        ASSERT_EQ(kind, "encode");
        auto lines = ReadJsonLines(CaseString(c, "input"));
        ASSERT_TRUE(lines.ok()) << lines.status().ToString();
        for (const std::string& s : *lines) {
          auto ids = t.Encode(s);
          json r;
          if (ids.ok()) {
            r["ids"] = *ids;
            r["text"] = t.Decode(*ids);
          } else {
            r["error"] = ids.status().ToString();
          }
          out << DumpJson(r) << '\n';
        }
        count = lines->size();
      }
    }
    out.close();
    ASSERT_TRUE(out.good()) << "writing " << out_path;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[interop] %s %s: %zu inputs in %.2f s\n", kind.c_str(),
                CaseString(c, kind == "nfc" ? "input" : "tokenizer").c_str(), count, s);
  }
}

}  // namespace
}  // namespace pq::tokenizer
