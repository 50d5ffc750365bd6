// Writer and reader round trips: every dtype, golden bytes, layout/alignment, sharding with
// an index, atomic publication, and writer argument checks. Corrupt-input tests are in
// safetensors_bad_input_test.cc.
#include "pq/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "pq/io/io_test_util.h"

namespace pq::io {
namespace {

namespace fs = std::filesystem;

using testing::AsBytes;
using testing::Bytes;
using testing::ListDir;
using testing::RandomBytes;
using testing::ReadBytes;
using testing::TempDir;
using testing::WriteBytes;

constexpr DType kWritableDTypes[] = {DType::kF32,    DType::kF16, DType::kBF16, DType::kF8E4M3,
                                     DType::kF8E5M2, DType::kU8,  DType::kI8,   DType::kI32,
                                     DType::kI64,    DType::kF64, DType::kBool};

std::unique_ptr<CheckpointWriter> MakeWriter(const std::string& dir, WriterOptions o = {}) {
  auto w = CheckpointWriter::Create(dir, o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : nullptr;
}

std::unique_ptr<CheckpointReader> MustOpen(const std::string& path) {
  auto r = CheckpointReader::Open(path);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

std::string AsString(std::span<const uint8_t> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

uint64_t HeaderLength(const std::string& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(file[static_cast<size_t>(i)]);
  return n;
}

struct Spec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::vector<Spec> EveryDTypeSpecs() {
  std::vector<Spec> specs;
  uint32_t seed = 1;
  for (DType t : kWritableDTypes) {
    const std::string base(DTypeName(t));
    const size_t es = DTypeSize(t);
    specs.push_back({base + ".matrix", t, {2, 3}, RandomBytes(6 * es, seed++)});
    specs.push_back({base + ".scalar", t, {}, RandomBytes(es, seed++)});
    specs.push_back({base + ".empty", t, {0, 4}, ""});
    specs.push_back({base + ".empty_tail", t, {3, 0}, ""});
    specs.push_back({base + ".vector", t, {5}, RandomBytes(5 * es, seed++)});
  }
  return specs;
}

void ExpectMatches(const CheckpointReader& r, const std::vector<Spec>& specs) {
  ASSERT_EQ(r.names().size(), specs.size());
  for (const Spec& s : specs) {
    const TensorInfo* t = r.Find(s.name);
    ASSERT_NE(t, nullptr) << s.name;
    EXPECT_EQ(t->name, s.name);
    EXPECT_EQ(t->dtype, s.dtype) << s.name;
    EXPECT_EQ(t->shape, s.shape) << s.name;
    EXPECT_EQ(AsString(t->bytes), s.bytes) << s.name;
    EXPECT_EQ(t->offset % DTypeSize(t->dtype), 0u) << s.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->bytes.data()) % DTypeSize(t->dtype), 0u) << s.name;
  }
}

TEST(SafetensorsRoundTrip, EveryDTypeWithScalarsAndEmptyTensors) {
  TempDir tmp;
  const std::string out = tmp / "ckpt";
  const std::vector<Spec> specs = EveryDTypeSpecs();
  auto w = MakeWriter(out);
  ASSERT_NE(w, nullptr);
  uint64_t total = 0;
  for (const Spec& s : specs) {
    ASSERT_TRUE(w->AddTensor(s.name, s.dtype, s.shape, AsBytes(s.bytes)).ok()) << s.name;
    total += s.bytes.size();
  }
  EXPECT_EQ(w->total_tensor_bytes(), total);
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_EQ(ListDir(out), std::vector<std::string>{"model.safetensors"});

  auto r = MustOpen(out);
  ASSERT_NE(r, nullptr);
  ExpectMatches(*r, specs);
  EXPECT_EQ(r->dir(), out);
  EXPECT_EQ(r->files(), std::vector<std::string>{tmp / "ckpt/model.safetensors"});
  EXPECT_EQ(r->metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_TRUE(std::is_sorted(r->names().begin(), r->names().end()));
  // Opening the file itself gives the same tensors and its directory.
  auto r2 = MustOpen(tmp / "ckpt/model.safetensors");
  ASSERT_NE(r2, nullptr);
  ExpectMatches(*r2, specs);
  EXPECT_EQ(r2->dir(), out);
}

TEST(SafetensorsRoundTrip, ReadAsF32ConvertsEveryDType) {
  TempDir tmp;
  auto w = MakeWriter(tmp / "c");
  ASSERT_NE(w, nullptr);
  auto add = [&](const std::string& name, DType t, std::vector<int64_t> shape, std::string b) {
    ASSERT_TRUE(w->AddTensor(name, t, std::move(shape), AsBytes(b)).ok()) << name;
  };
  float f32[2] = {1.5f, -2.25f};
  double f64 = 2.5;
  int32_t i32 = -7;
  int64_t i64 = int64_t{1} << 40;
  add("f32", DType::kF32, {2}, std::string(reinterpret_cast<const char*>(f32), 8));
  add("f64", DType::kF64, {}, std::string(reinterpret_cast<const char*>(&f64), 8));
  add("bf16", DType::kBF16, {2}, Bytes({0xc0, 0x3f, 0x00, 0xc0}));  // 1.5, -2
  add("f16", DType::kF16, {1}, Bytes({0x00, 0x3e}));                // 1.5
  add("e4m3", DType::kF8E4M3, {3}, Bytes({0x7e, 0x73, 0xeb}));      // 448, 176, -88
  add("e5m2", DType::kF8E5M2, {2}, Bytes({0x3c, 0xc0}));            // 1, -2
  add("u8", DType::kU8, {1}, Bytes({200}));
  add("i8", DType::kI8, {1}, Bytes({0xfb}));  // -5
  add("i32", DType::kI32, {}, std::string(reinterpret_cast<const char*>(&i32), 4));
  add("i64", DType::kI64, {1}, std::string(reinterpret_cast<const char*>(&i64), 8));
  add("bool", DType::kBool, {2}, Bytes({0, 1}));
  add("empty", DType::kBF16, {0}, "");
  ASSERT_TRUE(w->Commit().ok());
  auto r = MustOpen(tmp / "c");
  ASSERT_NE(r, nullptr);
  const std::map<std::string, std::vector<float>> want = {{"f32", {1.5f, -2.25f}},
                                                          {"f64", {2.5f}},
                                                          {"bf16", {1.5f, -2.0f}},
                                                          {"f16", {1.5f}},
                                                          {"e4m3", {448, 176, -88}},
                                                          {"e5m2", {1, -2}},
                                                          {"u8", {200}},
                                                          {"i8", {-5}},
                                                          {"i32", {-7}},
                                                          {"i64", {1099511627776.0f}},
                                                          {"bool", {0, 1}},
                                                          {"empty", {}}};
  for (const auto& [name, values] : want) {
    auto t = r->Get(name);
    ASSERT_TRUE(t.ok()) << name;
    auto v = ReadAsF32(**t);
    ASSERT_TRUE(v.ok()) << name;
    EXPECT_EQ(*v, values) << name;
  }
  // A hand-made TensorInfo whose bytes do not match its shape is refused.
  TensorInfo bad = **r->Get("f32");
  bad.shape = {3};
  EXPECT_FALSE(ReadAsF32(bad).ok());
}

// The exact bytes of a small file: layout by element size descending then name, compact
// header in layout order, spaces to a multiple of 8.
TEST(SafetensorsWriter, GoldenBytes) {
  TempDir tmp;
  auto w = MakeWriter(tmp / "g");
  ASSERT_NE(w, nullptr);
  // Added in an order unrelated to the layout on purpose.
  ASSERT_TRUE(w->AddTensor("a", DType::kU8, {3}, AsBytes(Bytes({1, 2, 3}))).ok());
  ASSERT_TRUE(w->AddTensor("c", DType::kBF16, {2}, AsBytes(Bytes({0x80, 0x3f, 0x00, 0xc0}))).ok());
  ASSERT_TRUE(w->AddTensor("e", DType::kF16, {0, 3}, {}).ok());
  ASSERT_TRUE(w->AddTensor("b", DType::kF32, {1}, AsBytes(Bytes({0x00, 0x00, 0x80, 0x3f}))).ok());
  ASSERT_TRUE(w->AddTensor("s", DType::kI64, {}, AsBytes(Bytes({5, 0, 0, 0, 0, 0, 0, 0}))).ok());
  ASSERT_TRUE(w->Commit().ok());

  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
                             R"("c":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},)"
                             R"("e":{"dtype":"F16","shape":[0,3],"data_offsets":[16,16]},)"
                             R"("a":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}})";
  ASSERT_EQ(header.size(), 305u);
  const std::string expected = Bytes({0x38, 0x01, 0, 0, 0, 0, 0, 0}) +  // N = 312
                               header + std::string(7, ' ') +
                               Bytes({5, 0, 0, 0, 0, 0, 0, 0}) +  // s
                               Bytes({0x00, 0x00, 0x80, 0x3f}) +  // b
                               Bytes({0x80, 0x3f, 0x00, 0xc0}) +  // c
                               Bytes({1, 2, 3});                  // a
  ASSERT_EQ(expected.size(), 339u);
  EXPECT_EQ(ReadBytes(tmp / "g/model.safetensors"), expected);
}

TEST(SafetensorsWriter, OutputIsIndependentOfInsertionOrder) {
  TempDir tmp;
  std::vector<Spec> specs = EveryDTypeSpecs();
  for (const char* dir : {"fwd", "rev"}) {
    auto w = MakeWriter(tmp / dir);
    ASSERT_NE(w, nullptr);
    for (const Spec& s : specs)
      ASSERT_TRUE(w->AddTensor(s.name, s.dtype, s.shape, AsBytes(s.bytes)).ok());
    ASSERT_TRUE(w->Commit().ok());
    std::reverse(specs.begin(), specs.end());
  }
  EXPECT_EQ(ReadBytes(tmp / "fwd/model.safetensors"), ReadBytes(tmp / "rev/model.safetensors"));
}

TEST(SafetensorsWriter, HeaderIsPaddedWithSpacesAndTensorsAreAligned) {
  TempDir tmp;
  // Odd sizes so that a naive insertion-order layout would misalign.
  const std::vector<Spec> specs = {
      {"z.u8", DType::kU8, {3}, RandomBytes(3, 1)},
      {"y.bf16", DType::kBF16, {3}, RandomBytes(6, 2)},
      {"x.f32", DType::kF32, {1}, RandomBytes(4, 3)},
      {"w.i64", DType::kI64, {2}, RandomBytes(16, 4)},
      {"v.e4m3", DType::kF8E4M3, {5}, RandomBytes(5, 5)},
      {"u.f16", DType::kF16, {1}, RandomBytes(2, 6)},
      {"t.f64", DType::kF64, {1}, RandomBytes(8, 7)},
      // Names that need JSON escaping and non-ASCII UTF-8.
      {"q\"uote\\back\nslash\x01", DType::kI32, {1}, RandomBytes(4, 8)},
      {"\xc3\xa9t\xc3\xa9.\xe2\x82\xac", DType::kU8, {1}, RandomBytes(1, 9)},
  };
  for (size_t pad = 0; pad < 8; ++pad) {
    const std::string dir = tmp / std::string("p").append(1, static_cast<char>('0' + pad));
    auto w = MakeWriter(dir);
    ASSERT_NE(w, nullptr);
    // A name of varying length makes the unpadded header length take every value mod 8.
    std::vector<Spec> all = specs;
    all.push_back({std::string("n").append(pad, 'x'), DType::kU8, {1}, "A"});
    for (const Spec& s : all)
      ASSERT_TRUE(w->AddTensor(s.name, s.dtype, s.shape, AsBytes(s.bytes)).ok());
    ASSERT_TRUE(w->Commit().ok());

    const std::string file = ReadBytes(dir + "/model.safetensors");
    const uint64_t n = HeaderLength(file);
    EXPECT_EQ(n % 8, 0u);
    const std::string header = file.substr(8, n);
    const size_t close = header.find_last_of('}');
    ASSERT_NE(close, std::string::npos);
    EXPECT_LT(n - close - 1, 8u);
    EXPECT_EQ(header.substr(close + 1), std::string(n - close - 1, ' '));
    auto parsed = nlohmann::json::parse(header.substr(0, close + 1), nullptr, false);
    ASSERT_FALSE(parsed.is_discarded());

    auto r = MustOpen(dir);
    ASSERT_NE(r, nullptr);
    ExpectMatches(*r, all);
    // In offset order, element sizes never increase.
    std::vector<const TensorInfo*> by_offset;
    for (const std::string& name : r->names()) by_offset.push_back(r->Find(name));
    std::sort(by_offset.begin(), by_offset.end(),
              [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      EXPECT_GE(DTypeSize(by_offset[i - 1]->dtype), DTypeSize(by_offset[i]->dtype));
    }
  }
}

TEST(SafetensorsWriter, ShardsWithIndexAndReadsBack) {
  TempDir tmp;
  const std::string out = tmp / "sharded";
  WriterOptions o;
  o.max_shard_bytes = 100;
  auto w = MakeWriter(out, o);
  ASSERT_NE(w, nullptr);
  std::vector<Spec> specs;
  for (int i = 0; i < 10; ++i) {  // 40 bytes each: two per shard
    specs.push_back({"layer." + std::to_string(i) + ".weight",
                     DType::kF32,
                     {10},
                     RandomBytes(40, 100 + static_cast<uint32_t>(i))});
  }
  specs.push_back({"big", DType::kBF16, {150}, RandomBytes(300, 7)});  // alone in a shard
  specs.push_back({"tail", DType::kU8, {0}, ""});
  for (const Spec& s : specs)
    ASSERT_TRUE(w->AddTensor(s.name, s.dtype, s.shape, AsBytes(s.bytes)).ok());
  EXPECT_EQ(w->total_tensor_bytes(), 700u);
  ASSERT_TRUE(w->Commit().ok());

  const std::vector<std::string> want_files = {
      "model-00001-of-00006.safetensors", "model-00002-of-00006.safetensors",
      "model-00003-of-00006.safetensors", "model-00004-of-00006.safetensors",
      "model-00005-of-00006.safetensors", "model-00006-of-00006.safetensors",
      "model.safetensors.index.json"};
  EXPECT_EQ(ListDir(out), want_files);

  const std::string index_text = ReadBytes(out + "/model.safetensors.index.json");
  auto index = nlohmann::json::parse(index_text, nullptr, false);
  ASSERT_TRUE(index.is_object());
  EXPECT_EQ(index["metadata"]["total_size"], 700);
  ASSERT_EQ(index["weight_map"].size(), specs.size());
  EXPECT_EQ(index["weight_map"]["layer.0.weight"], "model-00001-of-00006.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.1.weight"], "model-00001-of-00006.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.2.weight"], "model-00002-of-00006.safetensors");
  EXPECT_EQ(index["weight_map"]["big"], "model-00006-of-00006.safetensors");
  EXPECT_EQ(index["weight_map"]["tail"], "model-00006-of-00006.safetensors");
  EXPECT_EQ(index_text, index.dump(2) + "\n");  // pretty-printed, sorted keys

  for (size_t i = 0; i + 1 < want_files.size(); ++i) {
    const std::string file = ReadBytes(out + "/" + want_files[i]);
    const uint64_t data = file.size() - 8 - HeaderLength(file);
    EXPECT_TRUE(data <= 100 || i == 5) << want_files[i] << " has " << data << " data bytes";
    EXPECT_NE(MustOpen(out + "/" + want_files[i]), nullptr);
  }

  auto r = MustOpen(out);
  ASSERT_NE(r, nullptr);
  ExpectMatches(*r, specs);
  EXPECT_EQ(r->files().size(), 6u);
  EXPECT_EQ(r->Find("big")->file, out + "/model-00006-of-00006.safetensors");
}

TEST(SafetensorsWriter, NothingAppearsUntilCommitAndAbandonedWritesAreRemoved) {
  TempDir tmp;
  const std::string out = tmp / "out";
  {
    WriterOptions o;
    o.max_shard_bytes = 8;  // forces closed shards inside the temp dir
    auto w = MakeWriter(out, o);
    ASSERT_NE(w, nullptr);
    for (const char* name : {"t0", "t1", "t2"}) {
      ASSERT_TRUE(w->AddTensor(name, DType::kF32, {2}, AsBytes(RandomBytes(8, 1))).ok());
    }
    ASSERT_TRUE(w->AddFile("config.json", "{}").ok());
    EXPECT_FALSE(fs::exists(out));
    const std::vector<std::string> entries = ListDir(tmp.path());
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].rfind(".out.tmp-", 0), 0u) << entries[0];
  }
  EXPECT_TRUE(ListDir(tmp.path()).empty());  // temp dir removed by the destructor
}

TEST(SafetensorsWriter, CommitPublishesAndLeavesNoTemporaries) {
  TempDir tmp;
  const std::string out = tmp / "out";
  auto w = MakeWriter(out);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->AddTensor("x", DType::kBF16, {2}, AsBytes(RandomBytes(4, 3))).ok());
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_EQ(ListDir(tmp.path()), std::vector<std::string>{"out"});
  EXPECT_EQ(ListDir(out), std::vector<std::string>{"model.safetensors"});
  // The writer is finished: further calls fail, and destroying it keeps the output.
  EXPECT_FALSE(w->AddTensor("y", DType::kU8, {1}, AsBytes("a")).ok());
  EXPECT_FALSE(w->AddFile("a.txt", "a").ok());
  EXPECT_FALSE(w->Commit().ok());
  w.reset();
  EXPECT_EQ(ListDir(out), std::vector<std::string>{"model.safetensors"});
}

