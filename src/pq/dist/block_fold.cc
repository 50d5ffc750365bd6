#include "pq/dist/block_fold.h"

#include <algorithm>
#include <array>
#include <string>

#include "pq/dist/comm.h"

namespace pq::dist {
namespace {

template <typename T>
void AddInto(std::vector<T>& acc, const std::vector<T>& v) {
  for (size_t i = 0; i < acc.size(); ++i) acc[i] += v[i];
}

void AddInto(Sums::Values& acc, const Sums::Values& v) {
  AddInto(acc.f64, v.f64);
  AddInto(acc.f32, v.f32);
  AddInto(acc.i64, v.i64);
}

std::array<uint64_t, 3> Shape(const Sums::Values& v) {
  return {v.f64.size(), v.f32.size(), v.i64.size()};
}

Status SendValues(const Sums::Values& v, int to) {
  const std::array<uint64_t, 3> shape = Shape(v);
  PQ_RETURN_IF_ERROR(Send(std::as_bytes(std::span(shape)), to));
  PQ_RETURN_IF_ERROR(Send(std::as_bytes(std::span(v.f64)), to));
  PQ_RETURN_IF_ERROR(Send(std::as_bytes(std::span(v.f32)), to));
  return Send(std::as_bytes(std::span(v.i64)), to);
}

// Into `v`, which has this rank's layout; a sender with another layout is an error.
Status RecvValues(Sums::Values& v, int from) {
  std::array<uint64_t, 3> shape{};
  PQ_RETURN_IF_ERROR(Recv(std::as_writable_bytes(std::span(shape)), from));
  if (shape != Shape(v))
    return Internal("block fold: rank " + std::to_string(from) + " sent sums of another layout (" +
                    std::to_string(shape[0]) + " doubles, " + std::to_string(shape[1]) +
                    " floats) than this rank's (" + std::to_string(v.f64.size()) + ", " +
                    std::to_string(v.f32.size()) + ")");
  PQ_RETURN_IF_ERROR(Recv(std::as_writable_bytes(std::span(v.f64)), from));
  PQ_RETURN_IF_ERROR(Recv(std::as_writable_bytes(std::span(v.f32)), from));
  return Recv(std::as_writable_bytes(std::span(v.i64)), from);
}

Status BroadcastValues(Sums::Values& v, int root) {
  PQ_RETURN_IF_ERROR(Broadcast(std::as_writable_bytes(std::span(v.f64)), root));
  PQ_RETURN_IF_ERROR(Broadcast(std::as_writable_bytes(std::span(v.f32)), root));
  return Broadcast(std::as_writable_bytes(std::span(v.i64)), root);
}

}  // namespace

Sums::Values Sums::Save() const {
  Values v;
  for (auto s : f64_) v.f64.insert(v.f64.end(), s.begin(), s.end());
  for (auto s : f32_) v.f32.insert(v.f32.end(), s.begin(), s.end());
  for (const int64_t* p : i64_) v.i64.push_back(*p);
  return v;
}

void Sums::Load(const Values& v) const {
  size_t d = 0, f = 0;
  for (auto s : f64_) {
    std::copy_n(v.f64.begin() + static_cast<std::ptrdiff_t>(d), s.size(), s.begin());
    d += s.size();
  }
  for (auto s : f32_) {
    std::copy_n(v.f32.begin() + static_cast<std::ptrdiff_t>(f), s.size(), s.begin());
    f += s.size();
  }
  for (size_t i = 0; i < i64_.size(); ++i) *i64_[i] = v.i64[i];
}

void Sums::Zero() const {
  for (auto s : f64_) std::fill(s.begin(), s.end(), 0.0);
  for (auto s : f32_) std::fill(s.begin(), s.end(), 0.0f);
  for (int64_t* p : i64_) *p = 0;
}

void Sums::AddFrom(const Values& v) const {
  size_t d = 0, f = 0;
  for (auto s : f64_)
    for (double& x : s) x = v.f64[d++] + x;
  for (auto s : f32_)
    for (float& x : s) x = v.f32[f++] + x;
  for (size_t i = 0; i < i64_.size(); ++i) *i64_[i] += v.i64[i];
}

size_t Sums::doubles() const {
  size_t n = 0;
  for (auto s : f64_) n += s.size();
  return n;
}

size_t Sums::floats() const {
  size_t n = 0;
  for (auto s : f32_) n += s.size();
  return n;
}

void BlockFold::EndBlock(const Sums& s, bool last) {
  if (last) {
    ended_last_ = true;
    return;
  }
  if (Rank() != 0) {
    partials_.push_back(s.Save());
  } else if (!have_total_) {
    total_ = s.Save();
    have_total_ = true;
  } else {
    AddInto(total_, s.Save());
  }
  s.Zero();
}

void BlockFold::EndNoBlocks() {
  ended_last_ = true;
  no_blocks_ = true;
}

Status BlockFold::Finish(const Sums& s, bool everywhere) {
  const int rank = Rank(), size = Size();
  if (!ended_last_) return Internal("block fold: Finish before this rank's last block ended");
  if (no_blocks_ && rank == 0) return Internal("block fold: rank 0 has no block");
  if (no_blocks_) {  // the prefix passes through (loaded, not added: 0 + -0 would be +0)
    Sums::Values prefix{std::vector<double>(s.doubles()), std::vector<float>(s.floats()),
                        std::vector<int64_t>(s.ints())};
    PQ_RETURN_IF_ERROR(RecvValues(prefix, rank - 1));
    s.Load(prefix);
  } else if (rank == 0) {
    if (have_total_) s.AddFrom(total_);
  } else {
    Sums::Values prefix{std::vector<double>(s.doubles()), std::vector<float>(s.floats()),
                        std::vector<int64_t>(s.ints())};
    PQ_RETURN_IF_ERROR(RecvValues(prefix, rank - 1));
    for (const Sums::Values& p : partials_) AddInto(prefix, p);
    s.AddFrom(prefix);
  }
  *this = BlockFold();
  if (size == 1) return Status::Ok();
  Sums::Values v = s.Save();
  if (rank + 1 < size) PQ_RETURN_IF_ERROR(SendValues(v, rank + 1));
  const int last = size - 1;
  if (everywhere) {
    PQ_RETURN_IF_ERROR(BroadcastValues(v, last));
    s.Load(v);
  } else if (rank == last) {
    PQ_RETURN_IF_ERROR(SendValues(v, 0));
  } else if (rank == 0) {
    PQ_RETURN_IF_ERROR(RecvValues(v, last));
    s.Load(v);
  }
  return Status::Ok();
}

Result<SampleRange> RankSamples(int64_t samples, int64_t block, int rank, int ranks) {
  if (samples <= 0) return InvalidArgument("no calibration samples");
  if (block < 0) return InvalidArgument("--sample-block must be >= 0");
  const int64_t b = block == 0 ? samples : block;
  const int64_t blocks = (samples + b - 1) / b;
  if (blocks < ranks)
    return InvalidArgument(std::to_string(ranks) + " ranks but " + std::to_string(blocks) +
                           " sample block(s) of " + std::to_string(b) + " samples: pass " +
                           "--sample-block B with ceil(samples / B) >= ranks (the same B gives "
                           "the same bytes on any number of ranks)");
  const int64_t b0 = blocks * rank / ranks, b1 = blocks * (rank + 1) / ranks;
  const int64_t first = b0 * b;
  return SampleRange{first, std::min(b1 * b, samples) - first};
}

}  // namespace pq::dist
