#include "pq/tokenizer/hf_components.h"

#include <algorithm>
#include <utility>

#include "pq/io/json_util.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer::hf {
namespace {

using nlohmann::json;

constexpr int kMaxNesting = 16;  // nested Sequence depth we accept

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex = true).
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

Status Unsupported(const std::string& what, const std::string& kind, const std::string& type,
                   const char* supported) {
  return Unimplemented(what + ": " + kind + " type " + io::Quote(type) +
                       " is not supported (supported: " + supported + ")");
}

// Returns `s` with every occurrence of `from` (non-empty) replaced by `to`.
std::string ReplaceLiteral(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  size_t prev = 0;
  for (size_t pos = s.find(from); pos != std::string_view::npos; pos = s.find(from, prev)) {
    out.append(s.substr(prev, pos - prev));
    out.append(to);
    prev = pos + from.size();
  }
  out.append(s.substr(prev));
  return out;
}

// The byte of a "<0xHH>" token as HF's ByteFallback decoder reads it (Rust u8::from_str_radix
// on the two characters, which also accepts "+H"), or -1.
int ByteFallbackValue(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto digit = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = digit(t[3]), lo = digit(t[4]);
  if (lo < 0) return -1;
  if (t[3] == '+') return lo;
  return hi < 0 ? -1 : hi * 16 + lo;
}

// Appends the byte-level form of `s` (every byte replaced by its character) to `out`.
void AppendByteLevel(std::string_view s, std::string* out) {
  const auto& table = ByteToUnicode();
  for (char c : s) *out += table[static_cast<unsigned char>(c)];
}

// Returns `text` with every match of `re` replaced by `content`.
Result<std::string> ReplaceAll(const Regex& re, std::string_view text, std::string_view content) {
  std::vector<std::pair<size_t, size_t>> m;
  PQ_RETURN_IF_ERROR(re.FindAll(text, &m));
  if (m.empty()) return std::string(text);
  std::string out;
  size_t prev = 0;
  for (const auto& [b, e] : m) {
    out.append(text.substr(prev, b - prev));
    out.append(content);
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}

Result<std::string> GetChar(const json& j, const char* key, const std::string& what) {
  PQ_ASSIGN_OR_RETURN(std::string s, GetString(j, key, what));
  size_t pos = 0;
  if (s.empty() || (unicode::DecodeUtf8(s, &pos), pos != s.size())) {
    return DataLoss(what + "." + key + " must be a single character, got " + io::Quote(s));
  }
  return s;
}

Result<PreTokenizer::Behavior> ParseBehavior(const json& j, const std::string& what) {
  PQ_ASSIGN_OR_RETURN(std::string b, GetString(j, "behavior", what));
  using B = PreTokenizer::Behavior;
  if (b == "Removed") return B::kRemoved;
  if (b == "Isolated") return B::kIsolated;
  if (b == "MergedWithPrevious") return B::kMergedWithPrevious;
  if (b == "MergedWithNext") return B::kMergedWithNext;
  if (b == "Contiguous") return B::kContiguous;
  return DataLoss(what + ".behavior " + io::Quote(b) + " is not a split behavior");
}

}  // namespace

Result<std::string> GetString(const json& obj, const char* key, const std::string& what) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) {
    return DataLoss(what + "." + key + " must be a string" +
                    (it == obj.end() ? " (missing)" : ", got " + io::JsonTypeName(*it)));
  }
  return it->get<std::string>();
}

Result<bool> GetBool(const json& obj, const char* key, bool dflt, const std::string& what) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) {
    return DataLoss(what + "." + key + " must be true or false, got " + io::Dump(*it));
  }
  return it->get<bool>();
}

Result<std::string> GetType(const json& obj, const std::string& what) {
  if (!obj.is_object()) {
    return DataLoss(what + " must be an object or null, got " + io::JsonTypeName(obj));
  }
  return GetString(obj, "type", what);
}

const std::array<std::string, 256>& ByteToUnicode() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    char32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp = printable ? static_cast<char32_t>(b) : 256 + n++;
      unicode::AppendUtf8(cp, &t[static_cast<size_t>(b)]);
    }
    return t;
  }();
  return table;
}

