#!/usr/bin/env bash
# Qwen3.6-35B-A3B cost benchmark (not part of the test run): probe and data-free export on
# synthetic checkpoints with the real tensor names/shapes (bench/make_synthetic_qwen3_5_moe.py:
# hidden 2048, 256 packed experts per layer, vocab 248320, MTP head, one vision block) that
# differ only in depth and layer kinds:
#   A = lin,full   B = lin,lin,lin,full   C = lin,full,full
# Each checkpoint: probe (--samples x --seqlen random token ids, --formats) and
# `export --uniform NVFP4A16` (+ `inspect` of the result); wall time and peak RSS by
# /usr/bin/time. Per-layer times two ways:
#  * direct: the probe writes one work unit per layer when its reverse-sweep step (recompute,
#    backward, pricing) is done (W/probe/head = lm_head, layer_L = the MTP head, then
#    layer_{L-1} .. layer_0); a unit's time is its finish time minus the previous one's, so
#    every run gives the time of each linear- and full-attention layer, lm_head and MTP, plus
#    the forward sweep (its progress line) and the rest (start-up, writing probe.json);
#  * by depth differences of wall time: (B - A) / 2 per linear-attention layer, C - A per
#    full-attention layer (noisier: it also differences the load of a shared machine).
# Config A is also probed at 1 and 2 samples of the real sequence length (1024), to fit each
# unit's time as a + b x samples there. The extrapolation to the real model (30 linear + 10 full
# layers + MTP) at the seed's calibration size (32 samples x 1024 tokens: run-pipeline.sh
# NSAMPLES/SEQLEN) is arithmetic on these fits, not a measurement.
#
# Usage: bench/run_qwen3_5_bench.sh [build_dir]
#        bench/run_qwen3_5_bench.sh --summarize RESULTS.jsonl...  (re-print saved runs' tables)
# Environment (defaults): PQ_BENCH_DIR (a new dir under /tmp; removed unless PQ_BENCH_KEEP=1),
#   PQ_BENCH_CONFIGS ("lin,full lin,lin,lin,full lin,full,full"), PQ_BENCH_SAMPLES (4),
#   PQ_BENCH_SEQLEN (256), PQ_BENCH_EXTRA ("1x1024 2x1024": more probes of the first config,
#   SAMPLESxSEQLEN; "" = none), PQ_BENCH_FORMATS (NVFP4,MXFP8,BF16), PQ_BENCH_THREADS (nproc),
#   PQ_BENCH_EXPORT (1), PQ_BENCH_CALIBRATED (0; 1 = also allocate NVFP4A16 + export --work
#   with search+GPTQ), PQ_BENCH_MAX_RSS_GB (18: a run above it is killed, as is one that leaves
#   the machine less than PQ_BENCH_MIN_AVAIL_GB (2.5) of MemAvailable),
#   PQ_BENCH_REAL_SAMPLES (32), PQ_BENCH_REAL_SEQLEN (1024),
#   PQ_BENCH_RESULTS (where results.jsonl is kept: /tmp/pq-qwen35-results.<time>.jsonl).
# Disk: one checkpoint at a time (7.2 / 10.6 / 8.9 GB) plus its export; each is deleted after use.
# Needs ~16 GB of free memory: before the chunked loss head (2026-12-07) the peak was the
# lm_head step (13 GB at seqlen 256, 15.5 GB at 1024); now it is an MoE layer's block pricing
# (13.7 GB at 1 x 1024, README "Probe memory by step").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/release}"
bin="$build/tools/prismaquant/prismaquant"
venv="$("$root/scripts/setup_venv.sh" | tail -1)"
py="$venv/bin/python"

configs="${PQ_BENCH_CONFIGS:-lin,full lin,lin,lin,full lin,full,full}"
samples="${PQ_BENCH_SAMPLES:-4}"
seqlen="${PQ_BENCH_SEQLEN:-256}"
extra="${PQ_BENCH_EXTRA-1x1024 2x1024}"
formats="${PQ_BENCH_FORMATS:-NVFP4,MXFP8,BF16}"
threads="${PQ_BENCH_THREADS:-$(nproc)}"
do_export="${PQ_BENCH_EXPORT:-1}"
calibrated="${PQ_BENCH_CALIBRATED:-0}"
max_rss_kb=$(awk -v g="${PQ_BENCH_MAX_RSS_GB:-18}" 'BEGIN {printf "%d", g * 1048576}')
min_avail_kb=$(awk -v g="${PQ_BENCH_MIN_AVAIL_GB:-2.5}" 'BEGIN {printf "%d", g * 1048576}')
real_samples="${PQ_BENCH_REAL_SAMPLES:-32}"
real_seqlen="${PQ_BENCH_REAL_SEQLEN:-1024}"

