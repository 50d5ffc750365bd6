#include "pq/io/llama2c.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "pq/core/check.h"
#include "pq/core/log.h"
#include "pq/core/minifloat.h"
#include "pq/io/file_util.h"
#include "pq/io/safetensors.h"

namespace pq::io {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr uint32_t kLlama2cMagic = 0x616b3432;       // "ak42": llama2.c export.py version >= 1
constexpr std::string_view kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's space
constexpr int kNumSpecial = 3;                       // <unk>, <s>, </s>
constexpr int kFirstPiece = kNumSpecial + 256;       // after the byte tokens

int32_t LoadI32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// a * b, saturating at UINT64_MAX.
uint64_t SatMul(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? std::numeric_limits<uint64_t>::max() : r;
}
uint64_t SatAdd(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<uint64_t>::max() : r;
}

std::string DimsString(const Llama2cConfig& c) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d vocab_size=%d%s "
                "seq_len=%d",
                c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                c.shared_classifier ? c.vocab_size : -c.vocab_size,
                c.shared_classifier ? " (shared classifier)" : " (unshared classifier)", c.seq_len);
  return buf;
}

// Reads exactly `n` bytes at `offset`.
Status PreadAll(int fd, uint64_t offset, std::span<uint8_t> out, const std::string& path) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t r =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(path, "read", errno);
    }
    if (r == 0) {
      return DataLoss(path + ": unexpected end of file at byte " + std::to_string(offset + done) +
                      " (was the file truncated while reading?)");
    }
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    int n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(n) >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= n; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + static_cast<size_t>(k)]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    static constexpr uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<size_t>(n) + 1;
  }
  return true;
}

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
std::string HfPiece(const Llama2cVocab& vocab, size_t id) {
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

// ---- Checkpoint reading ----

struct BinFile {
  std::string path;
  UniqueFd fd;
  Llama2cConfig config;
};

Result<BinFile> OpenBin(const std::string& path) {
  BinFile f;
  f.path = path;
  PQ_ASSIGN_OR_RETURN(f.fd, OpenFile(path, O_RDONLY));
  struct stat st;
  if (::fstat(f.fd.get(), &st) != 0) return ErrnoError(path, "stat", errno);
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgument(path + ": not a regular file (expected a llama2.c .bin checkpoint)");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  uint8_t header[kLlama2cHeaderBytes] = {};
  if (size >= kLlama2cHeaderBytes) {
    PQ_RETURN_IF_ERROR(PreadAll(f.fd.get(), 0, header, path));
  }
  PQ_ASSIGN_OR_RETURN(
      f.config, ParseLlama2cHeader(
                    std::span<const uint8_t>(header, std::min<uint64_t>(size, kLlama2cHeaderBytes)),
                    size, path));
  return f;
}

// Reads consecutive llama2.c tensors, checking every value is finite.
class TensorCursor {
 public:
  explicit TensorCursor(const BinFile& f) : f_(f) {}

  // Reads `count` floats starting `float_offset` floats after the header.
  Result<std::vector<float>> Read(uint64_t float_offset, uint64_t count, const std::string& what) {
    std::vector<float> v(count);
    PQ_RETURN_IF_ERROR(PreadAll(f_.fd.get(), kLlama2cHeaderBytes + 4 * float_offset,
                                std::span<uint8_t>(reinterpret_cast<uint8_t*>(v.data()), 4 * count),
                                f_.path));
    for (uint64_t i = 0; i < count; ++i) {
      if (!std::isfinite(v[i])) {
        return DataLoss(f_.path + ": " + what + " has a non-finite value (" + std::to_string(v[i]) +
                        ") at element " + std::to_string(i) + "; the checkpoint is corrupt");
      }
    }
    return v;
  }

 private:
  const BinFile& f_;
};

Status AddF32Tensor(CheckpointWriter& w, const std::string& name, std::vector<int64_t> shape,
                    const std::vector<float>& values, DType dtype, int64_t* params) {
  *params += static_cast<int64_t>(values.size());
  if (dtype == DType::kF32) {
    return w.AddTensor(name, DType::kF32, std::move(shape),
                       std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()),
                                                values.size() * 4));
  }
  std::vector<uint16_t> bf(values.size());
  for (size_t i = 0; i < values.size(); ++i) bf[i] = F32ToBf16(values[i]);
  return w.AddTensor(
      name, DType::kBF16, std::move(shape),
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bf.data()), bf.size() * 2));
}

