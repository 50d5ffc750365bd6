// The canonical reduction of sums over calibration samples (DESIGN §7).
//
// The samples are cut into fixed blocks of B consecutive samples (B chosen by the user, the
// same on every build; one block when unset). Each block's statistics are accumulated from
// zero, as one run would accumulate them, and the blocks' partial sums are folded left in
// block order: total = ((p_0 + p_1) + p_2) + ...  (p_0 itself, not 0 + p_0). Ranks own
// consecutive blocks, so the result is the same bits for any number of ranks and for the
// build without MPI; with one block it is the one-run sum bit for bit.
//
// Use: register the accumulators (Sums), let the samples of a block accumulate into them, call
// EndBlock after each of this rank's blocks, then Finish (collective) for the total.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "pq/core/status.h"

namespace pq::dist {

// References to accumulators, in an order every rank registers identically.
class Sums {
 public:
  void Add(std::span<double> v) { f64_.push_back(v); }
  void Add(std::span<float> v) { f32_.push_back(v); }
  void Add(double& v) { f64_.emplace_back(&v, 1); }
  void Add(int64_t& v) { i64_.push_back(&v); }

  // The values, flat, by type (registration order within each).
  struct Values {
    std::vector<double> f64;
    std::vector<float> f32;
    std::vector<int64_t> i64;
  };
  Values Save() const;
  void Load(const Values& v) const;
  void Zero() const;
  // acc ← acc + v (each element; IEEE addition commutes, so this is v + acc bit for bit).
  void AddFrom(const Values& v) const;
  size_t doubles() const, floats() const;
  size_t ints() const { return i64_.size(); }

 private:
  std::vector<std::span<double>> f64_;
  std::vector<std::span<float>> f32_;
  std::vector<int64_t*> i64_;
};

class BlockFold {
 public:
  // One of this rank's blocks ended; `last`: its last block. Earlier blocks are saved and the
  // accumulators zeroed; rank 0 folds as it goes; the last block stays in the accumulators.
  void EndBlock(const Sums& s, bool last);
  // Instead of EndBlock: this rank has no block in this reduction (a subset of the samples
  // that ends before its own); it passes the fold of the ranks before it on unchanged. Not
  // on rank 0.
  void EndNoBlocks();
  // The canonical total of every rank's blocks into the accumulators of rank 0, or of every
  // rank when `everywhere` (other ranks' accumulators are left undefined). Collective; resets.
  // Every rank must have ended its last block (or EndNoBlocks).
  Status Finish(const Sums& s, bool everywhere);

 private:
  bool have_total_ = false;  // rank 0: total_ holds the fold of its finished blocks
  Sums::Values total_;
  std::vector<Sums::Values> partials_;  // other ranks: their finished blocks in order
  bool ended_last_ = false;
  bool no_blocks_ = false;  // EndNoBlocks
};

// Sequences [first, first + n) of `samples` that rank `rank` of `ranks` owns: whole blocks of
// `block` samples (0: one block of all), consecutive, as even as blocks allow.
struct SampleRange {
  int64_t first = 0, count = 0;
};
Result<SampleRange> RankSamples(int64_t samples, int64_t block, int rank, int ranks);

}  // namespace pq::dist
