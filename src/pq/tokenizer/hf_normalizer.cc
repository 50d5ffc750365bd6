#include "pq/tokenizer/hf_normalizer.h"

#include <algorithm>
#include <utility>

#include "pq/io/json_util.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer::hf {

using nlohmann::json;

Result<Normalizer> Normalizer::Parse(const json& j, const std::string& what) {
  Normalizer n;
  if (!j.is_null()) PQ_RETURN_IF_ERROR(ParseInto(j, what, 0, &n.steps_));
  return n;
}

Status Normalizer::ParseInto(const json& j, const std::string& what, int depth,
                             std::vector<Step>* steps) {
  PQ_ASSIGN_OR_RETURN(std::string type, GetType(j, what));
  if (type == "Sequence") {
    return ParseSequence(j, "normalizers", what, depth,
                         [steps](const json& item, const std::string& w, int d) {
                           return ParseInto(item, w, d, steps);
                         });
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

}  // namespace pq::tokenizer::hf
