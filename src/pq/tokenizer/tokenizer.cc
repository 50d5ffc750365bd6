#include "pq/tokenizer/tokenizer.h"

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "pq/io/file_util.h"
#include "pq/io/json_util.h"
#include "pq/tokenizer/hf_tokenizer.h"
#include "pq/tokenizer/llama2c_tokenizer.h"

namespace pq::tokenizer {

namespace fs = std::filesystem;

Tokenizer::~Tokenizer() = default;

std::optional<int32_t> Tokenizer::bos_id() const { return std::nullopt; }
std::optional<int32_t> Tokenizer::eos_id() const { return std::nullopt; }

namespace {

Result<std::unique_ptr<Tokenizer>> LoadFile(const fs::path& file) {
  const std::string path = file.string();
  if (file.extension() == ".json") {
    const std::string config = (file.parent_path() / "tokenizer_config.json").string();
    PQ_ASSIGN_OR_RETURN(auto t, HfTokenizer::Load(path, config));
    return std::unique_ptr<Tokenizer>(std::move(t));
  }
  PQ_ASSIGN_OR_RETURN(auto t, Llama2cTokenizer::Load(path));
  return std::unique_ptr<Tokenizer>(std::move(t));
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir_or_file) {
  std::error_code ec;
  const fs::path p(model_dir_or_file);
  const fs::file_status st = fs::status(p, ec);
  if (ec || !fs::exists(st)) {
    return NotFound(model_dir_or_file + ": no such tokenizer file or model directory");
  }
  if (!fs::is_directory(st)) return LoadFile(p);
  for (const char* name : {"tokenizer.json", "tokenizer.bin"}) {
    if (fs::exists(p / name, ec)) return LoadFile(p / name);
  }
  return NotFound(model_dir_or_file +
                  ": no tokenizer in this directory (looked for tokenizer.json and "
                  "tokenizer.bin; tokenizer.model / vocab.json + merges.txt alone are not "
                  "supported, convert them to tokenizer.json)");
}

Result<std::vector<int32_t>> ReadTokenIds(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(std::string text, io::ReadFileToString(path));
  std::vector<int32_t> ids;
  size_t line = 1;
  size_t i = 0;
  const size_t n = text.size();
  auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  while (i < n) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      ++i;
    } else if (is_space(c)) {
      ++i;
    } else if (c == '#') {
      while (i < n && text[i] != '\n') ++i;
    } else {
      size_t j = i;
      while (j < n && !is_space(text[j]) && text[j] != '#') ++j;
      const std::string_view word(text.data() + i, j - i);
      int64_t v = 0;
      bool ok = true;
      for (char d : word) {
        if (d < '0' || d > '9') {
          ok = false;
          break;
        }
        v = v * 10 + (d - '0');
        if (v > INT32_MAX) break;
      }
      const std::string where = path + ":" + std::to_string(line) + ": ";
      if (!ok) {
        return InvalidArgument(where + io::Quote(word.substr(0, 40)) +
                               " is not a token id (expected non-negative decimal integers "
                               "separated by whitespace; '#' starts a comment)");
      }
      if (v > INT32_MAX) {
        return InvalidArgument(where + "token id " + std::string(word.substr(0, 40)) +
                               " is out of range (largest allowed: 2147483647)");
      }
      ids.push_back(static_cast<int32_t>(v));
      i = j;
    }
  }
  if (ids.empty()) {
    return InvalidArgument(path +
                           ": no token ids in the file (expected decimal ids separated "
                           "by whitespace)");
  }
  return ids;
}

}  // namespace pq::tokenizer
