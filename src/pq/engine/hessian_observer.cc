#include "pq/engine/hessian_observer.h"

#include "pq/compute/ops.h"

namespace pq::engine {

void HessianObserver::Want(const model::LinearWeights& l, const std::string& group) {
  group_of_[l.module] = group;
  if (h_.count(group)) return;
  leader_[l.module] = true;
  Entry& e = h_[group];
  e.h.assign(static_cast<size_t>(l.cols * l.cols), 0.0f);
  e.rows = 0;
}

void HessianObserver::AddSums(dist::Sums& sums) {
  for (auto& [group, e] : h_) {
    sums.Add(std::span(e.h));
    sums.Add(e.rows);
  }
}

const HessianObserver::Entry* HessianObserver::Find(const std::string& module) const {
  const auto g = group_of_.find(module);
  return g == group_of_.end() ? nullptr : &h_.at(g->second);
}

void HessianObserver::OnLinearInput(const model::LinearWeights& l, std::span<const float> x,
                                    int64_t rows) {
  if (!leader_.count(l.module) || rows == 0) return;
  Entry& e = h_.at(group_of_.at(l.module));
  // H += XᵀX: the weight-gradient product with X in place of the output gradient.
  compute::cpu::MatMulBackward(x.first(static_cast<size_t>(rows * l.cols)), x, {}, {}, e.h, {},
                               rows, l.cols, l.cols);
  e.rows += rows;
}

}  // namespace pq::engine
