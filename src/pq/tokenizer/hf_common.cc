#include "pq/tokenizer/hf_common.h"

#include <utility>
#include <vector>

#include "pq/io/json_util.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer::hf {

using nlohmann::json;

Status Unsupported(const std::string& what, const std::string& kind, const std::string& type,
                   const char* supported) {
  return Unimplemented(what + ": " + kind + " type " + io::Quote(type) +
                       " is not supported (supported: " + supported + ")");
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

Status ParseSequence(const json& obj, const char* key, const std::string& what, int depth,
                     const std::function<Status(const json&, const std::string&, int)>& parse) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array() || depth > kMaxNesting)
    return DataLoss(what + "." + key + " must be an array");
  for (size_t i = 0; i < it->size(); ++i)
    PQ_RETURN_IF_ERROR(
        parse((*it)[i], what + "." + key + "[" + std::to_string(i) + "]", depth + 1));
  return Status::Ok();
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

}  // namespace pq::tokenizer::hf
