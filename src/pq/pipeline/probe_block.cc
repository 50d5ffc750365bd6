#include "pq/pipeline/probe_block.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "pq/dist/block_fold.h"
#include "pq/dist/comm.h"
#include "pq/pipeline/probe_dist.h"
#include "pq/quant/cost.h"

namespace pq::pipeline {
namespace {

// The decision units of a layer's Linears (in first-member order), each with the formats all
// of its members hold.
std::vector<engine::BlockUnitSpec> LayerUnits(
    const model::LayerWeights& lw, const std::map<std::string, const model::LinearInfo*>& info,
    const std::vector<formats::FormatId>& fmts) {
  std::vector<engine::BlockUnitSpec> units;
  std::map<std::string, size_t> index;
  model::ForEachLinear(lw, [&](const model::LinearWeights& l) {
    const std::string& u = info.at(l.module)->unit;
    auto [it, added] = index.emplace(u, units.size());
    if (added) units.push_back({u, {}, fmts});
    units[it->second].modules.push_back(l.module);
    std::erase_if(units[it->second].formats, [&](formats::FormatId id) {
      return !formats::CheckShape(id, l.rows, l.cols).ok();
    });
  });
  return units;
}

}  // namespace

ProbeBlockPricing::ProbeBlockPricing(const ProbeOptions& o, const model::ModelConfig& config,
                                     const std::map<std::string, const model::LinearInfo*>& info,
                                     const std::vector<formats::FormatId>& formats,
                                     const WorkDir& work,
                                     const std::vector<engine::Sequence>& samples)
    : o_(o), config_(config), info_(info), formats_(formats), work_(work) {
  const size_t n =
      o.block_samples > 0 ? std::min<size_t>(o.block_samples, samples.size()) : samples.size();
  for (size_t s = 0; s < n; ++s)
    for (int32_t t : samples[s].targets) scored_tokens_ += t >= 0;
}

int64_t ProbeBlockPricing::WindowEnd(int64_t l) const {
  const int64_t top = config_.num_layers;
  return o_.block_layers <= 0 ? top : std::min(top, l + o_.block_layers);
}

bool ProbeBlockPricing::Needed(int64_t b, int64_t below) const {
  if (!o_.block_cost) return false;
  for (int64_t l = std::min(below, b - 2); l >= 0 && WindowEnd(l) >= b; --l)
    if (WindowEnd(l) == b && config_.IsMoeLayer(l)) return true;
  return false;
}

Status ProbeBlockPricing::Start(int64_t top, std::span<const float> dy) {
  grads_.clear();
  if (Needed(top + 1, top)) grads_[top + 1].assign(dy.begin(), dy.end());
  for (int64_t b = top + 2; b <= config_.num_layers; ++b) {
    if (!Needed(b, top) || !std::filesystem::exists(work_.grad_dir(b))) continue;
    const auto d = static_cast<int64_t>(config_.hidden), rows = static_cast<int64_t>(dy.size()) / d;
    PQ_ASSIGN_OR_RETURN(
        grads_[b], ReadRankGrad(work_, b, total_rows_ < 0 ? rows : total_rows_, row0_, rows, d));
  }
  return Status::Ok();
}

Status ProbeBlockPricing::PriceLayer(const engine::Runner& runner,
                                     const engine::ProbeObserver& probe,
                                     const model::WeightSource& src, int64_t l,
                                     model::LayerWeights& lw, std::span<const float> dy) {
  units_.clear();
  if (!o_.block_cost || !config_.IsMoeLayer(l)) return Status::Ok();
  // The window: this layer and the next ones up to its end, or to the last boundary whose
  // gradient is here (a work dir of an older run may lack it).
  int64_t end = WindowEnd(l);
  while (end > l + 1 && !grads_.count(end)) --end;
  std::vector<model::LayerWeights> above;
  for (int64_t j = l + 1; j < end; ++j) {
    PQ_ASSIGN_OR_RETURN(model::LayerWeights wj, src.LoadLayer(j));
    above.push_back(std::move(wj));
  }
  // Candidates are swapped into the resident layer (and back) rather than into a copy of it.
  engine::BlockWindow window{l, {&lw}, end == l + 1 ? dy : grads_.at(end), &lw};
  for (const auto& wj : above) window.layers.push_back(&wj);
  engine::BlockPricingOptions bo;
  bo.total_tokens = scored_tokens_;
  bo.batch_tokens = o_.hessian_batch_tokens;
  bo.reroute = o_.block_reroute;
  if (o_.block_samples > 0 && rank_samples_ >= 0) {  // this rank's samples below the limit
    const int64_t mine = std::clamp<int64_t>(o_.block_samples - first_sample_, 0, rank_samples_);
    if (mine == 0) {  // none here: no energies, but the same units in the fold as every rank
      units_.clear();
      for (const engine::BlockUnitSpec& spec : LayerUnits(lw, info_, formats_)) {
        engine::BlockUnitCost u{spec.unit, {}};
        for (formats::FormatId f : spec.formats) u.candidates.push_back({f, 0, 0, 0, {}});
        units_.push_back(std::move(u));
      }
      return ReduceUnits();
    }
    bo.samples = static_cast<size_t>(mine);
  } else {
    bo.samples = static_cast<size_t>(std::max<int64_t>(o_.block_samples, 0));
  }
  const engine::ReplacementFn replace =
      [&](const std::string& m, formats::FormatId f,
          std::vector<float>& scratch) -> Result<engine::LinearReplacement> {
    PQ_ASSIGN_OR_RETURN(auto pc, probe.Priced(m, f, scratch));
    return engine::LinearReplacement{pc.w_hat, pc.input_global_scale};
  };
  PQ_ASSIGN_OR_RETURN(units_, engine::PriceBlockUnits(
                                  runner, window, LayerUnits(lw, info_, formats_), replace, bo));
  return ReduceUnits();
}

Status ProbeBlockPricing::ReduceUnits() {
  std::vector<double> energy;
  std::vector<int64_t> changes;
  size_t blocks = 0;
  for (const engine::BlockUnitCost& u : units_)
    for (const engine::BlockCandidateCost& c : u.candidates) {
      energy.push_back(0);
      changes.push_back(c.routing_changes);
      blocks = c.block_energy.size();
    }
  if (energy.empty()) return Status::Ok();  // the same on every rank
  dist::Sums sums;
  sums.Add(std::span(energy));
  dist::BlockFold fold;
  if (blocks == 0) fold.EndNoBlocks();  // this rank re-ran none of its samples
  for (size_t b = 0; b < blocks; ++b) {
    size_t i = 0;
    for (const engine::BlockUnitCost& u : units_)
      for (const engine::BlockCandidateCost& c : u.candidates) energy[i++] = c.block_energy[b];
    fold.EndBlock(sums, b + 1 == blocks);
  }
  PQ_RETURN_IF_ERROR(fold.Finish(sums, /*everywhere=*/false));
  PQ_RETURN_IF_ERROR(dist::AllSum(changes));
  size_t i = 0;
  for (engine::BlockUnitCost& u : units_)
    for (engine::BlockCandidateCost& c : u.candidates) {
      c.energy = energy[i];
      c.cost = quant::BlockCost(c.energy, scored_tokens_);
      c.routing_changes = changes[i++];
    }
  return Status::Ok();
}

void ProbeBlockPricing::Apply(std::vector<engine::LinearResult>& results) const {
  const auto kBlock = static_cast<size_t>(quant::CostEstimator::kBlock);
  const auto kOutput = static_cast<size_t>(quant::CostEstimator::kOutput);
  const auto kHessian = static_cast<size_t>(quant::CostEstimator::kHessian);
  for (const engine::BlockUnitCost& u : units_) {
    for (const engine::BlockCandidateCost& bc : u.candidates) {
      std::vector<engine::CandidateResult*> members;
      std::vector<double> share, params;
      for (engine::LinearResult& r : results) {
        if (info_.at(r.module)->unit != u.unit) continue;
        for (engine::CandidateResult& c : r.candidates)
          if (c.format == bc.format) {
            members.push_back(&c);
            // output (its own share of the unit's output error); hessian when not recorded
            const double out = c.cost[kOutput];
            share.push_back(std::isnan(out) ? c.cost[kHessian] : out);
            params.push_back(static_cast<double>(r.rows * r.cols));
          }
      }
      const std::vector<double> part = quant::SplitUnitCost(bc.cost, share, params);
      for (size_t i = 0; i < members.size(); ++i) {
        members[i]->cost[kBlock] = part[i];
        members[i]->routing_changes = bc.routing_changes;
      }
    }
  }
}

void ProbeBlockPricing::Finished(int64_t l, std::span<const float> grad) {
  if (Needed(l, l - 1)) grads_[l].assign(grad.begin(), grad.end());
  for (int64_t b = l + 1; b <= config_.num_layers; ++b) {
    if (Needed(b, l - 1)) continue;
    grads_.erase(b);
    if (dist::Rank() == 0) RemoveBoundaryGrad(work_, b);  // rank 0 writes the work dir
  }
}

}  // namespace pq::pipeline
