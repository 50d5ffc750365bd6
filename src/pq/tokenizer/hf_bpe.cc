#include "pq/tokenizer/hf_bpe.h"

#include <cstdio>
#include <queue>
#include <utility>

#include "pq/io/json_util.h"
#include "pq/tokenizer/hf_common.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer::hf {
namespace {

using nlohmann::json;

constexpr int64_t kMaxId = 1 << 26;  // far above any real vocabulary; bounds allocations

Result<std::optional<std::string>> GetOptionalString(const json& j, const char* key,
                                                     const std::string& what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) {
    return DataLoss(what + "." + key + " must be a string or null, got " + io::JsonTypeName(*it));
  }
  return std::optional<std::string>(it->get<std::string>());
}

}  // namespace

Result<BpeModel> BpeModel::Parse(const json& model, const std::string& what) {
  BpeModel m;
  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object()) {
    return DataLoss(what + ".vocab must be an object (token -> id)");
  }
  m.vocab_.reserve(vit->size() * 2);
  int64_t max_id = -1;
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() >= kMaxId) {
      return DataLoss(what + ".vocab[" + io::Quote(it.key()) + "] must be an id in [0, " +
                      std::to_string(kMaxId) + "), got " + io::Dump(*it));
    }
    const int64_t id = it->get<int64_t>();
    m.vocab_.emplace(it.key(), static_cast<int32_t>(id));
    max_id = std::max(max_id, id);
  }
  m.id_to_token_.resize(static_cast<size_t>(max_id + 1));
  m.has_id_.assign(static_cast<size_t>(max_id + 1), 0);
  for (const auto& [tok, id] : m.vocab_) {
    m.id_to_token_[static_cast<size_t>(id)] = tok;
    m.has_id_[static_cast<size_t>(id)] = 1;
  }

  PQ_ASSIGN_OR_RETURN(m.unk_token_, GetOptionalString(model, "unk_token", what));
  PQ_ASSIGN_OR_RETURN(auto prefix, GetOptionalString(model, "continuing_subword_prefix", what));
  PQ_ASSIGN_OR_RETURN(auto suffix, GetOptionalString(model, "end_of_word_suffix", what));
  m.prefix_ = prefix.value_or("");
  m.suffix_ = suffix.value_or("");
  PQ_ASSIGN_OR_RETURN(m.fuse_unk_, GetBool(model, "fuse_unk", false, what));
  PQ_ASSIGN_OR_RETURN(m.byte_fallback_, GetBool(model, "byte_fallback", false, what));
  PQ_ASSIGN_OR_RETURN(m.ignore_merges_, GetBool(model, "ignore_merges", false, what));
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() < 0 || it->get<double>() > 1) {
      return DataLoss(what + ".dropout must be null or a number in [0, 1]");
    }
    if (it->get<double>() > 0) {
      return Unimplemented(what + ".dropout is " + io::Dump(*it) +
                           ": BPE dropout (random merges) is not supported");
    }
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = m.vocab_.find(std::string_view(name));
    m.byte_ids_[b] = it == m.vocab_.end() ? -1 : it->second;
  }

  auto mit = model.find("merges");
  if (mit == model.end() || !mit->is_array()) {
    return DataLoss(what + ".merges must be an array");
  }
  m.merges_.reserve(mit->size() * 2);
  std::string merged;
  for (size_t i = 0; i < mit->size(); ++i) {
    const json& e = (*mit)[i];
    const std::string where = what + ".merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return DataLoss(where + " " + io::Quote(s) + " must be two tokens separated by a space");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      return DataLoss(where + " must be \"a b\" or [\"a\", \"b\"], got " + io::Dump(e));
    }
    auto ia = m.vocab_.find(a), ib = m.vocab_.find(b);
    if (ia == m.vocab_.end() || ib == m.vocab_.end()) {
      return DataLoss(where + ": token " + io::Quote(ia == m.vocab_.end() ? a : b) +
                      " is not in the vocabulary");
    }
    if (b.size() < m.prefix_.size()) {
      return DataLoss(where + ": token " + io::Quote(b) +
                      " is shorter than the continuing_subword_prefix");
    }
    merged = a;
    merged.append(b, m.prefix_.size());
    auto in = m.vocab_.find(merged);
    if (in == m.vocab_.end()) {
      return DataLoss(where + ": the merged token " + io::Quote(merged) +
                      " is not in the vocabulary");
    }
    m.merges_[Key(ia->second, ib->second)] = Merge{static_cast<int32_t>(i), in->second};
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= size() || !has_id_[static_cast<size_t>(id)]) return nullptr;
  return &id_to_token_[static_cast<size_t>(id)];
}