TEST(SafetensorsWriter, RefusesNonEmptyOutputUnlessOverwrite) {
  TempDir tmp;
  const std::string out = tmp / "out";
  fs::create_directories(out);
  WriteBytes(out + "/old.txt", "old");
  auto refused = CheckpointWriter::Create(out);
  PQ_EXPECT_ERROR(refused.status(), out, "not empty", "--overwrite");
  EXPECT_EQ(ListDir(tmp.path()), std::vector<std::string>{"out"});
  EXPECT_EQ(ReadBytes(out + "/old.txt"), "old");

  WriterOptions o;
  o.overwrite = true;
  auto w = MakeWriter(out, o);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->AddTensor("x", DType::kU8, {1}, AsBytes("a")).ok());
  EXPECT_EQ(ReadBytes(out + "/old.txt"), "old");  // untouched until Commit
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_EQ(ListDir(out), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(ListDir(tmp.path()), std::vector<std::string>{"out"});  // old copy deleted
}

TEST(SafetensorsWriter, AcceptsAnEmptyExistingDirectory) {
  TempDir tmp;
  const std::string out = tmp / "empty";
  fs::create_directories(out);
  auto w = MakeWriter(out);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Commit().ok());
  auto r = MustOpen(out);  // no tensors: still a valid (empty) checkpoint
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->names().empty());
}

