// Knee of a Pareto curve (the "knee" point of a bits-vs-predicted-loss sweep), used to
// suggest or pick a bits/param target (`--target-bits knee`).
#pragma once

#include <optional>
#include <span>

namespace pq::alloc {

// Kneedle knee of a decreasing convex Pareto curve (x: bits/param or bytes, y: predicted
// cost). Points are ordered by x (ties by y, then index); both axes are normalised to [0, 1]
// by their min and max; the chord joins the first and the last ordered point; the knee is the
// point with the largest vertical distance below the chord, (chord(x_i) − y_i), which for
// normalised endpoints (0, 1) and (1, 0) is 1 − x_i − y_i (the original's argmin(y − (1 − x)))
// and is proportional to the perpendicular distance. Ties go to the smaller x. Returns the
// index into the inputs, or nullopt with fewer than 3 points, mismatched sizes, non-finite
// values, a zero x or y range, or no point strictly below the chord (straight or concave).
std::optional<int> KneeIndex(std::span<const double> x, std::span<const double> y);

}  // namespace pq::alloc
