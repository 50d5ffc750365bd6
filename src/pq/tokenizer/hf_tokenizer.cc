#include "pq/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "pq/core/utf8.h"
#include "pq/io/json_util.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer {
namespace {

using nlohmann::json;

// Rust regex `\w` (UTS #18 word characters), which tokenizers uses for single_word.
constexpr char kWordCharPattern[] = R"(^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}]$)";

// The text of the code point that ends / starts `s` (s non-empty, valid UTF-8).
std::string_view LastChar(std::string_view s) {
  size_t q = s.size() - 1;
  while (q > 0 && (static_cast<unsigned char>(s[q]) & 0xC0) == 0x80) --q;
  return s.substr(q);
}
std::string_view FirstChar(std::string_view s) {
  return s.substr(0, std::min(unicode::Utf8Length(static_cast<unsigned char>(s[0])), s.size()));
}

// The name of a special token in tokenizer_config.json: "x" or {"content": "x", ...}.
std::optional<std::string> ConfigTokenName(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  return std::nullopt;
}

// The BOS that a post-processor puts before the sequence: TemplateProcessing's special token
// before $A, RobertaProcessing/BertProcessing's cls; Sequence processors are searched in order.
std::optional<std::string> PostProcessorBos(const json& pp, int depth, int32_t* id_out) {
  if (!pp.is_object() || depth > 8) return std::nullopt;
  auto type_it = pp.find("type");
  if (type_it == pp.end() || !type_it->is_string()) return std::nullopt;
  const std::string type = type_it->get<std::string>();
  if (type == "Sequence") {
    auto it = pp.find("processors");
    if (it == pp.end() || !it->is_array()) return std::nullopt;
    for (const json& p : *it) {
      if (auto r = PostProcessorBos(p, depth + 1, id_out)) return r;
    }
    return std::nullopt;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto it = pp.find("cls");
    if (it != pp.end() && it->is_array() && it->size() == 2 && (*it)[0].is_string() &&
        (*it)[1].is_number_integer()) {
      *id_out = static_cast<int32_t>((*it)[1].get<int64_t>());
      return (*it)[0].get<std::string>();
    }
    return std::nullopt;
  }
  if (type != "TemplateProcessing") return std::nullopt;
  auto single = pp.find("single");
  if (single == pp.end() || !single->is_array() || single->empty()) return std::nullopt;
  const json& first = (*single)[0];
  auto sp = first.find("SpecialToken");
  if (!first.is_object() || sp == first.end() || !sp->is_object()) return std::nullopt;
  auto name = sp->find("id");
  if (name == sp->end() || !name->is_string()) return std::nullopt;
  *id_out = -1;
  auto specials = pp.find("special_tokens");
  if (specials != pp.end() && specials->is_object()) {
    auto entry = specials->find(name->get<std::string>());
    if (entry != specials->end() && entry->is_object()) {
      auto ids = entry->find("ids");
      if (ids != entry->end() && ids->is_array() && ids->size() == 1 &&
          (*ids)[0].is_number_integer()) {
        *id_out = static_cast<int32_t>((*ids)[0].get<int64_t>());
      }
    }
  }
  return name->get<std::string>();
}

}  // namespace

void HfTokenizer::Trie::Insert(std::string_view s, int32_t token) {
  int32_t node = 0;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    auto& kids = nodes[static_cast<size_t>(node)].children;
    auto it = std::lower_bound(kids.begin(), kids.end(), c,
                               [](const auto& p, unsigned char x) { return p.first < x; });
    if (it != kids.end() && it->first == c) {
      node = it->second;
      continue;
    }
    const auto child = static_cast<int32_t>(nodes.size());
    kids.insert(it, {c, child});
    nodes.emplace_back();
    node = child;
  }
  nodes[static_cast<size_t>(node)].token = token;
}