TEST(SafetensorsWriter, RefusesBadOutputPaths) {
  TempDir tmp;
  WriteBytes(tmp / "file", "x");
  PQ_EXPECT_ERROR(CheckpointWriter::Create(tmp / "file").status(), "file", "not a directory");
  PQ_EXPECT_ERROR(CheckpointWriter::Create("").status(), "empty");
  WriterOptions o;
  o.max_shard_bytes = 0;
  PQ_EXPECT_ERROR(CheckpointWriter::Create(tmp / "x", o).status(), "max_shard_bytes");
  // A trailing slash names the same directory.
  auto w = MakeWriter(tmp / "slash/");
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_TRUE(fs::exists(tmp / "slash/model.safetensors"));
}

TEST(SafetensorsWriter, RejectsBadTensorsAndStaysUsable) {
  TempDir tmp;
  auto w = MakeWriter(tmp / "o");
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->AddTensor("x.weight", DType::kBF16, {2, 3}, AsBytes(RandomBytes(12, 1))).ok());
  PQ_EXPECT_ERROR(w->AddTensor("x.weight", DType::kU8, {1}, AsBytes("a")), "\"x.weight\"", "twice");
  PQ_EXPECT_ERROR(w->AddTensor("y", DType::kBF16, {2, 3}, AsBytes(RandomBytes(10, 1))), "\"y\"",
                  "12 bytes", "10");
  PQ_EXPECT_ERROR(w->AddTensor("neg", DType::kU8, {-1}, {}), "\"neg\"", "negative");
  PQ_EXPECT_ERROR(w->AddTensor("e8", DType::kF8E8M0, {1}, AsBytes("a")), "\"e8\"", "F8_E8M0");
  PQ_EXPECT_ERROR(w->AddTensor("huge", DType::kF32, {int64_t{1} << 62, 8}, {}), "\"huge\"");
  PQ_EXPECT_ERROR(w->AddTensor("", DType::kU8, {1}, AsBytes("a")), "name");
  PQ_EXPECT_ERROR(w->AddTensor("__metadata__", DType::kU8, {1}, AsBytes("a")), "name");
  PQ_EXPECT_ERROR(w->AddTensor("bad\xff", DType::kU8, {1}, AsBytes("a")), "UTF-8");
  ASSERT_TRUE(w->Commit().ok());
  auto r = MustOpen(tmp / "o");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->names(), std::vector<std::string>{"x.weight"});
}

