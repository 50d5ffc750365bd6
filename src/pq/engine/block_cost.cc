#include "pq/engine/block_cost.h"

#include <algorithm>
#include <map>
#include <optional>

#include "pq/quant/cost.h"

namespace pq::engine {
namespace {

// A Linear of the layer as loaded, kept while a candidate replaces it.
struct Saved {
  model::LinearWeights* linear = nullptr;
  std::vector<float> w;
  formats::FormatId act_format = formats::FormatId::kBF16;
  std::optional<float> input_global_scale;
};

void Restore(std::vector<Saved>& saved) {
  for (Saved& s : saved) {
    s.linear->w = std::move(s.w);
    s.linear->act_format = s.act_format;
    s.linear->input_global_scale = s.input_global_scale;
  }
  saved.clear();
}

// Replaces every member of `spec` by its candidate in f into `saved` (what Restore puts back;
// on failure the members already replaced are restored here).
Status Replace(const BlockUnitSpec& spec, formats::FormatId f,
               const std::map<std::string, model::LinearWeights*>& by_module,
               const ReplacementFn& replace, std::vector<Saved>& saved) {
  for (const std::string& m : spec.modules) {
    auto it = by_module.find(m);
    Status s = it == by_module.end() ? NotFound("block pricing: " + m + " is not in the layer")
                                     : Status::Ok();
    std::vector<float> scratch;
    Result<LinearReplacement> r = s.ok() ? replace(m, f, scratch) : Result<LinearReplacement>(s);
    if (r.ok() && r->w_hat.size() != it->second->w.size())
      r = InvalidArgument("block pricing: candidate of " + m + " has the wrong size");
    if (!r.ok()) {
      Restore(saved);
      return r.status();
    }
    model::LinearWeights& l = *it->second;
    saved.push_back({&l, std::move(l.w), l.act_format, l.input_global_scale});
    l.w.assign(r->w_hat.begin(), r->w_hat.end());
    l.act_format = f;
    l.input_global_scale =
        f == formats::FormatId::kNVFP4 ? std::optional<float>(r->input_global_scale) : std::nullopt;
  }
  return Status::Ok();
}

}  // namespace

int64_t CountRoutingChanges(std::span<const int32_t> a, std::span<const int32_t> b, int64_t k) {
  if (k <= 0 || a.size() != b.size()) return 0;
  const auto ku = static_cast<size_t>(k);
  std::vector<int32_t> sa(ku), sb(ku);
  int64_t changed = 0;
  for (size_t t = 0; t + ku <= a.size(); t += ku) {
    std::copy_n(a.begin() + static_cast<std::ptrdiff_t>(t), ku, sa.begin());
    std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(t), ku, sb.begin());
    std::sort(sa.begin(), sa.end());
    std::sort(sb.begin(), sb.end());
    changed += sa != sb;
  }
  return changed;
}

namespace {

// The window run from the stored input of its first layer (`first` replacing layers[0]):
// the last layer's output, and every layer's top-k choices (empty for dense layers). `fixed`
// (optional, per layer): route by those.
Status RunWindow(const Runner& runner, const BlockWindow& window, const model::LayerWeights& first,
                 int64_t batch_tokens, std::vector<float>& y,
                 std::vector<std::vector<int32_t>>& topk,
                 const std::vector<std::vector<int32_t>>* fixed) {
  topk.resize(window.layers.size());
  std::vector<float> x;
  for (size_t j = 0; j < window.layers.size(); ++j) {
    const int64_t l = window.first + static_cast<int64_t>(j);
    const model::LayerWeights& w = j == 0 ? first : *window.layers[j];
    const std::span<const int32_t> f =
        fixed ? std::span<const int32_t>((*fixed)[j]) : std::span<const int32_t>();
    if (j == 0) {
      PQ_RETURN_IF_ERROR(runner.RerunLayer(l, w, batch_tokens, y, &topk[j], f));
    } else {
      x.swap(y);
      y.resize(x.size());
      PQ_RETURN_IF_ERROR(runner.RunLayerOn(l, w, x, batch_tokens, y, &topk[j], f));
    }
  }
  return Status::Ok();
}

// quant::BlockEnergy of each sample block of the runner within the first dy.size() / D rows.
std::vector<double> BlockEnergies(const Runner& runner, std::span<const float> dy,
                                  std::span<const float> y, std::span<const float> y_hat) {
  const auto d = static_cast<size_t>(runner.config().hidden);
  const std::vector<size_t> rows = runner.BlockRows();
  std::vector<double> e;
  for (size_t b = 0; b + 1 < rows.size() && rows[b] * d < dy.size(); ++b) {
    const size_t r0 = rows[b] * d, n = std::min(rows[b + 1] * d, dy.size()) - r0;
    e.push_back(quant::BlockEnergy(dy.subspan(r0, n), y.subspan(r0, n), y_hat.subspan(r0, n)));
  }
  if (e.empty()) e.push_back(0.0);
  return e;
}

}  // namespace

