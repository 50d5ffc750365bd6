#include "pq/pipeline/probe_dist.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <string>

#include "pq/core/io_clock.h"
#include "pq/core/log.h"
#include "pq/dist/comm.h"

namespace pq::pipeline {

std::function<void(bool)> BlockReduction::Hook() {
  return [this](bool last) {
    if (active_) fold_.EndBlock(sums_, last);
  };
}

void BlockReduction::Collect(const std::function<void(dist::Sums&)>& add) {
  sums_ = dist::Sums();
  add(sums_);
  fold_ = dist::BlockFold();
  active_ = true;
}

Status BlockReduction::Finish(bool everywhere) {
  if (!active_) return Internal("BlockReduction::Finish without Collect");
  active_ = false;
  return fold_.Finish(sums_, everywhere);
}

Status ReduceInputAmax(engine::ProbeObserver& probe, const model::ModelLayout& layout) {
  if (dist::Size() == 1) return Status::Ok();
  const std::map<std::string, float>& have = probe.input_amax();
  std::vector<float> v;  // -1: not seen on this rank
  for (const auto& li : layout.linears) {
    const auto it = have.find(li.module);
    v.push_back(it == have.end() ? -1.0f : it->second);
  }
  PQ_RETURN_IF_ERROR(dist::AllMax(v));
  std::map<std::string, float> all;
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] >= 0) all[layout.linears[i].module] = v[i];
  probe.set_input_amax(std::move(all));
  return Status::Ok();
}

Status ReduceHeadNll(engine::HeadResult& hr) {
  double acc = 0;
  dist::Sums s;
  s.Add(acc);
  dist::BlockFold fold;
  for (size_t b = 0; b < hr.block_nll.size(); ++b) {
    acc = hr.block_nll[b];
    fold.EndBlock(s, b + 1 == hr.block_nll.size());
  }
  PQ_RETURN_IF_ERROR(fold.Finish(s, /*everywhere=*/true));
  hr.nll_sum = acc;
  return dist::AllSum(std::span(&hr.scored, 1));
}

Status WriteRankGrad(const WorkDir& w, int64_t boundary, std::span<const float> grad) {
  if (dist::Size() == 1) return WriteBoundaryGrad(w, boundary, grad);
  std::vector<float> all;
  PQ_RETURN_IF_ERROR(dist::Gather(grad, all, 0));
  return dist::Rank() == 0 ? WriteBoundaryGrad(w, boundary, all) : Status::Ok();
}

Result<std::vector<float>> ReadRankGrad(const WorkDir& w, int64_t boundary, int64_t total_rows,
                                        int64_t row0, int64_t rows, int64_t hidden) {
  PQ_ASSIGN_OR_RETURN(std::vector<float> all,
                      ReadBoundaryGrad(w, boundary, static_cast<size_t>(total_rows * hidden)));
  if (row0 == 0 && rows == total_rows) return all;
  return std::vector<float>(all.begin() + row0 * hidden, all.begin() + (row0 + rows) * hidden);
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Status LogRankTimes(const std::string& stage, double start_s, const char* count_label,
                    int64_t count) {
  if (!dist::Built()) return Status::Ok();
  const double comm = dist::CommSeconds();  // before the gather below
  constexpr size_t kValues = 5;  // wall, reduction, I/O, cpu, count
  const std::vector<double> mine = {NowSeconds() - start_s, comm, IoSeconds(),
                                    static_cast<double>(std::clock()) / CLOCKS_PER_SEC,
                                    static_cast<double>(count)};
  std::vector<double> all;
  PQ_RETURN_IF_ERROR(dist::Gather(mine, all, 0));
  if (dist::Rank() != 0) return Status::Ok();
  for (size_t r = 0; r + kValues <= all.size(); r += kValues) {
    const double wall = all[r], reduction = all[r + 1], io = all[r + 2];
    char line[280];
    int n = std::snprintf(
        line, sizeof line,
        "%s: rank %zu of %d: %.2f s, compute %.2f s, I/O %.2f s, reduction %.2f s; cpu %.2f s",
        stage.c_str(), r / kValues, dist::Size(), wall, std::max(0.0, wall - reduction - io), io,
        reduction, all[r + 3]);
    if (count_label && n > 0 && static_cast<size_t>(n) < sizeof line)
      std::snprintf(line + n, sizeof line - static_cast<size_t>(n), "; %.0f %s", all[r + 4],
                    count_label);
    LogInfo(line);
  }
  return Status::Ok();
}

}  // namespace pq::pipeline