int UnicodeToByte(char32_t c) {
  if ((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) {
    return static_cast<int>(c);
  }
  if (c < 256 || c >= 256 + 68) return -1;  // 68 = 256 - 188 printable bytes
  // The non-printable bytes, in increasing order, map to 256, 257, ...
  static const std::array<int, 68> bytes = [] {
    std::array<int, 68> b{};
    size_t n = 0;
    for (int v = 0; v < 256; ++v) {
      const bool printable = (v >= '!' && v <= '~') || (v >= 0xA1 && v <= 0xAC) || v >= 0xAE;
      if (!printable) b[n++] = v;
    }
    return b;
  }();
  return bytes[c - 256];
}

Result<Regex> ParsePattern(const json& j, const std::string& what) {
  if (j.is_object() && j.size() == 1) {
    if (auto it = j.find("String"); it != j.end() && it->is_string()) {
      auto r = Regex::Literal(it->get<std::string>());
      if (!r.ok()) return r.status().WithContext(what);
      return r;
    }
    if (auto it = j.find("Regex"); it != j.end() && it->is_string()) {
      auto r = Regex::Compile(it->get<std::string>());
      if (!r.ok()) return r.status().WithContext(what);
      return r;
    }
  }
  return DataLoss(what + " must be {\"String\": ...} or {\"Regex\": ...}, got " + io::Dump(j));
}

// ---------------------------------------------------------------------------------------------
// Normalizer

Result<Normalizer> Normalizer::Parse(const json& j, const std::string& what) {
  Normalizer n;
  if (!j.is_null()) PQ_RETURN_IF_ERROR(ParseInto(j, what, 0, &n.steps_));
  return n;
}

Status Normalizer::ParseInto(const json& j, const std::string& what, int depth,
                             std::vector<Step>* steps) {
  PQ_ASSIGN_OR_RETURN(std::string type, GetType(j, what));
  if (type == "Sequence") {
    auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array() || depth > kMaxNesting) {
      return DataLoss(what + ".normalizers must be an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      PQ_RETURN_IF_ERROR(
          ParseInto((*it)[i], what + ".normalizers[" + std::to_string(i) + "]", depth + 1, steps));
    }
    return Status::Ok();
  }
  Step s{};
  if (type == "Prepend") {
    s.kind = Step::kPrepend;
    PQ_ASSIGN_OR_RETURN(s.text, GetString(j, "prepend", what));
  } else if (type == "Replace") {
    s.kind = Step::kReplace;
    PQ_ASSIGN_OR_RETURN(s.text, GetString(j, "content", what));
    auto it = j.find("pattern");
    if (it == j.end()) return DataLoss(what + ".pattern is missing");
    PQ_ASSIGN_OR_RETURN(Regex re, ParsePattern(*it, what + ".pattern"));
    s.regex.emplace(std::move(re));
  } else if (type == "NFC") {
    s.kind = Step::kNfc;
  } else if (type == "NFD") {
    s.kind = Step::kNfd;
  } else if (type == "Strip") {
    s.kind = Step::kStrip;
    PQ_ASSIGN_OR_RETURN(s.left, GetBool(j, "strip_left", false, what));
    PQ_ASSIGN_OR_RETURN(s.right, GetBool(j, "strip_right", false, what));
  } else {
    return Unsupported(what, "normalizer", type, "Sequence, Prepend, Replace, NFC, NFD, Strip");
  }
  steps->push_back(std::move(s));
  return Status::Ok();
}

