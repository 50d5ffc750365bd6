#include "pq/convert/llama2c_hf.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pq/core/check.h"
#include "pq/core/utf8.h"

namespace pq::convert {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr std::string_view kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's space
constexpr int kNumSpecial = 3;                       // <unk>, <s>, </s>
constexpr int kFirstPiece = kNumSpecial + 256;       // after the byte tokens

// Byte offsets of the character boundaries strictly inside `s` (valid UTF-8).
std::vector<size_t> InnerCharBoundaries(std::string_view s) {
  std::vector<size_t> out;
  for (size_t i = 1; i < s.size(); ++i) {
    if ((static_cast<uint8_t>(s[i]) & 0xC0) != 0x80) out.push_back(i);
  }
  return out;
}

std::string ByteTokenName(int b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
  return buf;
}

// The HF spelling of piece `id`.
std::string HfPiece(const io::Llama2cVocab& vocab, size_t id) {
  if (id == 0) return "<unk>";
  if (id == 1) return "<s>";
  if (id == 2) return "</s>";
  std::string out;
  for (char c : vocab.pieces[id]) {
    if (c == ' ') {
      out += kSpace;
    } else {
      out += c;
    }
  }
  return out;
}

std::string_view TorchDtypeName(DType dtype) {
  return dtype == DType::kBF16 ? "bfloat16" : "float32";
}

}  // namespace