std::pair<int32_t, size_t> HfTokenizer::Trie::LongestAt(std::string_view text, size_t pos) const {
  std::pair<int32_t, size_t> best{-1, 0};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto& kids = nodes[static_cast<size_t>(node)].children;
    auto it = std::lower_bound(kids.begin(), kids.end(), c,
                               [](const auto& p, unsigned char x) { return p.first < x; });
    if (it == kids.end() || it->first != c) break;
    node = it->second;
    const int32_t t = nodes[static_cast<size_t>(node)].token;
    if (t >= 0) best = {t, i + 1 - pos};
  }
  return best;
}

Result<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(const std::string& path,
                                                       const std::string& config_path) {
  PQ_ASSIGN_OR_RETURN(json doc, io::ReadJsonFile(path));
  if (!doc.is_object()) {
    return DataLoss(path + ": not a tokenizer.json (expected a JSON object, got " +
                    io::JsonTypeName(doc) + ")");
  }
  auto mit = doc.find("model");
  if (mit == doc.end() || !mit->is_object()) {
    return DataLoss(path + ": not a tokenizer.json (no \"model\" object)");
  }
  std::string type;
  if (auto t = mit->find("type"); t != mit->end() && t->is_string()) {
    type = t->get<std::string>();
  } else if (mit->contains("merges")) {
    type = "BPE";  // old files have no type tag
  } else {
    return DataLoss(path + ": model.type is missing");
  }
  if (type != "BPE") {
    return Unimplemented(path + ": tokenizer model type " + io::Quote(type) +
                         " is not supported (supported: BPE)");
  }
  auto t = std::unique_ptr<HfTokenizer>(new HfTokenizer());
  t->path_ = path;
  const std::string ctx = path + ": ";
  PQ_ASSIGN_OR_RETURN(t->model_, hf::BpeModel::Parse(*mit, ctx + "model"));
  auto part = [&doc](const char* key) { return doc.contains(key) ? doc[key] : json(); };
  PQ_ASSIGN_OR_RETURN(t->normalizer_,
                      hf::Normalizer::Parse(part("normalizer"), ctx + "normalizer"));
  PQ_ASSIGN_OR_RETURN(t->pre_tokenizer_,
                      hf::PreTokenizer::Parse(part("pre_tokenizer"), ctx + "pre_tokenizer"));
  PQ_ASSIGN_OR_RETURN(t->decoder_, hf::Decoder::Parse(part("decoder"), ctx + "decoder"));
  PQ_ASSIGN_OR_RETURN(Regex word, Regex::Compile(kWordCharPattern));
  t->word_char_.emplace(std::move(word));
  PQ_RETURN_IF_ERROR(t->ParseAddedTokens(doc));
  t->kind_ = t->pre_tokenizer_.has_byte_level() ? "byte-level"
             : t->model_.byte_fallback()        ? "SentencePiece-style"
                                                : "plain";
  std::error_code ec;
  const bool have_config = !config_path.empty() && std::filesystem::exists(config_path, ec);
  PQ_ASSIGN_OR_RETURN(json config,
                      have_config ? io::ReadJsonFile(config_path) : Result<json>(json()));
  t->ReadSpecialIds(doc);
  if (config.is_object()) {
    auto resolve = [&](const char* key) -> std::optional<int32_t> {
      auto name = ConfigTokenName(config, key);
      return name ? t->TokenToId(*name) : std::nullopt;
    };
    if (auto it = config.find("add_bos_token"); it != config.end() && it->is_boolean()) {
      if (!it->get<bool>()) {
        t->bos_id_.reset();
      } else if (auto b = resolve("bos_token")) {
        t->bos_id_ = b;
      }
    }
    t->eos_id_ = resolve("eos_token");
  }
  return t;
}