# summarize RESULTS.jsonl...: the tables, per-layer times and the extrapolation.
summarize() {
  "$py" - "$real_samples" "$real_seqlen" "$@" << 'EOF'
import json, statistics, sys
from collections import Counter
import numpy as np
RS, RL, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
recs = [json.loads(l) for p in paths for l in open(p) if l.strip()]
ok = [r for r in recs if r["rc"] == 0]
probes = [r for r in ok if r["step"] == "probe"]
exports = [r for r in ok if r["step"] == "export"]
real_tok = RS * RL
med = statistics.median
mib = lambda kb: kb / 1024
shape = lambda r: (r["samples"], r["seqlen"])
if not probes:
    print("no successful probe run"); sys.exit(0)
S, L = Counter(shape(r) for r in probes).most_common(1)[0][0]  # the depth runs' size
main = [r for r in probes if shape(r) == (S, L)]
patterns = list(dict.fromkeys(r["pattern"] for r in recs))
first = patterns[0]
A_runs = [r for r in probes if r["pattern"] == first]
load = lambda r: f"{r['load'][0]:.1f}/{r['load'][1]:.1f}" if r.get("load") else "?"
bins = sorted({r.get("binary", "") for r in recs})
if len(bins) > 1:
    print("WARNING: these results come from different builds of prismaquant: " +
          ", ".join(b or "?" for b in bins) + " -- times are not comparable across them")
get = lambda step, p, sh=None: next((r for r in ok if r["step"] == step and r["pattern"] == p
                                     and (sh is None or shape(r) == sh)), None)

fmts = next((r["formats"] for r in probes if r.get("formats") and r["formats"][0]), ["?"])
print(f"== results (probe: random-id calibration, formats {','.join(fmts)}, lm_head priced; "
      f"export: --uniform NVFP4A16, data-free; load avg = 1-min load at start/end, 2 cores)")
print("| layers | checkpoint | calibration | probe peak RSS | probe time | export peak RSS | export time | load avg |")
print("|---|---|---|---|---|---|---|---|")
for p in patterns:
    pr, ex = get("probe", p, (S, L)), get("export", p)
    tried = lambda step: any(r["step"] == step and r["pattern"] == p for r in recs)
    rss = lambda r, st: (f"{mib(r['rss_kb']):.0f} MiB" if r else "failed" if tried(st) else "-")
    wall = lambda r, st: (f"{r['wall']:.1f} s" if r else "failed" if tried(st) else "-")
    gb = (pr or ex or {}).get("ckpt_bytes", 0) / 1e9
    print(f"| {p} ({len(p.split(','))}) | {gb:.1f} GB | {S} x {L} | {rss(pr, 'probe')} | "
          f"{wall(pr, 'probe')} | {rss(ex, 'export')} | {wall(ex, 'export')} | "
          f"{load(pr) if pr else ''} |")
for r in probes:
    if shape(r) != (S, L):
        print(f"| {r['pattern']} ({len(r['pattern'].split(','))}) | | {r['samples']} x {r['seqlen']} | "
              f"{mib(r['rss_kb']):.0f} MiB | {r['wall']:.1f} s | | | {load(r)} |")
for r in ok:
    if r["step"] == "export_calibrated":
        print(f"| {r['pattern']} calibrated NVFP4A16 export (search+GPTQ) | | {r['samples']} x "
              f"{r['seqlen']} | | | {mib(r['rss_kb']):.0f} MiB | {r['wall']:.1f} s | {load(r)} |")

def units(r):
    """{kind: mean seconds} from the unit finish times, + forward sweep and the rest."""
    kinds = r["pattern"].split(",")
    out = {"lm_head": [], "mtp": [], "lin": [], "full": []}
    for u, t in r["units"].items():
        if u == "head":
            out["lm_head"].append(t)
        else:
            i = int(u.split("_")[1])
            out["mtp" if i == len(kinds) else kinds[i]].append(t)
    fwd = r["phases"].get("forward", 0.0)
    res = {k: float(np.mean(v)) for k, v in out.items() if v}
    res["forward/layer"] = fwd / len(kinds)
    res["rest"] = r["wall"] - fwd - sum(r["units"].values())
    return res

KINDS = [("lin", "linear-attention layer", 30), ("full", "full-attention layer", 10),
         ("forward/layer", "forward sweep per layer", 40), ("lm_head", "lm_head", 1),
         ("mtp", "MTP head", 1), ("rest", "rest (start-up, I/O)", 1)]
print()
print("== probe time per unit (direct: differences of the work units' finish times; a layer's "
      "unit = its reverse-sweep step: recompute, backward, pricing every expert and Linear)")
print("| run | calibration | " + " | ".join(k[1] for k in KINDS) + " |")
print("|---|---|" + "---|" * len(KINDS))
U = {}
for r in probes:
    U[id(r)] = u = units(r)
    print(f"| {r['pattern']} | {r['samples']} x {r['seqlen']} | " +
          " | ".join(f"{u[k]:.1f} s" if k in u else "-" for k, _, _ in KINDS) + " |")
print("  (the linear/full cells are means over the run's layers of that kind)")

# Same token count, different shape: is the cost per token or per sample?
by_tok = {}
for r in A_runs:
    by_tok.setdefault(r["samples"] * r["seqlen"], []).append(r)
for tok, rs in sorted(by_tok.items()):
    if len({shape(r) for r in rs}) > 1:
        a, b = sorted(rs, key=lambda r: r["samples"])[:2], None
        lo, hi = a[0], a[-1]
        print(f"  same {tok} tokens, {lo['samples']} x {lo['seqlen']} vs {hi['samples']} x "
              f"{hi['seqlen']}: " + ", ".join(
                  f"{k} {U[id(lo)][k]:.0f} vs {U[id(hi)][k]:.0f} s" for k in ("lin", "full", "lm_head", "mtp")
                  if k in U[id(lo)] and k in U[id(hi)]))

# Scaling fit: prefer runs of the first config at the real sequence length (t = a + b samples).
fitset = [r for r in A_runs if r["seqlen"] == RL]
how = f"t = a + b x samples over {first} at seqlen {RL}"
if len({r["samples"] for r in fitset}) < 2:
    fitset = [r for r in A_runs if r["seqlen"] == L]
    how = f"t = a + b x tokens over {first} at seqlen {L}"
print()
print(f"== scaling per unit ({how}; runs: " +
      ", ".join(f"{r['samples']}x{r['seqlen']}" for r in fitset) + ")")
est = {}
if len({r["samples"] for r in fitset}) >= 2:
    x = np.array([r["samples"] * (1 if r["seqlen"] == RL else r["seqlen"] / RL) for r in fitset])
    for k, label, n in KINDS:
        y = np.array([U[id(r)][k] for r in fitset])
        b, a = np.polyfit(x, y, 1)
        est[k] = max(a + b * RS, float(y.max()))  # never below what was measured
        per = "sample" if "samples" in how else f"{RL} tokens"
        print(f"  {label}: {a:+.1f} s + {b:.1f} s per {per} -> {est[k]:.0f} s at {RS} x {RL}")
else:
    print("  (no two token counts of the first config: no scaling fit)")

print()
print(f"== across depth (runs at {S} x {L}): unit times per layer kind and peak RSS")
for k, label, _ in KINDS[:2]:
    v = [U[id(r)][k] for r in main if k in U[id(r)]]
    if len(v) > 1:
        print(f"  {label}: " + ", ".join(f"{x:.0f}" for x in v) + f" s (median {med(v):.0f}, "
              f"spread {100 * (max(v) - min(v)) / med(v):.0f}%)")
print("  probe peak RSS: " + ", ".join(f"{r['pattern']} {mib(r['rss_kb']):.0f}" for r in main) + " MiB"
      + ("; export peak RSS: " + ", ".join(f"{r['pattern']} {mib(r['rss_kb']):.0f}" for r in exports)
         + " MiB" if exports else ""))

def fit(rows, key):
    rows = [r for r in rows if key(r) is not None]
    if len({(r["n_lin"], r["n_full"]) for r in rows}) < 3:
        return None
    X = np.array([[1, r["n_lin"], r["n_full"]] for r in rows], float)
    return np.linalg.lstsq(X, np.array([key(r) for r in rows], float), rcond=None)[0]
body = lambda r: r["wall"] - U[id(r)].get("lm_head", 0) - U[id(r)].get("mtp", 0)
for name, rows, key in [("probe wall", main, lambda r: r["wall"]),
                        ("probe wall less the lm_head and MTP units", main, body),
                        ("export wall", exports, lambda r: r["wall"])]:
    f = fit(rows, key)
    if f is not None:
        bad = " -- not usable: noise is larger than a layer" if min(f[1:]) <= 0 else ""
        print(f"  {name} by depth differences: fixed {f[0]:.0f} s, {f[1]:+.1f} s per linear-attention "
              f"layer, {f[2]:+.1f} s per full-attention layer{bad}")

print()
print(f"== EXTRAPOLATION (arithmetic on the fits above, NOT a measurement): Qwen3.6-35B-A3B, "
      f"30 linear + 10 full layers + MTP, {RS} x {RL} = {real_tok} calibration tokens, "
      f"this 2-core machine")
if est:
    total = 0.0
    for k, label, n in KINDS:
        total += n * est[k]
        print(f"  {label:24s} {n:2d} x {est[k]:7.0f} s = {n * est[k] / 3600:6.2f} h")
    print(f"  => probe: ~{total / 3600:.0f} h (vision Linears are not probed: no image calibration)")
    meas = [r for r in fitset]
    print(f"  peak RSS of these runs: " + ", ".join(f"{r['samples']}x{r['seqlen']} {mib(r['rss_kb']):.0f} MiB"
                                                for r in meas) +
          f"; flat in depth (above). Not included: the boundary cache, 2048 F32 per token per "
          f"boundary = {41 * 2048 * 4 * real_tok / 2**30:.1f} GiB for 41 boundaries, kept up to "
          f"--memory-budget-gb (8) and spilled to disk beyond")
if exports:
    gb = sum(r.get("ckpt_bytes", 0) for r in exports) / 1e9
    if gb > 0:
        rate = sum(r["wall"] for r in exports) / gb
        print(f"  export --uniform NVFP4A16 (data-free, no tokens): {rate:.2f} s per GB of checkpoint "
              f"(mean over the runs) x 71.9 GB = ~{rate * 71.9 / 60:.0f} min; peak RSS flat at "
              f"{max(mib(r['rss_kb']) for r in exports):.0f} MiB")
failed = [r for r in recs if r["rc"] != 0]
if failed:
    print()
    print("== failed runs: " + ", ".join(f"{r['step']} {r['pattern']} (rc {r['rc']})" for r in failed))
EOF
}

