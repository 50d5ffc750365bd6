#!/usr/bin/env bash
# Data parallelism across MPI ranks (issue 15 item 5): probe and export --work of
# prismaquant-mpi at R = 1 and R = 2 ranks (one thread per rank), REPEATS times interleaved, each
# rank's wall time split into compute, I/O (checkpoint reads, file writes) and reduction (time
# in MPI calls, waiting for the other ranks included) and its CPU time, as rank 0 logs them; medians per R
# and the ratios R=2 / R=1. Checks that the work dirs and checkpoints are byte-identical
# across R. Never run by CI.
#
#   bench/run_mpi_bench.sh MODEL CALIB_TEXT OUT_DIR [SAMPLES [SEQLEN [BLOCK]]]
#
# Defaults 48 x 256 tokens in sample blocks of 8 (stories260K's bench). Env: BIN
# (prismaquant-mpi, default build/release), REPEATS (3), TARGET (--target-bits, 6).
# The machine is shared: CPU seconds per rank are the robust number; `uptime` is printed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ $# -ge 3 ]] || { sed -n 2,13p "$0" >&2; exit 2; }
model="$1" text="$2" out="$3" samples="${4:-48}" seqlen="${5:-256}" block="${6:-8}"
bin="${BIN:-$root/build/release/tools/prismaquant/prismaquant-mpi}"
plain="$(dirname "$bin")/prismaquant"
repeats="${REPEATS:-3}"
mpi=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mkdir -p "$out"
echo "# $(date -u +%FT%TZ) $(uptime)"
echo "# $model: $samples x $seqlen tokens, --sample-block $block, 1 thread per rank"

for rep in $(seq 1 "$repeats"); do
  for r in 1 2; do
    w="$out/w$r" c="$out/c$r"
    rm -rf "$w" "$c"
    "${mpi[@]}" -np "$r" "$bin" probe "$model" --calib "$text" --work "$w" --samples "$samples" \
      --seqlen "$seqlen" --sample-block "$block" --threads 1 2> "$out/probe$r.err" > /dev/null
    grep '^probe: rank' "$out/probe$r.err" | sed "s/^/R=$r rep=$rep /" >> "$out/lines.txt"
    "$plain" -q allocate --work "$w" --target-bits "${TARGET:-6}" > /dev/null
    "${mpi[@]}" -np "$r" "$bin" export "$model" --work "$w" -o "$c" --threads 1 \
      2> "$out/export$r.err" > /dev/null
    grep '^export: rank' "$out/export$r.err" | sed "s/^/R=$r rep=$rep /" >> "$out/lines.txt"
  done
  diff -r "$out/w1" "$out/w2" > /dev/null && diff -r "$out/c1" "$out/c2" > /dev/null ||
    { echo "R=1 and R=2 outputs differ" >&2; exit 1; }
done

python3 - "$out/lines.txt" <<'PY'
import re, statistics, sys
rows = {}
pat = re.compile(r"R=(\d) rep=(\d+) (\w+): rank (\d) of \d: ([\d.]+) s, compute ([\d.]+) s, "
                 r"I/O ([\d.]+) s, reduction ([\d.]+) s; cpu ([\d.]+) s")
for line in open(sys.argv[1]):
    m = pat.search(line)
    if m:
        r, rep, stage, rank = int(m[1]), int(m[2]), m[3], int(m[4])
        rows.setdefault((stage, r, rank), []).append([float(m[i]) for i in (5, 6, 7, 8, 9)])
print(f"{'stage':7} {'R':>2} {'rank':>4} {'wall s':>8} {'compute s':>10} {'I/O s':>6} "
      f"{'reduction s':>12} {'cpu s':>7}")
med = {}
for (stage, r, rank), v in sorted(rows.items()):
    m = [statistics.median(x[i] for x in v) for i in range(5)]
    med[(stage, r, rank)] = m
    print(f"{stage:7} {r:>2} {rank:>4} {m[0]:8.2f} {m[1]:10.2f} {m[2]:6.2f} {m[3]:12.2f} "
          f"{m[4]:7.2f}")
for stage in ("probe", "export"):
    if (stage, 1, 0) not in med:
        continue
    one = med[(stage, 1, 0)]
    two = [med[(stage, 2, k)] for k in (0, 1) if (stage, 2, k) in med]
    print(f"{stage}: R=2 / R=1 wall {max(x[0] for x in two) / one[0]:.2f}x, "
          f"CPU per rank {max(x[4] for x in two) / one[4]:.2f}x (medians of "
          f"{len(rows[(stage, 1, 0)])})")
PY