Result<std::vector<BlockUnitCost>> PriceBlockUnits(const Runner& runner, const BlockWindow& window,
                                                   std::span<const BlockUnitSpec> units,
                                                   const ReplacementFn& replace,
                                                   const BlockPricingOptions& o) {
  const model::ModelConfig& c = runner.config();
  const auto d = static_cast<size_t>(c.hidden);
  const size_t all = static_cast<size_t>(runner.total_tokens()) * d;
  const size_t size =
      o.samples == 0 || o.samples >= runner.sequences() ? all : runner.offset(o.samples) * d;
  if (o.total_tokens <= 0 || window.dy.size() != all || window.layers.empty() ||
      (window.swap_into && window.swap_into != window.layers[0]))
    return InvalidArgument(
        "block pricing: no scored tokens, no layer, a gradient of the wrong size or a "
        "writable first layer that is not layers[0]");
  const std::span<const float> dy = window.dy.first(size);
  model::LayerWeights copy;  // candidates replace Linears of layers[0] itself, or of a copy
  if (!window.swap_into) copy = *window.layers[0];
  model::LayerWeights& lw = window.swap_into ? *window.swap_into : copy;
  std::map<std::string, model::LinearWeights*> by_module;
  model::ForEachLinear(lw, [&](model::LinearWeights& l) { by_module[l.module] = &l; });
  std::vector<float> y(size), y_hat(size);
  std::vector<std::vector<int32_t>> topk, topk_hat;
  PQ_RETURN_IF_ERROR(RunWindow(runner, window, lw, o.batch_tokens, y, topk, nullptr));
  std::vector<BlockUnitCost> out;
  for (const BlockUnitSpec& spec : units) {
    BlockUnitCost u{spec.unit, {}};
    for (formats::FormatId f : spec.formats) {
      std::vector<Saved> saved;
      PQ_RETURN_IF_ERROR(Replace(spec, f, by_module, replace, saved));
      const Status s = RunWindow(runner, window, lw, o.batch_tokens, y_hat, topk_hat,
                                 o.reroute ? nullptr : &topk);
      Restore(saved);
      PQ_RETURN_IF_ERROR(s.WithContext("block pricing " + spec.unit));
      BlockCandidateCost cc{f, 0, 0, 0, BlockEnergies(runner, dy, y, y_hat)};
      cc.energy = cc.block_energy[0];
      for (size_t b = 1; b < cc.block_energy.size(); ++b) cc.energy += cc.block_energy[b];
      cc.cost = quant::BlockCost(cc.energy, o.total_tokens);
      for (size_t j = 0; j < topk.size(); ++j) {
        const int64_t l = window.first + static_cast<int64_t>(j);
        if (c.IsMoeLayer(l))
          cc.routing_changes += CountRoutingChanges(topk[j], topk_hat[j], c.top_k);
      }
      u.candidates.push_back(cc);
    }
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace pq::engine