Status Normalizer::Apply(std::string* s) const {
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::kPrepend:
        if (!s->empty()) s->insert(0, step.text);
        break;
      case Step::kReplace: {
        PQ_ASSIGN_OR_RETURN(*s, ReplaceAll(*step.regex, *s, step.text));
        break;
      }
      case Step::kNfc:
        if (!unicode::IsAscii(*s)) *s = unicode::Nfc(*s);
        break;
      case Step::kNfd:
        if (!unicode::IsAscii(*s)) *s = unicode::Nfd(*s);
        break;
      case Step::kStrip: {
        size_t begin = 0, end = s->size();
        if (step.left) {
          while (begin < end) {
            size_t p = begin;
            if (!unicode::IsWhiteSpace(unicode::DecodeUtf8(*s, &p))) break;
            begin = p;
          }
        }
        if (step.right) {
          while (end > begin) {
            size_t q = end - 1;
            while (q > begin && (static_cast<unsigned char>((*s)[q]) & 0xC0) == 0x80) --q;
            size_t p = q;
            if (!unicode::IsWhiteSpace(unicode::DecodeUtf8(*s, &p))) break;
            end = q;
          }
        }
        *s = s->substr(begin, end - begin);
        break;
      }
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// PreTokenizer

Result<PreTokenizer> PreTokenizer::Parse(const json& j, const std::string& what) {
  PreTokenizer p;
  if (!j.is_null()) PQ_RETURN_IF_ERROR(ParseInto(j, what, 0, &p.steps_));
  return p;
}

Status PreTokenizer::ParseInto(const json& j, const std::string& what, int depth,
                               std::vector<Step>* steps) {
  PQ_ASSIGN_OR_RETURN(std::string type, GetType(j, what));
  if (type == "Sequence") {
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array() || depth > kMaxNesting) {
      return DataLoss(what + ".pretokenizers must be an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      PQ_RETURN_IF_ERROR(ParseInto((*it)[i], what + ".pretokenizers[" + std::to_string(i) + "]",
                                   depth + 1, steps));
    }
    return Status::Ok();
  }
  Step s{};
  if (type == "ByteLevel") {
    s.kind = Step::kByteLevel;
    PQ_ASSIGN_OR_RETURN(s.add_prefix_space, GetBool(j, "add_prefix_space", true, what));
    PQ_ASSIGN_OR_RETURN(s.use_regex, GetBool(j, "use_regex", true, what));
    if (s.use_regex) {
      PQ_ASSIGN_OR_RETURN(Regex re, Regex::Compile(kGpt2Pattern));
      s.regex.emplace(std::move(re));
    }
  } else if (type == "Split") {
    s.kind = Step::kSplit;
    auto it = j.find("pattern");
    if (it == j.end()) return DataLoss(what + ".pattern is missing");
    PQ_ASSIGN_OR_RETURN(Regex re, ParsePattern(*it, what + ".pattern"));
    s.regex.emplace(std::move(re));
    PQ_ASSIGN_OR_RETURN(s.behavior, ParseBehavior(j, what));
    PQ_ASSIGN_OR_RETURN(s.invert, GetBool(j, "invert", false, what));
  } else if (type == "Metaspace") {
    s.kind = Step::kMetaspace;
    PQ_ASSIGN_OR_RETURN(s.replacement, GetChar(j, "replacement", what));
    PQ_ASSIGN_OR_RETURN(s.split, GetBool(j, "split", true, what));
    std::string scheme = "always";
    if (j.contains("prepend_scheme")) {
      PQ_ASSIGN_OR_RETURN(scheme, GetString(j, "prepend_scheme", what));
    }
    PQ_ASSIGN_OR_RETURN(bool add_prefix_space, GetBool(j, "add_prefix_space", true, what));
    if (!add_prefix_space) scheme = "never";  // legacy files
    if (scheme == "always") {
      s.prepend = Step::kAlways;
    } else if (scheme == "first") {
      s.prepend = Step::kFirst;
    } else if (scheme == "never") {
      s.prepend = Step::kNever;
    } else {
      return DataLoss(what + ".prepend_scheme " + io::Quote(scheme) +
                      " is not one of first, always, never");
    }
    PQ_ASSIGN_OR_RETURN(Regex re, Regex::Literal(s.replacement));
    s.regex.emplace(std::move(re));
  } else {
    return Unsupported(what, "pre-tokenizer", type, "Sequence, ByteLevel, Split, Metaspace");
  }
  steps->push_back(std::move(s));
  return Status::Ok();
}

bool PreTokenizer::has_byte_level() const {
  for (const Step& s : steps_) {
    if (s.kind == Step::kByteLevel) return true;
  }
  return false;
}