// Region offsets (floats after the header) of the llama2.c layout.
struct Layout {
  uint64_t embed, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, cls;
};

Layout ComputeLayout(const Llama2cConfig& c) {
  const uint64_t D = static_cast<uint64_t>(c.dim), H = static_cast<uint64_t>(c.hidden_dim),
                 L = static_cast<uint64_t>(c.n_layers), V = static_cast<uint64_t>(c.vocab_size),
                 KV = static_cast<uint64_t>(c.kv_dim()), S = static_cast<uint64_t>(c.seq_len),
                 hd = static_cast<uint64_t>(c.head_dim());
  Layout l{};
  uint64_t o = 0;
  auto take = [&o](uint64_t n) {
    const uint64_t at = o;
    o = SatAdd(o, n);
    return at;
  };
  l.embed = take(SatMul(V, D));
  l.rms_att = take(SatMul(L, D));
  l.wq = take(SatMul(SatMul(L, D), D));
  l.wk = take(SatMul(SatMul(L, KV), D));
  l.wv = take(SatMul(SatMul(L, KV), D));
  l.wo = take(SatMul(SatMul(L, D), D));
  l.rms_ffn = take(SatMul(L, D));
  l.w1 = take(SatMul(SatMul(L, H), D));
  l.w2 = take(SatMul(SatMul(L, D), H));
  l.w3 = take(SatMul(SatMul(L, H), D));
  l.rms_final = take(D);
  l.freq = take(SatMul(S, hd));  // real and imag halves, seq_len x hd/2 each
  l.cls = take(c.shared_classifier ? 0 : SatMul(V, D));
  return l;
}