if [[ "${1:-}" == "--summarize" ]]; then
  shift
  summarize "$@"
  exit 0
fi

if [[ -n "${PQ_BENCH_DIR:-}" ]]; then
  mkdir -p "$PQ_BENCH_DIR"; dir="$(mktemp -d "$PQ_BENCH_DIR/qwen35.XXXXXX")"
else
  dir="$(mktemp -d /tmp/pq-qwen35-bench.XXXXXX)"
fi
[[ "${PQ_BENCH_KEEP:-0}" == 1 ]] || trap 'rm -rf "$dir"' EXIT
export PQ_REC_BINARY="$(stat -c %y "$bin" | cut -d. -f1)"
echo "binary $bin ($PQ_REC_BINARY), copied to the bench dir"
cp "$bin" "$dir/prismaquant"; bin="$dir/prismaquant"  # a rebuild mid-bench cannot mix versions
results="$dir/results.jsonl"
: > "$results"
echo "bench dir $dir; threads $threads; formats $formats; calibration $samples x $seqlen"

# measure OUT_PREFIX CMD...: runs CMD under /usr/bin/time (stdout+stderr to OUT_PREFIX.log),
# killing it if its RSS passes the limit; writes OUT_PREFIX.time ("wall rss_kb"), .start, .rc.
measure() {
  local pre="$1"; shift
  date +%s.%N > "$pre.start"
  cut -d' ' -f1 /proc/loadavg > "$pre.load"
  /usr/bin/time -f "%e %M" -o "$pre.time" "$@" > "$pre.log" 2>&1 &
  local tpid=$! child="" rss avail killed=0
  while kill -0 "$tpid" 2> /dev/null; do
    [[ -n "$child" ]] || child="$(pgrep -P "$tpid" | head -1 || true)"
    if [[ -n "$child" ]]; then
      rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$child/status" 2> /dev/null || echo 0)"
      avail="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
      if (( killed == 0 && (${rss:-0} > max_rss_kb || ${avail:-0} < min_avail_kb) )); then
        echo "  killing pid $child: RSS ${rss} kB (limit ${max_rss_kb}), MemAvailable ${avail} kB" \
             "(floor ${min_avail_kb})" | tee -a "$pre.log"
        kill "$child" 2> /dev/null || true; killed=1
      fi
    fi
    sleep 0.5
  done
  local rc=0
  wait "$tpid" || rc=$?
  (( killed == 0 )) || rc=137
  echo "$rc" > "$pre.rc"
  [[ -s "$pre.time" ]] || echo "0 0" > "$pre.time"
  tail -1 "$pre.time" > "$pre.time.last"; mv "$pre.time.last" "$pre.time"
  return 0
}