Status SplitByRegex(const Regex& re, PreTokenizer::Behavior behavior, bool invert, const Piece& s,
                    std::vector<Piece>* out) {
  struct Span {
    size_t begin, end;
    bool flag;  // is_match before the behavior is applied, "remove" after
  };
  std::vector<Span> m;
  if (s.text.empty()) {
    m.push_back({0, 0, false});
  } else {
    std::vector<std::pair<size_t, size_t>> found;
    PQ_RETURN_IF_ERROR(re.FindAll(s.text, &found));
    size_t prev = 0;
    for (const auto& [b, e] : found) {
      if (prev != b) m.push_back({prev, b, false});
      m.push_back({b, e, true});
      prev = e;
    }
    if (prev != s.text.size()) m.push_back({prev, s.text.size(), false});
  }
  if (invert) {
    for (Span& x : m) x.flag = !x.flag;
  }
  using B = PreTokenizer::Behavior;
  std::vector<Span> splits;
  switch (behavior) {
    case B::kIsolated:
      for (const Span& x : m) splits.push_back({x.begin, x.end, false});
      break;
    case B::kRemoved:
      splits = m;
      break;
    case B::kContiguous: {
      bool previous = false;
      for (const Span& x : m) {
        if (x.flag == previous && !splits.empty()) {
          splits.back().end = x.end;
        } else {
          splits.push_back({x.begin, x.end, false});
        }
        previous = x.flag;
      }
      break;
    }
    case B::kMergedWithPrevious: {
      bool previous = false;
      for (const Span& x : m) {
        if (x.flag && !previous && !splits.empty()) {
          splits.back().end = x.end;
        } else {
          splits.push_back({x.begin, x.end, false});
        }
        previous = x.flag;
      }
      break;
    }
    case B::kMergedWithNext: {
      bool previous = false;
      for (size_t k = m.size(); k-- > 0;) {
        const Span& x = m[k];
        if (x.flag && !previous && !splits.empty()) {
          splits.back().begin = x.begin;
        } else {
          splits.push_back({x.begin, x.end, false});
        }
        previous = x.flag;
      }
      std::reverse(splits.begin(), splits.end());
      break;
    }
  }
  for (const Span& x : splits) {
    if (x.flag || x.end == x.begin) continue;
    out->push_back({s.text.substr(x.begin, x.end - x.begin), s.at_origin && x.begin == 0});
  }
  return Status::Ok();
}

