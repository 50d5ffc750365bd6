// Work shared out over the ranks, results sent back (DESIGN §7): deterministic owners for a
// list of jobs, and a byte blob of any size broadcast from its owner.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "pq/core/status.h"

namespace pq::dist {

// The owner rank of each job: longest job first (ties: lower index) to the least loaded rank
// (ties: lower rank). A pure function of (costs, ranks): every rank computes the same answer.
// ranks >= 1; costs >= 0.
std::vector<int> AssignOwners(std::span<const double> costs, int ranks);

// `blob` of rank `root` on every rank (its size too: the other ranks' blobs are resized).
Status BroadcastBlob(std::vector<std::byte>& blob, int root);

}  // namespace pq::dist