# record STEP PATTERN SAMPLES SEQLEN PRE [WORK]: one JSON line into results.jsonl
record() {
  "$py" - "$@" "$results" << 'EOF'
import json, os, re, sys
step, pattern, samples, seqlen, pre = sys.argv[1:6]
work = sys.argv[6] if len(sys.argv) > 7 else ""
out = sys.argv[-1]
wall, rss = open(pre + ".time").read().split()[-2:]
start = float(open(pre + ".start").read())
rc = int(open(pre + ".rc").read())
load = [float(open(pre + ".load").read()), float(open("/proc/loadavg").read().split()[0])]
log = open(pre + ".log", errors="replace").read()
phases = {}
for m in re.finditer(r"^(\S[^\n]*?)\s+(\d+)/(\d+)\s+\d+%\s+([\d.]+)s$", log, re.M):
    phases[m.group(1).strip()] = float(m.group(4))
units = {}
if work and os.path.isdir(os.path.join(work, "probe")):
    # Finish time of each unit; a unit's time is its finish minus the previous one's
    # (the first, lm_head, from the end of the forward sweep).
    fin = {}
    for d in os.listdir(os.path.join(work, "probe")):
        f = os.path.join(work, "probe", d, "results.json")
        if (d == "head" or d.startswith("layer_")) and os.path.exists(f):
            fin[d] = os.path.getmtime(f)
    prev = start + phases.get("forward", 0.0)
    for d in sorted(fin, key=fin.get):
        units[d] = round(fin[d] - prev, 3)
        prev = fin[d]
kinds = pattern.split(",")
rec = {"step": step, "pattern": pattern, "n_lin": kinds.count("lin"),
       "n_full": kinds.count("full"), "samples": int(samples), "seqlen": int(seqlen),
       "wall": float(wall), "rss_kb": int(rss), "rc": rc, "phases": phases, "units": units,
       "load": load, "ckpt_bytes": int(os.environ.get("PQ_REC_BYTES", "0")),
       "formats": os.environ.get("PQ_REC_FORMATS", "").split(","),
       "binary": os.environ.get("PQ_REC_BINARY", "")}
with open(out, "a") as f:
    f.write(json.dumps(rec) + "\n")
print(f"  {step}: rc {rc}, wall {float(wall):.1f} s, peak RSS {int(rss) / 1024:.0f} MiB"
      + (f", phases {phases}" if phases else "") + (f", units {units}" if units else ""))
EOF
}

