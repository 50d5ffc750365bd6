#include "pq/tokenizer/hf_decoder.h"

#include <algorithm>
#include <utility>

#include "pq/io/json_util.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer::hf {
namespace {

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

}  // namespace

using nlohmann::json;

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
    return ParseSequence(j, "decoders", what, depth,
                         [steps](const json& item, const std::string& w, int d) {
                           return ParseInto(item, w, d, steps);
                         });
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
