// Export-aware pricing (probe --passes): the probe prices each candidate as the calibrated
// export writes it. Layer 0's inputs are the same in both (no quantized prefix yet), so its
// candidates must be bit for bit the weights export writes: the probe's recorded mean
// (W − Ŵ)² (W: the source weights) equals the exported checkpoint's, per Linear, for every format
// tried.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include "pq/model/weights.h"
#include "pq/pipeline/allocate.h"
#include "pq/pipeline/export_calibrated.h"
#include "pq/pipeline/probe.h"
#include "pq/pipeline/work_dir.h"

namespace pq::pipeline {
namespace {

namespace fs = std::filesystem;
using formats::FormatId;

const std::string kModel = std::string(PQ_SOURCE_DIR) + "/models/stories260K";
const std::string kCalib = std::string(PQ_SOURCE_DIR) + "/models/calib/tinystories_calib.txt";

class ExportAwareProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    tmp_ = fs::temp_directory_path() / ("pq_export_aware_" + std::to_string(rd()));
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // Probes 16 x 64 tokens pricing `formats` after `passes`; returns the work dir.
  std::string Probe(const std::string& name, quant::Passes passes, std::vector<FormatId> formats,
                    int64_t hessian_samples = CalibrationOptions::kAutoHessianSamples,
                    bool per_token = true) {
    ProbeOptions o;
    o.model = kModel;
    o.work = (tmp_ / name).string();
    o.calib.input.text_file = kCalib;
    o.calib.input.split = DocSplit::kParagraphs;
    o.calib.samples = 16;
    o.calib.seqlen = 64;
    o.calib.hessian_samples = hessian_samples;
    o.formats = std::move(formats);
    o.passes = passes;
    o.per_token = per_token;
    o.exec.threads = 1;
    o.exec.progress = false;
    auto s = RunProbe(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return o.work;
  }

  // mean (W − Ŵ)² of layer 0's Linears in the checkpoint `out`, by module.
  static std::map<std::string, double> Layer0Mse(const std::string& out) {
    auto src = model::WeightSource::Open(kModel);
    auto q = model::WeightSource::Open(out);
    EXPECT_TRUE(src.ok() && q.ok());
    auto w = (*src)->LoadLayer(0);
    auto wq = (*q)->LoadLayer(0);
    EXPECT_TRUE(w.ok() && wq.ok());
    std::map<std::string, const model::LinearWeights*> by_module;
    model::ForEachLinear(*wq, [&](const model::LinearWeights& l) { by_module[l.module] = &l; });
    std::map<std::string, double> mse;
    model::ForEachLinear(*w, [&](const model::LinearWeights& l) {
      const auto& hat = by_module.at(l.module)->w;
      double s = 0;
      for (size_t i = 0; i < l.w.size(); ++i) {
        const double d = static_cast<double>(l.w[i]) - hat[i];
        s += d * d;
      }
      mse[l.module] = s / static_cast<double>(l.w.size());
    });
    return mse;
  }

  fs::path tmp_;
};

const ProbeCandidate* Find(const ProbeLinear& l, const std::string& format) {
  for (const auto& c : l.candidates)
    if (c.format == format) return &c;
  return nullptr;
}

TEST_F(ExportAwareProbeTest, Layer0CandidatesAreTheExportedWeights) {
  // Per-channel and grouped, weight-only and W8A8 (NVFP4 W4A4 needs the probe's amax: also
  // covered, fused q/k/v share its global scales).
  for (FormatId f : {FormatId::kINT8, FormatId::kMXFP8, FormatId::kNVFP4A16, FormatId::kNVFP4}) {
    const std::string name(formats::Spec(f).name);
    SCOPED_TRACE(name);
    const std::string work = Probe("w_" + name, quant::Passes::kSearchGptq, {f, FormatId::kBF16});
    AllocateOptions a;
    a.work = work;
    a.formats = {f, FormatId::kBF16};
    a.target_bits = 16;
    auto range = Allocate(a);
    ASSERT_TRUE(range.ok()) << range.status().ToString();
    a.target_bits =
        range->min_bits + 1e-3;  // every Linear in f where it fits (BF16 where it does not)
    auto chosen = Allocate(a);
    ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
    CalibratedExportOptions e;
    e.model = kModel;
    e.work = work;
    e.out = (tmp_ / ("out_" + name)).string();
    e.exec.threads = 1;
    e.exec.progress = false;
    auto r = ExportCalibrated(e);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_GT(r->linears_calibrated, 0);
    auto p = ReadProbeFile(WorkDir(work));
    ASSERT_TRUE(p.ok());
    const std::map<std::string, double> written = Layer0Mse(e.out);
    int checked = 0;
    for (const ProbeLinear& l : p->linears) {
      if (!written.count(l.module)) continue;
      const ProbeCandidate* c = Find(l, name);
      if (!c) continue;  // f does not fit this shape
      EXPECT_EQ(c->weight_mse, written.at(l.module)) << l.module;
      ++checked;
    }
    EXPECT_GE(checked, 4);
  }
}

// The Hessians come from their own samples (calibration.h), disjoint from the priced ones, so
// the candidates are priced on tokens their scale search and GPTQ were not fitted to: their
// output-error price is above the in-sample price of candidates fitted to the priced samples
// themselves (--hessian-samples 0, the pricing before), which under-states what the written
// weights do on other text.
TEST_F(ExportAwareProbeTest, CandidatesArePricedOnSamplesTheirHessianDidNotSee) {
  const std::vector<FormatId> fs = {FormatId::kNVFP4A16, FormatId::kBF16};
  const std::string own = Probe("own", quant::Passes::kSearchGptq, fs);
  const std::string same = Probe("same", quant::Passes::kSearchGptq, fs, 0);
  EXPECT_TRUE(fs::exists(WorkDir(own).hessian_calibration_dir()));
  EXPECT_FALSE(fs::exists(WorkDir(same).hessian_calibration_dir()));
  auto a = ReadProbeFile(WorkDir(own));
  auto b = ReadProbeFile(WorkDir(same));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->inputs.at("hessian_samples"), 16);  // auto: as many as the 16 samples
  EXPECT_FALSE(b->inputs.contains("hessian_samples"));
  double out_of_sample = 0, in_sample = 0;
  int differ = 0, priced = 0;
  for (size_t i = 0; i < a->linears.size(); ++i) {
    const ProbeCandidate* x = Find(a->linears[i], "NVFP4A16");
    const ProbeCandidate* y = Find(b->linears[i], "NVFP4A16");
    if (!x || !y || a->linears[i].is_lm_head) continue;
    out_of_sample += x->Cost(quant::CostEstimator::kHessian);
    in_sample += y->Cost(quant::CostEstimator::kHessian);
    differ += x->weight_mse != y->weight_mse;
    ++priced;
  }
  ASSERT_GT(priced, 10);
  EXPECT_EQ(differ, priced);  // every candidate fitted to another H
  EXPECT_GT(out_of_sample, in_sample);
}

// What export-aware pricing changes: the error GPTQ leaves is below RTN's, so the summed
// output-error price (hessian estimator) of a 4-bit format drops; the bytes do not change.
TEST_F(ExportAwareProbeTest, PricesTheErrorAfterThePassesNotRtns) {
  const std::vector<FormatId> fs = {FormatId::kNVFP4A16, FormatId::kBF16};
  auto rtn = ReadProbeFile(WorkDir(Probe("rtn", quant::Passes::kRtn, fs)));
  auto gptq = ReadProbeFile(WorkDir(Probe("gptq", quant::Passes::kSearchGptq, fs)));
  ASSERT_TRUE(rtn.ok() && gptq.ok());
  ASSERT_EQ(rtn->linears.size(), gptq->linears.size());
  double sum_rtn = 0, sum_gptq = 0;
  int lower = 0, priced = 0;
  for (size_t i = 0; i < rtn->linears.size(); ++i) {
    const ProbeCandidate* a = Find(rtn->linears[i], "NVFP4A16");
    const ProbeCandidate* b = Find(gptq->linears[i], "NVFP4A16");
    if (!a || !b || rtn->linears[i].is_lm_head) continue;
    EXPECT_EQ(a->bytes, b->bytes);
    const double ca = a->Cost(quant::CostEstimator::kHessian);
    const double cb = b->Cost(quant::CostEstimator::kHessian);
    sum_rtn += ca;
    sum_gptq += cb;
    lower += cb < ca;
    ++priced;
  }
  ASSERT_GT(priced, 10);
  EXPECT_LT(sum_gptq, 0.9 * sum_rtn);
  EXPECT_GE(lower, priced * 3 / 4);
  EXPECT_EQ(rtn->inputs["passes"], "rtn");
  EXPECT_EQ(gptq->inputs["passes"], "search+gptq");
}

// probe --estimators without output/token: the weight-error energies come from each Linear's H
// over the priced tokens (ΔW H ΔWᵀ) instead of X·ΔWᵀ per sample — the same prices to float
// rounding, for weight-only and activation-quantizing formats and lm_head; output and token are
// null, and allocate refuses them naming the flag.
TEST_F(ExportAwareProbeTest, WithoutPerTokenErrorsTheOtherPricesAreTheSame) {
  const std::vector<FormatId> fs = {FormatId::kNVFP4A16, FormatId::kNVFP4, FormatId::kMXFP8,
                                    FormatId::kINT8, FormatId::kBF16};
  const std::string full = Probe("full", quant::Passes::kSearchGptq, fs);
  const std::string fast =
      Probe("fast", quant::Passes::kSearchGptq, fs, CalibrationOptions::kAutoHessianSamples,
            /*per_token=*/false);
  auto a = ReadProbeFile(WorkDir(full));
  auto b = ReadProbeFile(WorkDir(fast));
  ASSERT_TRUE(a.ok() && b.ok()) << b.status().ToString();
  ASSERT_EQ(a->linears.size(), b->linears.size());
  int compared = 0;
  for (size_t i = 0; i < a->linears.size(); ++i) {
    ASSERT_EQ(a->linears[i].candidates.size(), b->linears[i].candidates.size());
    for (size_t j = 0; j < a->linears[i].candidates.size(); ++j) {
      const ProbeCandidate& x = a->linears[i].candidates[j];
      const ProbeCandidate& y = b->linears[i].candidates[j];
      EXPECT_EQ(x.weight_mse, y.weight_mse);  // the same candidates
      for (int e = 0; e < quant::kNumEstimators; ++e) {
        const auto est = static_cast<quant::CostEstimator>(e);
        if (quant::NeedsPerTokenError(est)) {
          EXPECT_TRUE(std::isnan(y.Cost(est))) << "not recorded";
          continue;
        }
        EXPECT_NEAR(y.Cost(est), x.Cost(est), 1e-5 * std::fabs(x.Cost(est)) + 1e-12)
            << a->linears[i].module << " " << x.format << " " << quant::EstimatorName(est);
        compared += x.Cost(est) > 0;
      }
    }
  }
  EXPECT_GT(compared, 100);
  EXPECT_EQ(b->estimators, (std::vector<std::string>{"trace", "channel", "hessian", "block"}));
  EXPECT_TRUE(b->inputs.contains("estimators"));
  EXPECT_FALSE(a->inputs.contains("estimators"));  // work dirs of full probes keep their identity

  AllocateOptions o;
  o.target_bits = 5.5;
  o.cost = quant::CostEstimator::kHessian;
  o.work = full;
  auto ra = Allocate(o);
  o.work = fast;
  auto rb = Allocate(o);
  ASSERT_TRUE(ra.ok() && rb.ok()) << rb.status().ToString();
  EXPECT_EQ(ra->chosen.total_bytes, rb->chosen.total_bytes);
  EXPECT_EQ(ra->chosen.count, rb->chosen.count);
  EXPECT_NEAR(ra->chosen.predicted_dloss, rb->chosen.predicted_dloss,
              1e-5 * ra->chosen.predicted_dloss);
  o.cost = quant::CostEstimator::kToken;
  auto refused = Allocate(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--estimators"), std::string::npos)
      << refused.status().ToString();
}

}  // namespace
}  // namespace pq::pipeline
