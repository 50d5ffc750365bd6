#include "pq/engine/hessian_observer.h"

#include <cstring>

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

int64_t HessianObserver::SavedFloats() const {
  int64_t n = 0;
  for (const auto& [group, e] : h_) n += static_cast<int64_t>(e.h.size()) + 2;
  return n;
}

void HessianObserver::Save(std::span<float> out) const {
  static_assert(sizeof(int64_t) == 2 * sizeof(float));
  size_t at = 0;
  for (const auto& [group, e] : h_) {
    std::copy(e.h.begin(), e.h.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
    at += e.h.size();
    std::memcpy(out.data() + at, &e.rows, sizeof(int64_t));
    at += 2;
  }
}

Status HessianObserver::Load(std::span<const float> in) {
  if (static_cast<int64_t>(in.size()) < SavedFloats())
    return Internal("HessianObserver::Load: fewer values than the wanted Hessians");
  size_t at = 0;
  for (auto& [group, e] : h_) {
    std::copy_n(in.begin() + static_cast<std::ptrdiff_t>(at), e.h.size(), e.h.begin());
    at += e.h.size();
    std::memcpy(&e.rows, in.data() + at, sizeof(int64_t));
    at += 2;
  }
  return Status::Ok();
}

const HessianObserver::Entry* HessianObserver::Find(const std::string& module) const {
  const auto g = group_of_.find(module);
  return g == group_of_.end() ? nullptr : &h_.at(g->second);
}

void HessianObserver::OnLinearInput(const model::LinearWeights& l, std::span<const float> x,
                                    int64_t rows) {
  if (!leader_.count(l.module) || rows == 0) return;
  Entry& e = h_.at(group_of_.at(l.module));
  compute::cpu::GramUpdate(x.first(static_cast<size_t>(rows * l.cols)), e.h, rows, l.cols);
  e.rows += rows;
}

}  // namespace pq::engine