Status WriteTensors(const BinFile& bin, DType dtype, CheckpointWriter& w, int64_t* num_tensors,
                    int64_t* params) {
  const Llama2cConfig& c = bin.config;
  const Layout lay = ComputeLayout(c);
  const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size, KV = c.kv_dim(), hd = c.head_dim();
  const auto uD = static_cast<uint64_t>(D), uH = static_cast<uint64_t>(H),
             uKV = static_cast<uint64_t>(KV);
  TensorCursor cur(bin);
  auto emit = [&](const std::string& name, std::vector<int64_t> shape,
                  const std::vector<float>& v) -> Status {
    ++*num_tensors;
    return AddF32Tensor(w, name, std::move(shape), v, dtype, params).WithContext("writing " + name);
  };

  PQ_ASSIGN_OR_RETURN(auto embed,
                      cur.Read(lay.embed, static_cast<uint64_t>(V) * uD, "token_embedding_table"));
  PQ_RETURN_IF_ERROR(emit("model.embed_tokens.weight", {V, D}, embed));
  embed = {};

  Progress progress("import-llama2c", static_cast<size_t>(c.n_layers));
  for (int32_t layer = 0; layer < c.n_layers; ++layer) {
    const auto l = static_cast<uint64_t>(layer);
    const std::string pre = "model.layers." + std::to_string(layer) + ".";
    const std::string in_layer = " of layer " + std::to_string(layer);
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.rms_att + l * uD, uD, "rms_att_weight" + in_layer));
      PQ_RETURN_IF_ERROR(emit(pre + "input_layernorm.weight", {D}, v));
    }
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.wq + l * uD * uD, uD * uD, "wq" + in_layer));
      std::vector<float> p(v.size());
      PermuteRopeRows(v, c.n_heads, hd, D, p);
      PQ_RETURN_IF_ERROR(emit(pre + "self_attn.q_proj.weight", {D, D}, p));
    }
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.wk + l * uKV * uD, uKV * uD, "wk" + in_layer));
      std::vector<float> p(v.size());
      PermuteRopeRows(v, c.n_kv_heads, hd, D, p);
      PQ_RETURN_IF_ERROR(emit(pre + "self_attn.k_proj.weight", {KV, D}, p));
    }
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.wv + l * uKV * uD, uKV * uD, "wv" + in_layer));
      PQ_RETURN_IF_ERROR(emit(pre + "self_attn.v_proj.weight", {KV, D}, v));
    }
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.wo + l * uD * uD, uD * uD, "wo" + in_layer));
      PQ_RETURN_IF_ERROR(emit(pre + "self_attn.o_proj.weight", {D, D}, v));
    }
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.rms_ffn + l * uD, uD, "rms_ffn_weight" + in_layer));
      PQ_RETURN_IF_ERROR(emit(pre + "post_attention_layernorm.weight", {D}, v));
    }
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.w1 + l * uH * uD, uH * uD, "w1" + in_layer));
      PQ_RETURN_IF_ERROR(emit(pre + "mlp.gate_proj.weight", {H, D}, v));
    }
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.w2 + l * uD * uH, uD * uH, "w2" + in_layer));
      PQ_RETURN_IF_ERROR(emit(pre + "mlp.down_proj.weight", {D, H}, v));
    }
    {
      PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.w3 + l * uH * uD, uH * uD, "w3" + in_layer));
      PQ_RETURN_IF_ERROR(emit(pre + "mlp.up_proj.weight", {H, D}, v));
    }
    progress.Advance();
  }
  progress.Finish();
  {
    PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.rms_final, uD, "rms_final_weight"));
    PQ_RETURN_IF_ERROR(emit("model.norm.weight", {D}, v));
  }
  if (!c.shared_classifier) {
    PQ_ASSIGN_OR_RETURN(auto v, cur.Read(lay.cls, static_cast<uint64_t>(V) * uD, "wcls"));
    PQ_RETURN_IF_ERROR(emit("lm_head.weight", {V, D}, v));
  }
  return Status::Ok();
}

}  // namespace

// ---- Header ----

uint64_t Llama2cConfig::NumFloats() const {
  if (dim <= 0 || n_heads <= 0 || n_kv_heads <= 0 || hidden_dim <= 0 || n_layers <= 0 ||
      vocab_size <= 0 || seq_len <= 0) {
    return 0;
  }
  const uint64_t classifier =
      shared_classifier ? 0 : SatMul(static_cast<uint64_t>(vocab_size), static_cast<uint64_t>(dim));
  return SatAdd(ComputeLayout(*this).cls, classifier);  // cls = offset of the classifier
}