Status HfTokenizer::ParseAddedTokens(const json& doc) {
  const std::string what = path_ + ": added_tokens";
  auto it = doc.find("added_tokens");
  const json empty = json::array();
  const json& list = (it == doc.end() || it->is_null()) ? empty : *it;
  if (!list.is_array()) return DataLoss(what + " must be an array");
  // Ids as tokenizers' AddedVocabulary::add_tokens assigns them: the model's id when the
  // content is in the vocabulary, else the next id after the model's vocabulary.
  hf::StringIdMap by_content;
  // model.get_vocab_size() is the number of entries (not the largest id + 1).
  int32_t next_id = 0;
  for (int32_t id = 0; id < model_.size(); ++id) next_id += model_.IdToToken(id) ? 1 : 0;
  std::vector<AddedToken> by_id;  // in insertion order; a later token with the same id wins
  std::unordered_map<int32_t, size_t> index_of_id;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    const std::string w = what + "[" + std::to_string(i) + "]";
    if (!e.is_object()) return DataLoss(w + " must be an object");
    AddedToken a;
    PQ_ASSIGN_OR_RETURN(a.content, hf::GetString(e, "content", w));
    PQ_ASSIGN_OR_RETURN(a.single_word, hf::GetBool(e, "single_word", false, w));
    PQ_ASSIGN_OR_RETURN(a.lstrip, hf::GetBool(e, "lstrip", false, w));
    PQ_ASSIGN_OR_RETURN(a.rstrip, hf::GetBool(e, "rstrip", false, w));
    PQ_ASSIGN_OR_RETURN(a.special, hf::GetBool(e, "special", false, w));
    PQ_ASSIGN_OR_RETURN(a.normalized, hf::GetBool(e, "normalized", !a.special, w));
    if (!IsValidUtf8(a.content)) return DataLoss(w + ".content is not valid UTF-8");
    if (a.content.empty()) continue;
    int32_t id;
    if (auto c = by_content.find(a.content); c != by_content.end()) {
      id = c->second;
    } else if (auto m = model_.TokenToId(a.content)) {
      id = *m;
    } else {
      id = next_id++;
    }
    by_content[a.content] = id;
    a.id = id;
    if (auto same = index_of_id.find(id); same != index_of_id.end()) {
      by_id[same->second] = std::move(a);
    } else {
      index_of_id.emplace(id, by_id.size());
      by_id.push_back(std::move(a));
    }
  }
  int32_t max_id = model_.size() - 1;
  for (AddedToken& a : by_id) {
    max_id = std::max(max_id, a.id);
    added_.push_back(std::move(a));
  }
  vocab_size_ = max_id + 1;
  added_by_id_.assign(static_cast<size_t>(vocab_size_), -1);
  normalized_content_.resize(added_.size());
  for (size_t k = 0; k < added_.size(); ++k) {
    const AddedToken& a = added_[k];
    added_by_id_[static_cast<size_t>(a.id)] = static_cast<int32_t>(k);
    if (a.normalized) {
      std::string n = a.content;
      PQ_RETURN_IF_ERROR(normalizer_.Apply(&n));
      normalized_content_[k] = n;
      normalized_trie_.Insert(n, static_cast<int32_t>(k));
    } else {
      raw_trie_.Insert(a.content, static_cast<int32_t>(k));
    }
  }
  return Status::Ok();
}

void HfTokenizer::ReadSpecialIds(const json& doc) {
  auto pp = doc.find("post_processor");
  if (pp == doc.end()) return;
  int32_t id = -1;
  if (auto name = PostProcessorBos(*pp, 0, &id)) {
    if (id >= 0) {
      bos_id_ = id;
    } else {
      bos_id_ = TokenToId(*name);
    }
  }
}

std::optional<int32_t> HfTokenizer::TokenToId(std::string_view token) const {
  for (const AddedToken& a : added_) {
    if (a.content == token) return a.id;
  }
  return model_.TokenToId(token);
}

