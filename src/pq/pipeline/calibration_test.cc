// Calibration sampling: reproducible, distinct chunks; text, JSON lines and pre-tokenized
// inputs; clear errors.
#include "pq/pipeline/calibration.h"

#include <gtest/gtest.h>

#include <set>

#include "pq/io/io_test_util.h"

namespace pq::pipeline {
namespace {

using io::testing::TempDir;
using io::testing::WriteBytes;

const std::string kModel = std::string(PQ_SOURCE_DIR) + "/models/stories260K";

TEST(Calibration, ChunksAreDistinctSeededAndStable) {
  const auto a = ChooseChunks(1000, 50, 1), b = ChooseChunks(1000, 50, 1),
             c = ChooseChunks(1000, 50, 2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 50u);
  for (int64_t k : a) EXPECT_TRUE(k >= 0 && k < 1000);
  // Pinned: the same seed must choose the same chunks on every platform and version (the
  // choice is part of a work dir's identity). Values from an independent Python rendering of
  // splitmix64 + rejection sampling + partial Fisher–Yates, as calibration.cc documents.
  EXPECT_EQ(ChooseChunks(10, 4, 0), (std::vector<int64_t>{5, 1, 9, 7}));
  EXPECT_EQ(ChooseChunks(100, 5, 42), (std::vector<int64_t>{13, 83, 86, 9, 2}));
  EXPECT_EQ(ChooseChunks(3, 5, 0).size(), 3u);  // all of them when asked for more
}

TEST(Calibration, TextJsonlAndTokensGiveTheSameSamples) {
  TempDir dir;
  std::string text, jsonl;
  for (int i = 0; i < 40; ++i) {
    const std::string doc = "Once upon a time there was a little cat number " + std::to_string(i) +
                            ". It liked to play in the sun with its friends.";
    text += doc + "\n\n";
    jsonl += "{\"text\": \"" + doc + "\", \"id\": " + std::to_string(i) + "}\n";
  }
  WriteBytes(dir / "c.txt", text);
  WriteBytes(dir / "c.jsonl", jsonl);
  CalibrationOptions o;
  o.samples = 6;
  o.seqlen = 32;
  o.seed = 3;
  o.input.text_file = dir / "c.txt";
  o.input.split = DocSplit::kParagraphs;
  auto t = LoadCalibration(kModel, o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->samples.size(), 6u);
  EXPECT_EQ(t->scored_tokens(), 6 * 32);
  for (const auto& s : t->samples) {
    ASSERT_EQ(s.ids.size(), 32u);
    for (size_t i = 0; i + 1 < s.ids.size(); ++i) EXPECT_EQ(s.targets[i], s.ids[i + 1]);
  }
  o.input.text_file = dir / "c.jsonl";
  o.input.split = DocSplit::kJsonl;
  auto j = LoadCalibration(kModel, o);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ(j->tokens_hash, t->tokens_hash);
  // Pre-tokenized: the same documents as ids (BOS still prepended by the loader).
  EvalInput plain;
  plain.text_file = dir / "c.txt";
  plain.split = DocSplit::kParagraphs;
  plain.add_bos = false;
  auto docs = LoadEvalDocuments(kModel, plain);
  ASSERT_TRUE(docs.ok());
  std::string ids;
  for (const auto& d : *docs) {
    for (int32_t id : d) ids += std::to_string(id) + " ";
    ids += "\n";
  }
  WriteBytes(dir / "c.ids", ids);
  CalibrationOptions tok = o;
  tok.input = EvalInput{};
  tok.input.tokens_file = dir / "c.ids";
  auto k = LoadCalibration(kModel, tok);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(k->tokens_hash, t->tokens_hash);
  o.seed = 4;
  EXPECT_NE(LoadCalibration(kModel, o)->tokens_hash, t->tokens_hash);

  WriteBytes(dir / "bad.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
  o.input.text_file = dir / "bad.jsonl";
  auto bad = LoadCalibration(kModel, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("record 2"), std::string::npos) << bad.status().message();
  o.input.text_file = dir / "c.txt";
  o.input.split = DocSplit::kParagraphs;
  o.samples = 1000;
  auto few = LoadCalibration(kModel, o);
  ASSERT_FALSE(few.ok());
  EXPECT_NE(few.status().message().find("lower --samples"), std::string::npos);
}

// The Hessian samples (calibration.h): further chunks of the same shuffle, disjoint from the
// samples, which stay the same whatever their number; auto takes as many as the samples where
// the input has them and none where fewer than `samples` are left.
TEST(Calibration, HessianSamplesAreDisjointAndLeaveTheSamplesAlone) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 60; ++i)
    text += "Once upon a time there was a little dog number " + std::to_string(i) +
            ". It liked to run in the park with its friends.\n\n";
  WriteBytes(dir / "c.txt", text);
  CalibrationOptions o;
  o.samples = 4;
  o.seqlen = 32;
  o.seed = 5;
  o.input.text_file = dir / "c.txt";
  o.input.split = DocSplit::kParagraphs;
  o.hessian_samples = 0;
  auto none = LoadCalibration(kModel, o);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->hessian_samples.empty());
  o.hessian_samples = CalibrationOptions::kAutoHessianSamples;
  auto aut = LoadCalibration(kModel, o);
  ASSERT_TRUE(aut.ok()) << aut.status().ToString();
  EXPECT_EQ(aut->hessian_samples.size(), 4u);
  EXPECT_EQ(aut->tokens_hash, none->tokens_hash);
  std::set<std::vector<int32_t>> seen;
  for (size_t i = 0; i < aut->samples.size(); ++i) {
    EXPECT_EQ(aut->samples[i].ids, none->samples[i].ids);
    seen.insert(aut->samples[i].ids);
  }
  for (const auto& s : aut->hessian_samples) {
    ASSERT_EQ(s.ids.size(), 32u);
    for (size_t i = 0; i + 1 < s.ids.size(); ++i) EXPECT_EQ(s.targets[i], s.ids[i + 1]);
    EXPECT_TRUE(seen.insert(s.ids).second) << "a Hessian sample repeats a chunk";
  }
  o.hessian_samples = 7;  // the first 4 of them are auto's
  auto seven = LoadCalibration(kModel, o);
  ASSERT_TRUE(seven.ok());
  ASSERT_EQ(seven->hessian_samples.size(), 7u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(seven->hessian_samples[i].ids, aut->hessian_samples[i].ids);
  // More than the input holds: an error naming the flag; auto falls back to none.
  o.hessian_samples = 100000;
  auto many = LoadCalibration(kModel, o);
  ASSERT_FALSE(many.ok());
  EXPECT_NE(many.status().message().find("--hessian-samples"), std::string::npos)
      << many.status().message();
  const int64_t chunks = aut->stream_tokens / 33;
  o.samples = chunks - 3;  // only 3 chunks left: fewer than the samples
  o.hessian_samples = CalibrationOptions::kAutoHessianSamples;
  auto short_input = LoadCalibration(kModel, o);
  ASSERT_TRUE(short_input.ok()) << short_input.status().ToString();
  EXPECT_TRUE(short_input->hessian_samples.empty());
}

}  // namespace
}  // namespace pq::pipeline
