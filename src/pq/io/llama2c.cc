#include "pq/io/llama2c.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "pq/io/file_util.h"

namespace pq::io {
namespace {

constexpr uint32_t kLlama2cMagic = 0x616b3432;  // "ak42": llama2.c export.py version >= 1

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

// Where tensor `t` lies: its first float after the header (layer 0), floats per copy, its
// llama2.c name for errors, and whether it has one copy per layer.
struct Region {
  uint64_t offset;
  uint64_t count;
  const char* name;
  bool per_layer;
};

Region RegionOf(const Llama2cConfig& c, Llama2cTensor t) {
  const Layout lay = ComputeLayout(c);
  const auto D = static_cast<uint64_t>(c.dim), H = static_cast<uint64_t>(c.hidden_dim),
             V = static_cast<uint64_t>(c.vocab_size), KV = static_cast<uint64_t>(c.kv_dim());
  using T = Llama2cTensor;
  switch (t) {
    case T::kTokenEmbedding:
      return {lay.embed, V * D, "token_embedding_table", false};
    case T::kRmsAtt:
      return {lay.rms_att, D, "rms_att_weight", true};
    case T::kWq:
      return {lay.wq, D * D, "wq", true};
    case T::kWk:
      return {lay.wk, KV * D, "wk", true};
    case T::kWv:
      return {lay.wv, KV * D, "wv", true};
    case T::kWo:
      return {lay.wo, D * D, "wo", true};
    case T::kRmsFfn:
      return {lay.rms_ffn, D, "rms_ffn_weight", true};
    case T::kW1:
      return {lay.w1, H * D, "w1", true};
    case T::kW2:
      return {lay.w2, D * H, "w2", true};
    case T::kW3:
      return {lay.w3, H * D, "w3", true};
    case T::kRmsFinal:
      return {lay.rms_final, D, "rms_final_weight", false};
    case T::kClassifier:
      return {lay.cls, c.shared_classifier ? 0 : V * D, "wcls", false};
  }
  return {0, 0, "?", false};
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

// ---- Checkpoint reading ----

Result<Llama2cReader> Llama2cReader::Open(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(path, "stat", errno);
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgument(path + ": not a regular file (expected a llama2.c .bin checkpoint)");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  uint8_t header[kLlama2cHeaderBytes] = {};
  if (size >= kLlama2cHeaderBytes) {
    PQ_RETURN_IF_ERROR(PreadAll(fd.get(), 0, header, path));
  }
  PQ_ASSIGN_OR_RETURN(const Llama2cConfig config,
                      ParseLlama2cHeader(std::span<const uint8_t>(
                                             header, std::min<uint64_t>(size, kLlama2cHeaderBytes)),
                                         size, path));
  return Llama2cReader(path, std::move(fd), config);
}

Result<std::vector<float>> Llama2cReader::Read(Llama2cTensor t, int32_t layer) const {
  const Region r = RegionOf(config_, t);
  const bool layer_ok = r.per_layer ? layer >= 0 && layer < config_.n_layers : layer == 0;
  if (!layer_ok || r.count == 0) {
    return InvalidArgument(path_ + ": llama2.c tensor " + r.name + " of layer " +
                           std::to_string(layer) + " does not exist in this checkpoint");
  }
  const std::string what =
      r.per_layer ? std::string(r.name) + " of layer " + std::to_string(layer) : r.name;
  const uint64_t float_offset = r.offset + static_cast<uint64_t>(layer) * r.count;
  std::vector<float> v(r.count);
  PQ_RETURN_IF_ERROR(PreadAll(fd_.get(), kLlama2cHeaderBytes + 4 * float_offset,
                              std::span<uint8_t>(reinterpret_cast<uint8_t*>(v.data()), 4 * r.count),
                              path_));
  for (uint64_t i = 0; i < r.count; ++i) {
    if (!std::isfinite(v[i])) {
      return DataLoss(path_ + ": " + what + " has a non-finite value (" + std::to_string(v[i]) +
                      ") at element " + std::to_string(i) + "; the checkpoint is corrupt");
    }
  }
  return v;
}

}  // namespace pq::io