Result<Llama2cConfig> ParseLlama2cHeader(std::span<const uint8_t> header, uint64_t file_size,
                                         const std::string& file_name) {
  const std::string bad = file_name + ": not a legacy (v0) llama2.c checkpoint: ";
  if (header.size() < kLlama2cHeaderBytes || file_size < kLlama2cHeaderBytes) {
    return DataLoss(bad + "the file is " + std::to_string(file_size) +
                    " bytes, shorter than the 28-byte header");
  }
  uint32_t magic;
  std::memcpy(&magic, header.data(), 4);
  if (magic == kLlama2cMagic) {
    return InvalidArgument(file_name +
                           ": this is a llama2.c export of version >= 1 (magic \"ak42\"); only "
                           "the legacy v0 format that run.c reads is supported (re-export with "
                           "llama2.c export.py --version 0)");
  }
  const int32_t raw_vocab = LoadI32(header.data() + 20);
  Llama2cConfig c;
  c.dim = LoadI32(header.data());
  c.hidden_dim = LoadI32(header.data() + 4);
  c.n_layers = LoadI32(header.data() + 8);
  c.n_heads = LoadI32(header.data() + 12);
  c.n_kv_heads = LoadI32(header.data() + 16);
  c.seq_len = LoadI32(header.data() + 24);
  c.shared_classifier = raw_vocab > 0;
  c.vocab_size = raw_vocab == std::numeric_limits<int32_t>::min() ? 0 : std::abs(raw_vocab);

  const std::string dims = " (header: " + DimsString(c) + ")";
  const std::pair<const char*, int32_t> fields[] = {
      {"dim", c.dim},         {"hidden_dim", c.hidden_dim}, {"n_layers", c.n_layers},
      {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads}, {"vocab_size", c.vocab_size},
      {"seq_len", c.seq_len}};
  for (const auto& [name, value] : fields) {
    if (value <= 0) {
      const bool is_vocab = std::string_view(name) == "vocab_size";
      return DataLoss(bad + name + " must be " + (is_vocab ? "non-zero" : "positive") + dims);
    }
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    return DataLoss(bad + "n_heads must be a multiple of n_kv_heads" + dims);
  }
  if (c.dim % c.n_heads != 0) return DataLoss(bad + "dim must be a multiple of n_heads" + dims);
  if (c.head_dim() % 2 != 0) {
    return DataLoss(bad + "head_dim = dim / n_heads = " + std::to_string(c.head_dim()) +
                    " must be even for RoPE" + dims);
  }
  const uint64_t floats = c.NumFloats();
  const uint64_t want = SatAdd(kLlama2cHeaderBytes, SatMul(4, floats));
  if (want != file_size) {
    std::string msg = bad + "the file is " + std::to_string(file_size) + " bytes but its header (" +
                      DimsString(c) + ") implies 28 + 4 x " + std::to_string(floats) + " = " +
                      std::to_string(want) + " bytes";
    if (file_size < want) {
      msg += "; the file is truncated or the header is garbage";
    } else if (c.shared_classifier &&
               file_size == SatAdd(want, SatMul(SatMul(4, static_cast<uint64_t>(c.vocab_size)),
                                                static_cast<uint64_t>(c.dim)))) {
      msg +=
          "; the extra bytes are exactly an unshared classifier, but vocab_size is positive "
          "(llama2.c marks an unshared classifier with a negative vocab_size)";
    } else {
      msg += "; it has trailing data or the header is garbage";
    }
    return DataLoss(msg);
  }
  return c;
}

// ---- Tokenizer ----

Result<Llama2cVocab> ParseLlama2cTokenizer(std::span<const uint8_t> bytes,
                                           const std::string& file_name) {
  const std::string bad = file_name + ": not a valid llama2.c tokenizer.bin: ";
  if (bytes.size() < 4) {
    return DataLoss(bad + "the file is " + std::to_string(bytes.size()) +
                    " bytes, shorter than the 4-byte header");
  }
  Llama2cVocab v;
  v.max_token_length = LoadI32(bytes.data());
  if (v.max_token_length <= 0) {
    return DataLoss(bad + "max_token_length is " + std::to_string(v.max_token_length) +
                    ", must be positive");
  }
  size_t off = 4;
  while (off < bytes.size()) {
    const size_t id = v.pieces.size();
    const std::string entry = "entry " + std::to_string(id) + " at byte " + std::to_string(off);
    if (bytes.size() - off < 8) {
      return DataLoss(bad + entry + " is truncated (" + std::to_string(bytes.size() - off) +
                      " bytes left, need 8 for score and length)");
    }
    float score;
    std::memcpy(&score, bytes.data() + off, 4);
    const int32_t len = LoadI32(bytes.data() + off + 4);
    off += 8;
    if (!std::isfinite(score)) return DataLoss(bad + entry + " has a non-finite score");
    if (len < 0 || len > v.max_token_length) {
      return DataLoss(bad + entry + " has length " + std::to_string(len) +
                      ", outside [0, max_token_length=" + std::to_string(v.max_token_length) + "]");
    }
    if (bytes.size() - off < static_cast<size_t>(len)) {
      return DataLoss(bad + entry + " is truncated (needs " + std::to_string(len) +
                      " piece bytes, " + std::to_string(bytes.size() - off) + " left)");
    }
    std::string piece(reinterpret_cast<const char*>(bytes.data() + off), static_cast<size_t>(len));
    off += static_cast<size_t>(len);
    if (piece.find('\0') != std::string::npos) {
      return DataLoss(bad + entry + " contains a NUL byte");
    }
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
  }
  if (v.pieces.empty()) return DataLoss(bad + "it holds no tokens");
  return v;
}

