#include "pq/io/json_util.h"

#include <utility>
#include <vector>

#include "pq/io/file_util.h"

namespace pq::io {
namespace {

using json = nlohmann::json;

// A SAX handler that builds a json DOM like nlohmann's own, but rejects duplicate keys and
// excessive nesting and records parse errors as text instead of throwing.
class StrictDomBuilder {
 public:
  bool null() { return AddValue(json(nullptr)); }
  bool boolean(bool v) { return AddValue(json(v)); }
  bool number_integer(json::number_integer_t v) { return AddValue(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return AddValue(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t& /*text*/) {
    return AddValue(json(v));
  }
  bool string(json::string_t& v) { return AddValue(json(std::move(v))); }
  bool binary(json::binary_t& v) { return AddValue(json::binary(std::move(v))); }

  bool start_object(std::size_t /*n*/) { return Open(json::object()); }
  bool key(json::string_t& k) {
    json* obj = stack_.back();
    if (obj->contains(k)) {
      error_ = "duplicate key " + Quote(k);
      if (stack_.size() > 1) error_ += " in the value of " + Quote(labels_.back());
      return false;
    }
    // Insert now so the slot exists; the value replaces the null placeholder.
    pending_ = &(*obj)[k];
    key_ = k;
    return true;
  }
  bool end_object() { return Close(); }
  bool start_array(std::size_t /*n*/) { return Open(json::array()); }
  bool end_array() { return Close(); }

  bool parse_error(std::size_t /*pos*/, const std::string& /*last_token*/,
                   const json::exception& ex) {
    // ex.what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ...".
    std::string what = ex.what();
    if (!what.empty() && what[0] == '[') {
      size_t close = what.find("] ");
      if (close != std::string::npos) what = what.substr(close + 2);
    }
    error_ = "invalid JSON: " + what;
    return false;
  }

  json& root() { return root_; }
  const std::string& error() const { return error_; }

 private:
  // Stores `v` where the parser is: the root, the next array element or the pending key.
  // Returns a pointer to the stored value.
  json* Store(json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json* top = stack_.back();
    if (top->is_array()) {
      top->push_back(std::move(v));
      return &top->back();
    }
    *pending_ = std::move(v);
    return pending_;
  }
  bool AddValue(json v) {
    Store(std::move(v));
    return true;
  }
  bool Open(json container) {
    if (static_cast<int>(stack_.size()) >= kMaxJsonDepth) {
      error_ = "nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels";
      return false;
    }
    std::string label;
    if (!stack_.empty()) {
      label = key_;
      if (stack_.back()->is_array()) {
        label = std::to_string(stack_.back()->size());
        label.insert(0, 1, '[').push_back(']');
      }
    }
    stack_.push_back(Store(std::move(container)));
    labels_.push_back(std::move(label));
    return true;
  }
  bool Close() {
    stack_.pop_back();
    labels_.pop_back();
    return true;
  }

  json root_;
  std::vector<json*> stack_;         // open containers; pointers stay valid (see Store)
  std::vector<std::string> labels_;  // for each open container, the key holding it
  json* pending_ = nullptr;          // the value slot of the last key read
  std::string key_;                  // the last key read
  std::string error_;
};

}  // namespace

Result<json> ParseJson(std::string_view text, const std::string& source) {
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore what follows;
  // JSON allows NUL nowhere (not even unescaped inside strings).
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos) {
    return DataLoss(source + ": invalid JSON: NUL byte at offset " + std::to_string(nul));
  }
  StrictDomBuilder builder;
  const bool ok = json::sax_parse(text.begin(), text.end(), &builder, json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (!ok) {
    std::string why = builder.error().empty() ? "invalid JSON" : builder.error();
    return DataLoss(source + ": " + why);
  }
  return std::move(builder.root());
}

Result<json> ReadJsonFile(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseJson(text, path);
}

std::string Quote(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string JsonTypeName(const json& j) {
  if (j.is_number_float()) return "non-integer number";
  if (j.is_number_unsigned() || j.is_number_integer()) return "integer";
  return j.type_name();
}

}  // namespace pq::io