# fail_report PRE WHAT: prints the tail of a failed run's output verbatim
fail_report() {
  echo "  $2 FAILED (rc $(cat "$1.rc")); its output (last 30 lines, verbatim):"
  tail -30 "$1.log" | sed 's/^/    | /'
}

probe() {  # probe PATTERN CKPT SAMPLES SEQLEN TAG
  local pattern="$1" ck="$2" s="$3" l="$4" tag="$5" w="$dir/w.$5"
  rm -rf "$w"
  measure "$dir/$tag.probe" "$bin" probe "$ck" --calib-tokens "$ck/calib_tokens.txt" --no-bos \
    --work "$w" --samples "$s" --seqlen "$l" --formats "$formats" --threads "$threads"
  record probe "$pattern" "$s" "$l" "$dir/$tag.probe" "$w"
  [[ "$(cat "$dir/$tag.probe.rc")" == 0 ]] || { fail_report "$dir/$tag.probe" probe; return 1; }
}

n=0
for pattern in $configs; do
  n=$((n + 1)); tag="c$n"; ck="$dir/ckpt.$tag"
  echo
  echo "== $pattern: writing the synthetic checkpoint"
  "$py" "$root/bench/make_synthetic_qwen3_5_moe.py" "$ck" --pattern "$pattern" \
    --vision-depth 1 2>&1 | tail -2 | sed 's/^/  /'
  echo "  checkpoint $(du -sm "$ck" | cut -f1) MiB"
  export PQ_REC_BYTES="$(du -sb "$ck" | cut -f1)" PQ_REC_FORMATS="$formats"
  if (( n == 1 )); then
    irc=0; "$bin" inspect "$ck" > "$dir/inspect.log" 2>&1 || irc=$?
    if grep -q "unsupported architecture" "$dir/inspect.log"; then
      echo "  prismaquant inspect rejects the architecture (verbatim):"
      head -20 "$dir/inspect.log" | sed 's/^/    | /'
      exit 2
    fi
    if (( irc != 0 )); then
      echo "  prismaquant inspect: rc $irc, $(wc -l < "$dir/inspect.log") lines; first 12 (verbatim):"
      head -12 "$dir/inspect.log" | sed 's/^/    | /'
      echo "  (continuing: the probe and export decide whether they can read it)"
    else
      echo "  inspect: ok ($(grep -c . "$dir/inspect.log") lines of report)"
    fi
  fi
  if ! probe "$pattern" "$ck" "$samples" "$seqlen" "$tag"; then
    rm -rf "$ck" "$dir/w.$tag"; continue
  fi
  if (( n == 1 )); then
    for sl in $extra; do
      probe "$pattern" "$ck" "${sl%x*}" "${sl#*x}" "$tag.$sl" || true
      rm -rf "$dir/w.$tag.$sl"
    done
  fi
  if [[ "$do_export" == 1 ]]; then
    measure "$dir/$tag.export" "$bin" export "$ck" --uniform NVFP4A16 -o "$dir/out.$tag" \
      --threads "$threads" --overwrite
    record export "$pattern" 0 0 "$dir/$tag.export"
    if [[ "$(cat "$dir/$tag.export.rc")" == 0 ]]; then
      if "$bin" inspect "$dir/out.$tag" > "$dir/$tag.inspect.log" 2>&1; then
        echo "  inspect of the export: ok ($(du -sm "$dir/out.$tag" | cut -f1) MiB)"
      else
        echo "  inspect of the export FAILED (verbatim):"; tail -30 "$dir/$tag.inspect.log" | sed 's/^/    | /'
      fi
    else
      fail_report "$dir/$tag.export" export
    fi
    rm -rf "$dir/out.$tag"
  fi
  if [[ "$calibrated" == 1 ]]; then
    if "$bin" -q allocate --work "$dir/w.$tag" --formats NVFP4A16 --target-bits 4.6 \
         > "$dir/$tag.alloc.log" 2>&1; then
      measure "$dir/$tag.cexport" "$bin" export "$ck" --work "$dir/w.$tag" -o "$dir/out.$tag" \
        --threads "$threads" --overwrite
      record export_calibrated "$pattern" "$samples" "$seqlen" "$dir/$tag.cexport"
      [[ "$(cat "$dir/$tag.cexport.rc")" == 0 ]] || fail_report "$dir/$tag.cexport" "calibrated export"
      rm -rf "$dir/out.$tag"
    else
      echo "  allocate FAILED (verbatim):"; tail -30 "$dir/$tag.alloc.log" | sed 's/^/    | /'
    fi
  fi
  rm -rf "$ck" "$dir/w.$tag"
done

keep="${PQ_BENCH_RESULTS:-/tmp/pq-qwen35-results.$(date +%Y%m%d-%H%M%S).jsonl}"
cp "$results" "$keep"
echo
summarize "$results"
echo
echo "results kept in $keep (re-print: bench/run_qwen3_5_bench.sh --summarize $keep)"