Result<Llama2cVocab> ReadLlama2cTokenizer(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path, 1'000'000'000));
  return ParseLlama2cTokenizer(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()), path);
}

Result<std::string> MakeHfTokenizerJson(const Llama2cVocab& vocab, const std::string& file_name) {
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
    if (!ValidUtf8(p[i])) {
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

std::string MakeHfLlamaConfigJson(const Llama2cConfig& c, DType dtype) {
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

// ---- Import ----

Result<ImportSummary> ImportLlama2c(const std::string& bin_path, const std::string& tokenizer_path,
                                    const std::string& out_dir, const ImportOptions& options) {
  if (options.dtype != DType::kF32 && options.dtype != DType::kBF16) {
    return InvalidArgument("import-llama2c: --dtype must be F32 or BF16, not " +
                           std::string(DTypeName(options.dtype)));
  }
  if (out_dir.empty()) return InvalidArgument("import-llama2c: the output directory is empty");
  std::error_code ec;
  if (!options.overwrite && std::filesystem::exists(out_dir, ec)) {
    return InvalidArgument(out_dir + ": already exists; pass --overwrite to replace it");
  }

  // Validate both inputs completely before writing anything.
  PQ_ASSIGN_OR_RETURN(BinFile bin, OpenBin(bin_path));
  PQ_ASSIGN_OR_RETURN(Llama2cVocab vocab, ReadLlama2cTokenizer(tokenizer_path));
  if (vocab.pieces.size() != static_cast<size_t>(bin.config.vocab_size)) {
    return InvalidArgument(tokenizer_path + ": the tokenizer has " +
                           std::to_string(vocab.pieces.size()) + " tokens but the checkpoint " +
                           bin_path + " has vocab_size " + std::to_string(bin.config.vocab_size) +
                           "; pass the tokenizer the model was trained with");
  }
  PQ_ASSIGN_OR_RETURN(std::string tokenizer_json, MakeHfTokenizerJson(vocab, tokenizer_path));

  WriterOptions wopts;
  wopts.overwrite = options.overwrite;
  PQ_ASSIGN_OR_RETURN(auto writer, CheckpointWriter::Create(out_dir, wopts));
  ImportSummary s;
  s.out_dir = out_dir;
  s.config = bin.config;
  PQ_RETURN_IF_ERROR(WriteTensors(bin, options.dtype, *writer, &s.num_tensors, &s.num_params));
  const std::pair<std::string, std::string> files[] = {
      {"config.json", MakeHfLlamaConfigJson(bin.config, options.dtype)},
      {"tokenizer.json", std::move(tokenizer_json)},
      {"tokenizer_config.json", MakeHfTokenizerConfigJson(bin.config.seq_len)},
      {"special_tokens_map.json", MakeHfSpecialTokensMapJson()},
  };
  for (const auto& [name, contents] : files) {
    PQ_RETURN_IF_ERROR(writer->AddFile(name, contents));
    s.files.push_back(name);
  }
  PQ_RETURN_IF_ERROR(writer->CopyFile(tokenizer_path, "tokenizer.bin"));
  s.files.push_back("tokenizer.bin");
  s.tensor_bytes = writer->total_tensor_bytes();
  PQ_RETURN_IF_ERROR(writer->Commit());
  return s;
}

}  // namespace pq::io
