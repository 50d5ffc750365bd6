#include "pq/engine/generate_text.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>

#include "pq/core/utf8.h"
#include "pq/tokenizer/tokenizer.h"

namespace pq::engine {
namespace {

// MODEL's tokenizer location: the model directory, or the directory of a model file.
std::string DefaultTokenizerPath(const std::string& model) {
  namespace fs = std::filesystem;
  std::string path = fs::is_directory(model) ? model : fs::path(model).parent_path().string();
  return path.empty() ? "." : path;
}

// BOS (when asked) + the prompt's ids, each checked against the model's vocabulary.
Result<std::vector<int32_t>> PromptIds(const GenerateTextOptions& o,
                                       const tokenizer::Tokenizer& tok,
                                       const model::ModelConfig& c) {
  PQ_ASSIGN_OR_RETURN(std::vector<int32_t> text_ids, tok.Encode(o.prompt));
  std::vector<int32_t> ids;
  if (o.add_bos) {
    const int32_t bos = tok.bos_id() ? *tok.bos_id() : c.bos_id;
    if (bos < 0)
      return InvalidArgument(o.model + ": no BOS token known (tokenizer or config.json " +
                             "bos_token_id); pass --no-bos");
    ids.push_back(bos);
  }
  ids.insert(ids.end(), text_ids.begin(), text_ids.end());
  for (int32_t id : ids)
    if (id < 0 || id >= c.vocab)
      return InvalidArgument("prompt token id " + std::to_string(id) + " is outside the model's " +
                             "vocabulary of " + std::to_string(c.vocab));
  return ids;
}

// config.json's EOS, then the tokenizer's, each once.
std::vector<int32_t> EosIds(const model::ModelConfig& c, const tokenizer::Tokenizer& tok) {
  std::vector<int32_t> ids;
  for (std::optional<int32_t> e : {std::optional<int32_t>(c.eos_id), tok.eos_id()})
    if (e && *e >= 0 && std::find(ids.begin(), ids.end(), *e) == ids.end()) ids.push_back(*e);
  return ids;
}

// The continuation as text: decode(prompt + new) minus decode(prompt) when that is a prefix
// (keeps the spaces a SentencePiece decoder strips at the start of a text).
std::string Continuation(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& prompt,
                         const std::vector<int32_t>& gen) {
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const std::string full = tok.Decode(all), head = tok.Decode(prompt);
  if (full.compare(0, head.size(), head) == 0) return full.substr(head.size());
  return tok.Decode(gen);
}

// The shown ids (prompt without BOS, then new tokens without EOS) and how much of their
// decoded text has been handed to on_text.
class TextStream {
 public:
  TextStream(const tokenizer::Tokenizer& tok, std::vector<int32_t> shown,
             const std::function<void(std::string_view)>& on_text)
      : tok_(tok), shown_(std::move(shown)), on_text_(on_text) {}

  void Add(int32_t id) {
    shown_.push_back(id);
    Flush(false);
  }

  // Hands on the decoded text not handed on yet; unless `final`, up to the last complete
  // UTF-8 character.
  void Flush(bool final) {
    if (!on_text_) return;
    const std::string s = tok_.Decode(shown_);
    const size_t upto = final ? s.size() : CompleteUtf8PrefixLength(s);
    if (upto <= emitted_) return;
    on_text_(std::string_view(s).substr(emitted_, upto - emitted_));
    emitted_ = upto;
  }

 private:
  const tokenizer::Tokenizer& tok_;
  std::vector<int32_t> shown_;
  const std::function<void(std::string_view)>& on_text_;
  size_t emitted_ = 0;
};

}  // namespace

Result<GenerateTextResult> GenerateText(const GenerateTextOptions& o,
                                        const std::function<void(std::string_view)>& on_text) {
  ScopedExecContext exec_scope(o.exec);
  PQ_ASSIGN_OR_RETURN(auto src, model::WeightSource::Open(o.model));
  if (o.weights_only) {
    src->set_linear_hook([](model::LinearWeights& l) {
      l.act_format = formats::FormatId::kBF16;
      l.input_global_scale.reset();
      return Status::Ok();
    });
  }
  PQ_ASSIGN_OR_RETURN(
      auto tok,
      tokenizer::LoadTokenizer(o.tokenizer.empty() ? DefaultTokenizerPath(o.model) : o.tokenizer));
  const model::ModelConfig& c = src->config();
  GenerateTextResult r;
  r.prompt = o.prompt;
  r.temperature = o.generate.temperature;
  r.top_p = o.generate.top_p;
  r.seed = o.generate.seed;
  PQ_ASSIGN_OR_RETURN(r.prompt_tokens, PromptIds(o, *tok, c));
  GenerateOptions g = o.generate;
  g.eos_ids = EosIds(c, *tok);

  const std::vector<int32_t> shown_prompt(r.prompt_tokens.begin() + (o.add_bos ? 1 : 0),
                                          r.prompt_tokens.end());
  std::vector<int32_t> new_text_ids;
  TextStream stream(*tok, shown_prompt, on_text);
  stream.Flush(false);
  auto on_token = [&](int32_t t) {
    if (std::find(g.eos_ids.begin(), g.eos_ids.end(), t) != g.eos_ids.end()) return;
    new_text_ids.push_back(t);
    stream.Add(t);
  };
  PQ_ASSIGN_OR_RETURN(r.generated, Generate(*src, r.prompt_tokens, g, on_token));
  stream.Flush(true);
  r.text = Continuation(*tok, shown_prompt, new_text_ids);
  return r;
}

nlohmann::json GenerateTextResult::ToJson() const {
  return {{"prompt", prompt},
          {"prompt_tokens", prompt_tokens},
          {"text", text},
          {"tokens", generated.tokens},
          {"new_tokens", generated.tokens.size()},
          {"stop", StopReasonName(generated.stop)},
          {"mean_nll", generated.mean_nll},
          {"tokens_per_s", generated.tokens_per_s},
          {"seconds", generated.seconds},
          {"temperature", temperature},
          {"top_p", top_p},
          {"seed", seed},
          {"resident", generated.resident}};
}

}  // namespace pq::engine