Status BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return Status::Ok();
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out->push_back(it->second);
      return Status::Ok();
    }
  }
  // Initial symbols (tokenizers' merge_word).
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  bool have_unk = false;
  int32_t unk_id = -1;
  std::string scratch;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t start = pos;
    pos += std::min(unicode::Utf8Length(static_cast<unsigned char>(word[pos])), word.size() - pos);
    std::string_view s = word.substr(start, pos - start);
    const bool is_first = start == 0, is_last = pos == word.size();
    if ((!is_first && !prefix_.empty()) || (is_last && !suffix_.empty())) {
      scratch.clear();
      if (!is_first) scratch += prefix_;
      scratch += s;
      if (is_last) scratch += suffix_;
      s = scratch;
    }
    if (auto it = vocab_.find(s); it != vocab_.end()) {
      if (have_unk) ids.push_back(unk_id);
      have_unk = false;
      ids.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : s) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        // (tokenizers does not flush a pending unk here; neither do we.)
        for (char c : s) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (!unk_token_) continue;  // no unk token: the character is dropped
    auto uit = vocab_.find(*unk_token_);
    if (uit == vocab_.end()) {
      return InvalidArgument("unk_token " + io::Quote(*unk_token_) +
                             " is not in the vocabulary (needed for " + io::Quote(s) + ")");
    }
    if (have_unk && !fuse_unk_) ids.push_back(unk_id);
    have_unk = true;
    unk_id = uit->second;
  }
  if (have_unk) ids.push_back(unk_id);

  // Word::merge_all: lowest rank first, then leftmost position.
  const size_t n = ids.size();
  if (n < 2) {
    out->insert(out->end(), ids.begin(), ids.end());
    return Status::Ok();
  }
  std::vector<size_t> next(n), prev(n);
  std::vector<char> alive(n, 1);
  for (size_t i = 0; i < n; ++i) {
    next[i] = i + 1;
    prev[i] = i == 0 ? n : i - 1;  // n = none
  }
  struct Cand {
    int32_t rank;
    size_t pos;
    int32_t new_id;
  };
  auto later = [](const Cand& x, const Cand& y) {
    if (x.rank != y.rank) return x.rank > y.rank;
    return x.pos > y.pos;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(later)> heap(later);
  for (size_t i = 0; i + 1 < n; ++i) {
    if (const Merge* mg = FindMerge(ids[i], ids[i + 1])) heap.push({mg->rank, i, mg->new_id});
  }
  while (!heap.empty()) {
    const Cand top = heap.top();
    heap.pop();
    const size_t i = top.pos;
    if (!alive[i] || next[i] >= n) continue;
    const size_t j = next[i];
    const Merge* mg = FindMerge(ids[i], ids[j]);
    if (mg == nullptr || mg->new_id != top.new_id) continue;  // stale entry
    ids[i] = top.new_id;
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] < n) prev[next[j]] = i;
    if (prev[i] < n) {
      if (const Merge* p = FindMerge(ids[prev[i]], ids[i]))
        heap.push({p->rank, prev[i], p->new_id});
    }
    if (next[i] < n) {
      if (const Merge* q = FindMerge(ids[i], ids[next[i]])) heap.push({q->rank, i, q->new_id});
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (alive[i]) out->push_back(ids[i]);
  }
  return Status::Ok();
}

}  // namespace pq::tokenizer::hf
