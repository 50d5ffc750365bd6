#include "pq/tokenizer/llama2c_tokenizer.h"

#include <queue>
#include <utility>

#include "pq/io/llama2c.h"

namespace pq::tokenizer {
namespace {

constexpr int32_t kByteOffset = 3;  // ids 0/1/2 are <unk>/<s>/</s>
constexpr int32_t kMinVocab = kByteOffset + 256;
constexpr float kNoMerge = -1e10f;  // run.c's initial best score

// Returns the byte of a "<0xHH>" piece, or -1.
int ByteOfPiece(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = p[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

Result<std::unique_ptr<Llama2cTokenizer>> Llama2cTokenizer::Load(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(io::Llama2cVocab vocab, io::ReadLlama2cTokenizer(path));
  const std::string bad = path + ": not usable as a llama2.c tokenizer: ";
  if (vocab.pieces.size() < static_cast<size_t>(kMinVocab)) {
    return DataLoss(bad + "it has " + std::to_string(vocab.pieces.size()) +
                    " tokens; run.c needs at least 259 (<unk>, <s>, </s> and 256 byte tokens)");
  }
  if (vocab.pieces.size() > static_cast<size_t>(INT32_MAX)) {
    return DataLoss(bad + "too many tokens");
  }
  auto t = std::unique_ptr<Llama2cTokenizer>(new Llama2cTokenizer());
  t->path_ = path;
  t->pieces_ = std::move(vocab.pieces);
  t->scores_ = std::move(vocab.scores);
  t->ids_.reserve(t->pieces_.size() * 2);
  for (size_t i = 0; i < t->pieces_.size(); ++i) {
    // run.c binary-searches a sorted copy; with duplicate pieces we keep the first id.
    t->ids_.emplace(t->pieces_[i], static_cast<int32_t>(i));
  }
  t->space_id_ = t->Lookup(" ");
  if (t->space_id_ < 0) {
    return DataLoss(bad + "it has no \" \" piece, which run.c uses as the dummy prefix");
  }
  return t;
}

int32_t Llama2cTokenizer::Lookup(std::string_view piece) const {
  auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

int32_t Llama2cTokenizer::MergedId(int32_t a, int32_t b, std::string* buf) const {
  buf->assign(pieces_[static_cast<size_t>(a)]);
  buf->append(pieces_[static_cast<size_t>(b)]);
  const int32_t id = Lookup(*buf);
  if (id < 0 || !(scores_[static_cast<size_t>(id)] > kNoMerge)) return -1;
  return id;
}

std::vector<int32_t> Llama2cTokenizer::InitialTokens(std::string_view text) const {
  std::vector<int32_t> tokens;
  if (text.empty()) return tokens;
  tokens.reserve(text.size() + 1);
  tokens.push_back(space_id_);
  size_t i = 0;
  while (i < text.size()) {
    // A byte plus up to 3 following continuation bytes, like run.c's str_buffer.
    size_t j = i + 1;
    while (j < text.size() && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80 && j - i < 4) {
      ++j;
    }
    const int32_t id = Lookup(text.substr(i, j - i));
    if (id >= 0) {
      tokens.push_back(id);
    } else {
      for (size_t k = i; k < j; ++k) {
        tokens.push_back(static_cast<unsigned char>(text[k]) + kByteOffset);
      }
    }
    i = j;
  }
  return tokens;
}

Result<std::vector<int32_t>> Llama2cTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> tokens = InitialTokens(text);
  const size_t n = tokens.size();
  if (n < 2) return tokens;

  // Doubly linked list over positions; merged-away positions are marked dead.
  std::vector<size_t> next(n), prev(n);
  std::vector<char> alive(n, 1);
  for (size_t i = 0; i < n; ++i) {
    next[i] = i + 1;
    prev[i] = i == 0 ? n : i - 1;  // n = none
  }
  struct Cand {
    float score;
    size_t pos;
    int32_t left, right, merged;
  };
  // Highest score first; among equal scores the leftmost position (run.c's strict '>').
  auto worse = [](const Cand& x, const Cand& y) {
    if (x.score != y.score) return x.score < y.score;
    return x.pos > y.pos;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  std::string buf;
  auto push = [&](size_t i) {
    const size_t j = next[i];
    if (j >= n) return;
    const int32_t m = MergedId(tokens[i], tokens[j], &buf);
    if (m >= 0) heap.push({scores_[static_cast<size_t>(m)], i, tokens[i], tokens[j], m});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const size_t i = c.pos;
    if (!alive[i]) continue;
    const size_t j = next[i];
    // Stale if either side changed since the candidate was pushed.
    if (j >= n || tokens[i] != c.left || tokens[j] != c.right) continue;
    tokens[i] = c.merged;
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] < n) prev[next[j]] = i;
    if (prev[i] < n) push(prev[i]);
    push(i);
  }
  std::vector<int32_t> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (alive[i]) out.push_back(tokens[i]);
  }
  return out;
}

std::vector<int32_t> Llama2cTokenizer::EncodeNaive(std::string_view text) const {
  std::vector<int32_t> tokens = InitialTokens(text);
  std::string buf;
  while (true) {
    float best_score = kNoMerge;
    int32_t best_id = -1;
    size_t best_idx = 0;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      buf.assign(pieces_[static_cast<size_t>(tokens[i])]);
      buf.append(pieces_[static_cast<size_t>(tokens[i + 1])]);
      const int32_t id = Lookup(buf);
      if (id >= 0 && scores_[static_cast<size_t>(id)] > best_score) {
        best_score = scores_[static_cast<size_t>(id)];
        best_id = id;
        best_idx = i;
      }
    }
    if (best_id < 0) return tokens;
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(best_idx) + 1);
  }
}

std::string Llama2cTokenizer::Decode(std::span<const int32_t> ids) const {
  static constexpr const char* kSpecial[] = {"<unk>", "<s>", "</s>"};
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (id < kByteOffset) {
      out += kSpecial[id];
      continue;
    }
    const std::string& p = pieces_[static_cast<size_t>(id)];
    const int byte = ByteOfPiece(p);
    if (byte >= 0) {
      out.push_back(static_cast<char>(byte));
    } else {
      out += p;
    }
  }
  // The tokenizer.json decoder's Strip: drop the dummy-prefix space.
  if (!out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

std::string Llama2cTokenizer::Describe() const {
  return "llama2.c tokenizer.bin (" + std::to_string(pieces_.size()) + " tokens)";
}

}  // namespace pq::tokenizer
