// GenerateText on models/stories260K: the prompt's ids (BOS policy), EOS from config, the
// streamed text (never split inside a UTF-8 character; pieces add up to the
// decoded prompt + continuation), errors for an unknown BOS and out-of-vocabulary ids, and
// the JSON keys of the result.
#include "pq/engine/generate_text.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pq/core/utf8.h"
#include "pq/io/io_test_util.h"

namespace pq::engine {
namespace {

namespace fs = std::filesystem;
const std::string kStories = std::string(PQ_SOURCE_DIR) + "/models/stories260K";

GenerateTextOptions Opts(int64_t n) {
  GenerateTextOptions o;
  o.model = kStories;
  o.prompt = "Once upon a time";
  o.generate.max_new_tokens = n;
  o.exec.progress = false;
  return o;
}

TEST(GenerateText, PromptIdsAreBosPlusEncodingAndTokensMatchGenerate) {
  auto r = GenerateText(Opts(12));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->prompt_tokens, (std::vector<int32_t>{1, 403, 407, 261, 378}));
  auto src = model::WeightSource::Open(kStories);
  ASSERT_TRUE(src.ok());
  GenerateOptions g;
  g.max_new_tokens = 12;
  g.eos_ids = {2};
  auto direct = Generate(**src, r->prompt_tokens, g);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(r->generated.tokens, direct->tokens);
  EXPECT_EQ(r->generated.mean_nll, direct->mean_nll);

  GenerateTextOptions no_bos = Opts(3);
  no_bos.add_bos = false;
  auto nb = GenerateText(no_bos);
  ASSERT_TRUE(nb.ok()) << nb.status().ToString();
  EXPECT_EQ(nb->prompt_tokens, (std::vector<int32_t>{403, 407, 261, 378}));
}

TEST(GenerateText, StreamedPiecesAreThePromptThenTheText) {
  std::vector<std::string> pieces;
  GenerateTextOptions o = Opts(24);
  o.generate.temperature = 0.9;
  o.generate.seed = 7;
  auto r = GenerateText(o, [&](std::string_view s) { pieces.emplace_back(s); });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_GE(pieces.size(), 2u);
  EXPECT_EQ(pieces[0], "Once upon a time");  // before the first new token
  std::string all;
  for (const auto& p : pieces) {
    EXPECT_FALSE(p.empty());
    EXPECT_EQ(CompleteUtf8PrefixLength(p), p.size()) << p;
    all += p;
  }
  EXPECT_EQ(all, "Once upon a time" + r->text);
  // Without a callback nothing is decoded on the way, and the result is the same.
  auto quiet = GenerateText(o);
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(quiet->text, r->text);
  EXPECT_EQ(quiet->generated.tokens, r->generated.tokens);
}

// A copy of stories260K with a different config / tokenizer.
class ModelCopy {
 public:
  ModelCopy() {
    fs::copy_file(kStories + "/model.safetensors", dir_.path() / "model.safetensors");
    fs::copy_file(kStories + "/tokenizer.json", dir_.path() / "tokenizer.json");
    std::ifstream in(kStories + "/config.json");
    config_ = nlohmann::json::parse(in);
    std::ifstream tin(kStories + "/tokenizer_config.json");
    tok_config_ = nlohmann::json::parse(tin);
  }
  void Write() {
    std::ofstream(dir_.path() / "config.json") << config_.dump();
    std::ofstream(dir_.path() / "tokenizer_config.json") << tok_config_.dump();
  }
  std::string path() const { return dir_.path().string(); }
  nlohmann::json config_, tok_config_;

 private:
  io::testing::TempDir dir_;
};

TEST(GenerateText, ConfigEosStopsAndIsLeftOutOfTheText) {
  // config.json's eos_token_id set to the 3rd greedy token: generation stops there, and the
  // text (streamed and returned) is that of the first two.
  auto greedy = GenerateText(Opts(6));
  ASSERT_TRUE(greedy.ok());
  const std::vector<int32_t>& t = greedy->generated.tokens;
  ASSERT_EQ(t.size(), 6u);
  ModelCopy m;
  m.config_["eos_token_id"] = t[2];
  m.Write();
  GenerateTextOptions o = Opts(6);
  o.model = m.path();
  std::string streamed;
  auto r = GenerateText(o, [&](std::string_view s) { streamed += s; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generated.stop, StopReason::kEos);
  EXPECT_EQ(r->generated.tokens, std::vector<int32_t>(t.begin(), t.begin() + 3));
  GenerateTextOptions two = Opts(2);
  auto first_two = GenerateText(two);
  ASSERT_TRUE(first_two.ok());
  EXPECT_EQ(r->text, first_two->text);
  EXPECT_EQ(streamed, "Once upon a time" + first_two->text);
}

TEST(GenerateText, NoBosKnownIsAnErrorUnlessBosIsOff) {
  ModelCopy m;
  m.config_.erase("bos_token_id");
  m.tok_config_["add_bos_token"] = false;
  m.Write();
  GenerateTextOptions o = Opts(2);
  o.model = m.path();
  auto r = GenerateText(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("no BOS token known"), std::string::npos);
  o.add_bos = false;
  EXPECT_TRUE(GenerateText(o).ok());
}

TEST(GenerateText, PromptIdsOutsideTheVocabularyAreRefused) {
  // The tokenizer of a bigger vocabulary: an added token with id 700 (the model has 512).
  ModelCopy m;
  m.Write();
  nlohmann::json tok;
  {
    std::ifstream in(kStories + "/tokenizer.json");
    tok = nlohmann::json::parse(in);
  }
  tok["added_tokens"].push_back({{"id", 700},
                                 {"content", "<big>"},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false},
                                 {"special", true}});
  std::ofstream(fs::path(m.path()) / "tokenizer.json") << tok.dump();
  GenerateTextOptions o = Opts(2);
  o.model = m.path();
  o.prompt = "Once <big>";
  auto r = GenerateText(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  // (the tokenizer numbers its added token 512, the first id past its vocabulary)
  EXPECT_NE(r.status().message().find("is outside the model's vocabulary of 512"),
            std::string::npos)
      << r.status().ToString();
}

TEST(GenerateText, ToJsonHasTheCommandsKeys) {
  auto r = GenerateText(Opts(4));
  ASSERT_TRUE(r.ok());
  const nlohmann::json j = r->ToJson();
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"mean_nll", "new_tokens", "prompt", "prompt_tokens",
                                            "resident", "seconds", "seed", "stop", "temperature",
                                            "text", "tokens", "tokens_per_s", "top_p"}));
  EXPECT_EQ(j["new_tokens"], 4);
  EXPECT_EQ(j["prompt"], "Once upon a time");
  EXPECT_EQ(j["stop"], "max_new_tokens");
}

TEST(CompleteUtf8Prefix, HoldsBackAnIncompleteCharacter) {
  EXPECT_EQ(CompleteUtf8PrefixLength(""), 0u);
  EXPECT_EQ(CompleteUtf8PrefixLength("abc"), 3u);
  EXPECT_EQ(CompleteUtf8PrefixLength("a\xC3"), 1u);
  EXPECT_EQ(CompleteUtf8PrefixLength("a\xC3\xA9"), 3u);
  EXPECT_EQ(CompleteUtf8PrefixLength("x\xE2\x82"), 1u);
  EXPECT_EQ(CompleteUtf8PrefixLength("x\xE2\x82\xAC"), 4u);
  EXPECT_EQ(CompleteUtf8PrefixLength("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(CompleteUtf8PrefixLength("\xF0\x9F\x98\x80"), 4u);
}

}  // namespace
}  // namespace pq::engine
