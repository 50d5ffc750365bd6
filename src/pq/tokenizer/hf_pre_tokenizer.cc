#include "pq/tokenizer/hf_pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "pq/io/json_util.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer::hf {
namespace {

using nlohmann::json;

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex = true).
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

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

// Appends the byte-level form of `s` (every byte replaced by its character) to `out`.
void AppendByteLevel(std::string_view s, std::string* out) {
  const auto& table = ByteToUnicode();
  for (char c : s) *out += table[static_cast<unsigned char>(c)];
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

using nlohmann::json;

Result<PreTokenizer> PreTokenizer::Parse(const json& j, const std::string& what) {
  PreTokenizer p;
  if (!j.is_null()) PQ_RETURN_IF_ERROR(ParseInto(j, what, 0, &p.steps_));
  return p;
}

Status PreTokenizer::ParseInto(const json& j, const std::string& what, int depth,
                               std::vector<Step>* steps) {
  PQ_ASSIGN_OR_RETURN(std::string type, GetType(j, what));
  if (type == "Sequence") {
    return ParseSequence(j, "pretokenizers", what, depth,
                         [steps](const json& item, const std::string& w, int d) {
                           return ParseInto(item, w, d, steps);
                         });
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

}  // namespace pq::tokenizer::hf
