#!/usr/bin/env python3
"""Projected probe wall time of Qwen3.6-35B-A3B on N nodes x C cores (issue 15 item 5).

Arithmetic, not a measurement: the inputs below are the README's measured or computed figures,
each named; change them and rerun. Prints a Markdown table.

  python3 bench/mpi_projection.py
"""

# Measured (README "Qwen3.6-35B-A3B at real layer sizes", 2-core machine): the probe at the
# seed's 32 x 1024 calibration extrapolated to ~6 h on 2 cores; 2 threads give ~1.5x one
# thread on this machine (engine bench, issue 14): 9 single-core hours of work.
SINGLE_CORE_HOURS = 6.0 * 1.5
# Per-core efficiency assumed at C cores (the 2-core figure; not measured beyond 2 cores).
CORE_EFFICIENCY = 0.75
LAYERS = 41  # 30 Gated DeltaNet + 10 attention + the MTP layer
# Computed from the shapes (DESIGN §7 "Volume and limits"): per layer the Hessians (4.6 GB)
# pass once per rank boundary along the fold chain, then are broadcast; the statistics
# (0.2 GB) follow the same chain; the candidates' packed tensors (NVFP4 + MXFP8 of 805 M
# expert parameters, 1.3 GB) are broadcast from their owners.
CHAIN_GB_PER_HOP = 4.6 + 0.2
BROADCAST_GB = 4.6 + 1.3
LINK_GB_PER_S = 12.5  # 100 Gb/s
MAX_RANKS = 32  # whole sample blocks: at most one rank per sample (32 samples)


def hours(nodes: int, cores: int) -> tuple[float, float]:
  compute_s = SINGLE_CORE_HOURS * 3600 / (nodes * cores * CORE_EFFICIENCY)
  if nodes == 1:
    return compute_s, 0.0
  comm_s = LAYERS * ((nodes - 1) * CHAIN_GB_PER_HOP + BROADCAST_GB) / LINK_GB_PER_S
  return compute_s, comm_s


def fmt(s: float) -> str:
  return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"


def main() -> None:
  cores = (2, 16, 64)
  print("| nodes | " + " | ".join(f"{c} cores each: total (communication)" for c in cores) + " |")
  print("|---" * (len(cores) + 1) + "|")
  for n in (1, 2, 4, 8, 16, 32):
    assert n <= MAX_RANKS
    cells = []
    for c in cores:
      compute, comm = hours(n, c)
      cells.append(f"{fmt(compute + comm)} ({fmt(comm)})" if comm else fmt(compute))
    print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