Result<std::vector<HfTokenizer::Segment>> HfTokenizer::FindAdded(std::string_view text,
                                                                 const Trie& trie) const {
  std::vector<Segment> out;
  if (text.empty()) return out;
  if (trie.empty()) {
    out.push_back({0, text.size(), -1});
    return out;
  }
  auto is_word = [this](std::string_view ch) -> Result<bool> { return word_char_->Search(ch); };
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const auto [k, len] = trie.LongestAt(text, pos);
    if (k < 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + len;
    pos = stop;  // matches never overlap, whether or not this one is kept
    const AddedToken& a = added_[static_cast<size_t>(k)];
    if (a.single_word) {
      bool start_space = start == 0;
      if (!start_space) {
        PQ_ASSIGN_OR_RETURN(bool w, is_word(LastChar(text.substr(0, start))));
        start_space = !w;
      }
      bool stop_space = stop == text.size();
      if (!stop_space) {
        PQ_ASSIGN_OR_RETURN(bool w, is_word(FirstChar(text.substr(stop))));
        stop_space = !w;
      }
      if (!start_space || !stop_space) continue;
    }
    if (a.lstrip) {
      size_t s = start;
      while (s > 0) {
        const std::string_view ch = LastChar(text.substr(0, s));
        size_t p = 0;
        if (!unicode::IsWhiteSpace(unicode::DecodeUtf8(ch, &p))) break;
        s -= ch.size();
      }
      start = std::max(s, start_offset);
    }
    if (a.rstrip) {
      while (stop < text.size()) {
        size_t p = stop;
        if (!unicode::IsWhiteSpace(unicode::DecodeUtf8(text, &p))) break;
        stop = p;
      }
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, k});
    start_offset = stop;
  }
  if (start_offset != text.size()) out.push_back({start_offset, text.size(), -1});
  return out;
}

Status HfTokenizer::EncodeText(std::string text, bool at_origin, std::vector<int32_t>* out) const {
  PQ_RETURN_IF_ERROR(normalizer_.Apply(&text));
  PQ_ASSIGN_OR_RETURN(std::vector<Segment> segs, FindAdded(text, normalized_trie_));
  std::vector<hf::Piece> pieces;
  for (const Segment& s : segs) {
    if (s.token >= 0) {
      out->push_back(added_[static_cast<size_t>(s.token)].id);
      continue;
    }
    if (s.end <= s.begin) continue;
    pieces.clear();
    pieces.push_back({text.substr(s.begin, s.end - s.begin), at_origin && s.begin == 0});
    PQ_RETURN_IF_ERROR(pre_tokenizer_.Apply(&pieces));
    for (const hf::Piece& p : pieces) PQ_RETURN_IF_ERROR(model_.Tokenize(p.text, out));
  }
  return Status::Ok();
}

Result<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text) const {
  if (!IsValidUtf8(text)) {
    return InvalidArgument(path_ + ": cannot encode text that is not valid UTF-8");
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  PQ_ASSIGN_OR_RETURN(std::vector<Segment> segs, FindAdded(text, raw_trie_));
  for (const Segment& s : segs) {
    if (s.token >= 0) {
      out.push_back(added_[static_cast<size_t>(s.token)].id);
    } else if (s.end > s.begin) {
      Status st =
          EncodeText(std::string(text.substr(s.begin, s.end - s.begin)), s.begin == 0, &out);
      if (!st.ok()) return st.WithContext(path_);
    }
  }
  return out;
}

std::string HfTokenizer::Decode(std::span<const int32_t> ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) continue;
    const int32_t k = added_by_id_[static_cast<size_t>(id)];
    if (k >= 0) {
      // tokenizers decodes a normalized added token as its normalized form.
      const auto uk = static_cast<size_t>(k);
      tokens.push_back(added_[uk].normalized ? normalized_content_[uk] : added_[uk].content);
    } else if (const std::string* t = model_.IdToToken(id)) {
      tokens.push_back(*t);
    }
  }
  return decoder_.Apply(std::move(tokens));
}

std::string HfTokenizer::Describe() const {
  return "tokenizer.json BPE " + kind_ + " (" + std::to_string(vocab_size_) + " tokens, " +
         std::to_string(model_.num_merges()) + " merges, " + std::to_string(added_.size()) +
         " added)";
}

}  // namespace pq::tokenizer