Result<std::string> MakeHfTokenizerJson(const io::Llama2cVocab& vocab,
                                        const std::string& file_name) {
  const std::string bad = file_name + ": cannot convert to a Hugging Face tokenizer: ";
  const size_t n = vocab.pieces.size();
  if (n < static_cast<size_t>(kFirstPiece)) {
    return InvalidArgument(bad + "expected at least " + std::to_string(kFirstPiece) +
                           " tokens (3 special + 256 byte tokens), found " + std::to_string(n));
  }
  const auto& p = vocab.pieces;
  if (p[0] != "<unk>" || (p[1] != "\n<s>\n" && p[1] != "<s>") ||
      (p[2] != "\n</s>\n" && p[2] != "</s>")) {
    return InvalidArgument(bad + "ids 0/1/2 must be <unk>/<s>/</s> (SentencePiece layout)");
  }
  for (int b = 0; b < 256; ++b) {
    if (p[static_cast<size_t>(kNumSpecial + b)] != ByteTokenName(b)) {
      return InvalidArgument(bad + "id " + std::to_string(kNumSpecial + b) + " must be the byte " +
                             "token " + ByteTokenName(b) + " (SentencePiece byte fallback)");
    }
  }
  std::vector<std::string> hf(n);
  std::unordered_map<std::string, size_t> ids;
  ids.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    if (!IsValidUtf8(p[i])) {
      return InvalidArgument(bad + "token " + std::to_string(i) + " is not valid UTF-8");
    }
    hf[i] = HfPiece(vocab, i);
    if (!ids.emplace(hf[i], i).second) {
      return InvalidArgument(bad + "tokens " + std::to_string(ids[hf[i]]) + " and " +
                             std::to_string(i) + " have the same text \"" + p[i] + "\"");
    }
  }

  // run.c merges the adjacent pair whose concatenation is the best-scoring piece. HF BPE
  // applies the lowest-ranked merge first, so every split of a piece into two pieces is a
  // merge, ranked by the merged piece's score (descending); ties (several splits of one
  // piece) by longer left part first, as transformers' generate_merges does.
  struct Merge {
    float score;
    size_t result;
    size_t split;
    size_t left, right;
  };
  std::vector<Merge> merges;
  for (size_t id = kFirstPiece; id < n; ++id) {
    const std::string& s = hf[id];
    for (size_t k : InnerCharBoundaries(s)) {
      auto l = ids.find(s.substr(0, k));
      auto r = ids.find(s.substr(k));
      if (l == ids.end() || r == ids.end()) continue;
      if (l->second < kNumSpecial || r->second < kNumSpecial) continue;
      merges.push_back({vocab.scores[id], id, k, l->second, r->second});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.result != b.result) return a.result < b.result;
    return a.split > b.split;
  });

  const std::string space(kSpace);
  ordered_json added = ordered_json::array();
  for (int i = 0; i < kNumSpecial; ++i) {
    added.push_back({{"id", i},
                     {"content", hf[static_cast<size_t>(i)]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  ordered_json vocab_json = ordered_json::object();
  for (size_t i = 0; i < n; ++i) vocab_json[hf[i]] = i;
  ordered_json merges_json = ordered_json::array();
  for (const Merge& m : merges) merges_json.push_back({hf[m.left], hf[m.right]});

  auto special = [](const char* id, int type_id) {
    return ordered_json{{"SpecialToken", {{"id", id}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* id, int type_id) {
    return ordered_json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
  };
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", space}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}}}}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {special("<s>", 0), sequence("A", 0)}},
      {"pair", {special("<s>", 0), sequence("A", 0), special("<s>", 1), sequence("B", 1)}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"ignore_merges", false},
                {"vocab", std::move(vocab_json)},
                {"merges", std::move(merges_json)}};
  try {
    return j.dump(2) + "\n";
  } catch (const std::exception& e) {
    return Internal(bad + "JSON serialization failed: " + e.what());
  }
}

std::string MakeHfTokenizerConfigJson(int64_t model_max_length) {
  ordered_json decoder = ordered_json::object();
  const char* names[] = {"<unk>", "<s>", "</s>"};
  for (int i = 0; i < kNumSpecial; ++i) {
    decoder[std::to_string(i)] = {{"content", names[i]},  {"lstrip", false},
                                  {"normalized", false},  {"rstrip", false},
                                  {"single_word", false}, {"special", true}};
  }
  ordered_json j;
  j["add_bos_token"] = true;
  j["add_eos_token"] = false;
  j["added_tokens_decoder"] = std::move(decoder);
  j["bos_token"] = "<s>";
  j["eos_token"] = "</s>";
  j["unk_token"] = "<unk>";
  j["pad_token"] = nullptr;
  j["clean_up_tokenization_spaces"] = false;
  j["legacy"] = true;
  j["model_max_length"] = model_max_length;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  return j.dump(2) + "\n";
}

std::string MakeHfSpecialTokensMapJson() {
  ordered_json j;
  j["bos_token"] = "<s>";
  j["eos_token"] = "</s>";
  j["unk_token"] = "<unk>";
  return j.dump(2) + "\n";
}

std::string MakeHfLlamaConfigJson(const io::Llama2cConfig& c, DType dtype) {
  ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.hidden_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim();
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.seq_len;
  j["rms_norm_eps"] = 1e-5;
  j["rope_theta"] = 10000.0;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.shared_classifier;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["torch_dtype"] = TorchDtypeName(dtype);
  return j.dump(2);
}

void PermuteRopeRows(std::span<const float> src, int64_t heads, int64_t head_dim, int64_t cols,
                     std::span<float> dst) {
  PQ_CHECK(head_dim % 2 == 0, "head_dim must be even");
  const auto rows = static_cast<size_t>(heads * head_dim);
  const auto ucols = static_cast<size_t>(cols);
  PQ_CHECK(src.size() == rows * ucols && dst.size() == src.size(), "size mismatch");
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t j = 0; j < 2; ++j) {
      for (int64_t i = 0; i < half; ++i) {
        const auto to = static_cast<size_t>(h * head_dim + j * half + i);
        const auto from = static_cast<size_t>(h * head_dim + 2 * i + j);
        std::copy_n(src.begin() + static_cast<std::ptrdiff_t>(from * ucols), ucols,
                    dst.begin() + static_cast<std::ptrdiff_t>(to * ucols));
      }
    }
  }
}

}  // namespace pq::convert
