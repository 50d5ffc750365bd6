// The probe across ranks (DESIGN §7): each rank runs the calibration samples
// of its sample blocks; every sum over samples is folded canonically (dist/block_fold.h) per
// layer; rank 0 alone writes the work dir. With one rank (or no MPI) each call here is the
// identity, so the probe's code is the same on every build.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/dist/block_fold.h"
#include "pq/engine/probe_observer.h"
#include "pq/engine/runner.h"
#include "pq/model/arch.h"
#include "pq/pipeline/work_dir.h"

namespace pq::pipeline {

// The sums of one layer folded over the sample blocks: Collect registers them, the runner's
// on_block_end (Hook) ends each block, Finish folds them across ranks.
class BlockReduction {
 public:
  // For RunnerOptions::on_block_end: ends a block of the sums being collected (if any).
  std::function<void(bool last)> Hook();
  void Collect(const std::function<void(dist::Sums&)>& add);
  // The canonical totals into the collected accumulators (on every rank when `everywhere`,
  // else on rank 0); stops collecting. Collective.
  Status Finish(bool everywhere);

 private:
  dist::Sums sums_;
  dist::BlockFold fold_;
  bool active_ = false;
};

// The input amax of every Linear the ranks saw, the maximum over ranks, on every rank.
Status ReduceInputAmax(engine::ProbeObserver& probe, const model::ModelLayout& layout);
// The head's NLL sum folded over the sample blocks of every rank (hr.block_nll), and the scored
// tokens summed; on every rank.
Status ReduceHeadNll(engine::HeadResult& hr);

// The rows of every rank's boundary gradient [rank's tokens, D], in sample order: written by
// rank 0 to W/probe/grad_b.
Status WriteRankGrad(const WorkDir& w, int64_t boundary, std::span<const float> grad);
// This rank's rows [row0, row0 + rows) of W/probe/grad_b (total_rows rows of `hidden`).
Result<std::vector<float>> ReadRankGrad(const WorkDir& w, int64_t boundary, int64_t total_rows,
                                        int64_t row0, int64_t rows, int64_t hidden);

// With MPI: rank 0 logs each rank's wall time since `start_s` (steady clock, seconds) split
// into compute, I/O (core/io_clock.h: checkpoint reads, file writes) and reduction (time in
// dist calls, waiting included), and its
// process CPU time, and `count` with its label when one is given ("; 12 Linears quantized").
// Collective; nothing without MPI.
Status LogRankTimes(const std::string& stage, double start_s, const char* count_label = nullptr,
                    int64_t count = 0);
double NowSeconds();

}  // namespace pq::pipeline