TEST(SafetensorsWriter, AddsAndCopiesOtherFiles) {
  TempDir tmp;
  WriteBytes(tmp / "src.json", R"({"vocab": 3})");
  auto w = MakeWriter(tmp / "o");
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->AddFile("config.json", R"({"a": 1})").ok());
  ASSERT_TRUE(w->AddFile("sub/dir/notes.txt", "hi").ok());
  ASSERT_TRUE(w->CopyFile(tmp / "src.json", "tokenizer.json").ok());
  ASSERT_TRUE(w->CopyFile(tmp / "src.json", "sub/copy.json").ok());
  for (const char* bad : {"../x", "/abs", "a/../b", "a//b", "./a", "", "a/", "model.safetensors",
                          "model.safetensors.index.json", "model-00001-of-00002.safetensors"}) {
    PQ_EXPECT_ERROR(w->AddFile(bad, "x"), "AddFile");
  }
  PQ_EXPECT_ERROR(w->AddFile("config.json", "again"), "config.json", "already");
  PQ_EXPECT_ERROR(w->CopyFile(tmp / "missing.json", "m.json"), "missing.json");
  ASSERT_TRUE(w->AddTensor("t", DType::kU8, {1}, AsBytes("a")).ok());
  ASSERT_TRUE(w->Commit().ok());
  const std::string o = tmp / "o";
  EXPECT_EQ(ReadBytes(o + "/config.json"), R"({"a": 1})");
  EXPECT_EQ(ReadBytes(o + "/sub/dir/notes.txt"), "hi");
  EXPECT_EQ(ReadBytes(o + "/tokenizer.json"), R"({"vocab": 3})");
  EXPECT_EQ(ReadBytes(o + "/sub/copy.json"), R"({"vocab": 3})");
  EXPECT_EQ(ListDir(o), (std::vector<std::string>{"config.json", "model.safetensors", "sub",
                                                  "tokenizer.json"}));
}