Status PreTokenizer::Apply(std::vector<Piece>* pieces) const {
  std::vector<Piece> next;
  for (const Step& step : steps_) {
    next.clear();
    for (Piece& p : *pieces) {
      switch (step.kind) {
        case Step::kByteLevel: {
          if (step.add_prefix_space && (p.text.empty() || p.text[0] != ' ')) {
            p.text.insert(p.text.begin(), ' ');
          }
          const size_t first = next.size();
          if (step.use_regex) {
            PQ_RETURN_IF_ERROR(SplitByRegex(*step.regex, Behavior::kIsolated, false, p, &next));
          } else if (!p.text.empty()) {
            next.push_back(std::move(p));
          }
          for (size_t k = first; k < next.size(); ++k) {
            std::string mapped;
            mapped.reserve(next[k].text.size() * 2);
            AppendByteLevel(next[k].text, &mapped);
            next[k].text = std::move(mapped);
          }
          break;
        }
        case Step::kSplit:
          PQ_RETURN_IF_ERROR(SplitByRegex(*step.regex, step.behavior, step.invert, p, &next));
          break;
        case Step::kMetaspace: {
          if (p.text.find(' ') != std::string::npos) {
            p.text = ReplaceLiteral(p.text, " ", step.replacement);
          }
          const bool starts = p.text.compare(0, step.replacement.size(), step.replacement) == 0;
          if (!starts &&
              (step.prepend == Step::kAlways || (step.prepend == Step::kFirst && p.at_origin))) {
            p.text.insert(0, step.replacement);
          }
          if (step.split) {
            PQ_RETURN_IF_ERROR(
                SplitByRegex(*step.regex, Behavior::kMergedWithNext, false, p, &next));
          } else if (!p.text.empty()) {
            next.push_back(std::move(p));
          }
          break;
        }
      }
    }
    pieces->swap(next);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Decoder

Result<Decoder> Decoder::Parse(const json& j, const std::string& what) {
  Decoder d;
  d.null_ = j.is_null();
  if (!d.null_) PQ_RETURN_IF_ERROR(ParseInto(j, what, 0, &d.steps_));
  return d;
}

Status Decoder::ParseInto(const json& j, const std::string& what, int depth,
                          std::vector<Step>* steps) {
  PQ_ASSIGN_OR_RETURN(std::string type, GetType(j, what));
  if (type == "Sequence") {
    auto it = j.find("decoders");
    if (it == j.end() || !it->is_array() || depth > kMaxNesting) {
      return DataLoss(what + ".decoders must be an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      PQ_RETURN_IF_ERROR(
          ParseInto((*it)[i], what + ".decoders[" + std::to_string(i) + "]", depth + 1, steps));
    }
    return Status::Ok();
  }
  Step s{};
  if (type == "ByteLevel") {
    s.kind = Step::kByteLevel;
  } else if (type == "Metaspace") {
    s.kind = Step::kMetaspace;
    PQ_ASSIGN_OR_RETURN(s.text, GetChar(j, "replacement", what));
    std::string scheme = "always";
    if (j.contains("prepend_scheme")) {
      PQ_ASSIGN_OR_RETURN(scheme, GetString(j, "prepend_scheme", what));
    }
    PQ_ASSIGN_OR_RETURN(bool add_prefix_space, GetBool(j, "add_prefix_space", true, what));
    s.prepend_never = scheme == "never" || !add_prefix_space;
  } else if (type == "Replace") {
    s.kind = Step::kReplace;
    PQ_ASSIGN_OR_RETURN(s.text, GetString(j, "content", what));
    auto it = j.find("pattern");
    if (it == j.end()) return DataLoss(what + ".pattern is missing");
    PQ_ASSIGN_OR_RETURN(Regex re, ParsePattern(*it, what + ".pattern"));
    s.regex.emplace(std::move(re));
  } else if (type == "ByteFallback") {
    s.kind = Step::kByteFallback;
  } else if (type == "Fuse") {
    s.kind = Step::kFuse;
  } else if (type == "Strip") {
    s.kind = Step::kStrip;
    PQ_ASSIGN_OR_RETURN(s.text, GetChar(j, "content", what));
    for (auto [key, value] : {std::pair{"start", &s.start}, std::pair{"stop", &s.stop}}) {
      auto it = j.find(key);
      if (it == j.end() || !it->is_number_unsigned()) {
        return DataLoss(what + "." + key + " must be a non-negative integer");
      }
      *value = static_cast<int64_t>(std::min<uint64_t>(it->get<uint64_t>(), 1u << 30));
    }
  } else {
    return Unsupported(what, "decoder", type,
                       "Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip");
  }
  steps->push_back(std::move(s));
  return Status::Ok();
}

std::string Decoder::Apply(std::vector<std::string> tokens) const {
  if (null_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::kByteLevel: {
        std::string all;
        for (const std::string& t : tokens) {
          std::string bytes;
          bool ok = true;
          for (size_t pos = 0; pos < t.size() && ok;) {
            const int b = UnicodeToByte(unicode::DecodeUtf8(t, &pos));
            ok = b >= 0;
            bytes.push_back(static_cast<char>(b));
          }
          all += ok ? bytes : t;
        }
        tokens.assign(1, std::move(all));
        break;
      }
      case Step::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          std::string out;
          const std::string& t = tokens[i];
          for (size_t pos = 0; pos < t.size();) {
            const size_t start = pos;
            unicode::DecodeUtf8(t, &pos);
            if (t.compare(start, pos - start, step.text) == 0) {
              if (i != 0 || step.prepend_never) out += ' ';
            } else {
              out.append(t, start, pos - start);
            }
          }
          tokens[i] = std::move(out);
        }
        break;
      case Step::kReplace:
        for (std::string& t : tokens) {
          auto r = ReplaceAll(*step.regex, t, step.text);
          if (r.ok()) t = std::move(r).value();
        }
        break;
      case Step::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;  // consecutive <0xHH> bytes, kept as raw bytes
        bool have_pending = false;
        for (std::string& t : tokens) {
          const int v = ByteFallbackValue(t);
          if (v >= 0) {
            pending.push_back(static_cast<char>(v));
            have_pending = true;
            continue;
          }
          if (have_pending) out.push_back(std::move(pending));
          pending.clear();
          have_pending = false;
          out.push_back(std::move(t));
        }
        if (have_pending) out.push_back(std::move(pending));
        tokens = std::move(out);
        break;
      }
      case Step::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case Step::kStrip:
        for (std::string& t : tokens) {
          size_t begin = 0, end = t.size();
          for (int64_t k = 0; k < step.start; ++k) {
            if (t.compare(begin, step.text.size(), step.text) != 0) break;
            begin += step.text.size();
          }
          for (int64_t k = 0; k < step.stop && end >= begin + step.text.size(); ++k) {
            if (t.compare(end - step.text.size(), step.text.size(), step.text) != 0) break;
            end -= step.text.size();
          }
          t = t.substr(begin, end - begin);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace pq::tokenizer::hf