// ---------------------------------------------------------------------------------------
// Locating the checkpoint inside a directory.

void WriteSingle(const std::string& path, const std::string& tensor) {
  const std::string h = R"({")" + tensor + R"(":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  WriteBytes(path, testing::MakeSafetensors(h, "ab"));
}

TEST(SafetensorsReader, FindsTheCheckpointInADirectory) {
  TempDir tmp;
  fs::create_directories(tmp / "one");
  WriteSingle(tmp / "one/weights.safetensors", "w");
  auto r = MustOpen(tmp / "one");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->names(), std::vector<std::string>{"w"});
  EXPECT_TRUE(r->metadata().empty());

  fs::create_directories(tmp / "pref");
  WriteSingle(tmp / "pref/model.safetensors", "m");
  WriteSingle(tmp / "pref/other.safetensors", "o");
  r = MustOpen(tmp / "pref");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->names(), std::vector<std::string>{"m"});

  fs::create_directories(tmp / "two");
  WriteSingle(tmp / "two/a.safetensors", "a");
  WriteSingle(tmp / "two/b.safetensors", "b");
  PQ_EXPECT_ERROR(CheckpointReader::Open(tmp / "two").status(), tmp / "two", "a.safetensors",
                  "b.safetensors", "model.safetensors.index.json");

  fs::create_directories(tmp / "none");
  WriteBytes(tmp / "none/config.json", "{}");
  auto none = CheckpointReader::Open(tmp / "none");
  PQ_EXPECT_ERROR(none.status(), tmp / "none", "no model.safetensors");
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);

  auto missing = CheckpointReader::Open(tmp / "nope");
  PQ_EXPECT_ERROR(missing.status(), tmp / "nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST(SafetensorsReader, GetNamesTheCheckpointWhenATensorIsMissing) {
  TempDir tmp;
  WriteSingle(tmp / "m.safetensors", "w");
  auto r = MustOpen(tmp / "m.safetensors");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->Find("nope"), nullptr);
  auto got = r->Get("nope");
  PQ_EXPECT_ERROR(got.status(), "m.safetensors", "\"nope\"");
  EXPECT_EQ(got.status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(r->Get("w").ok());
  EXPECT_EQ(AsString((*r->Get("w"))->bytes), "ab");
  EXPECT_EQ((*r->Get("w"))->numel(), 2);
}

}  // namespace
}  // namespace pq::io
