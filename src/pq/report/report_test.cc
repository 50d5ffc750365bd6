// The report page from a small synthetic work dir (a 2-layer MoE with 3 experts, lm_head):
// SVG structure, one map cell per layer × module kind with experts collapsed, markers, legend,
// escaping, no network references, and the error paths (missing and damaged inputs).
#include "pq/report/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "pq/pipeline/work_dir.h"

namespace pq::report {
namespace {

using pipeline::kLayerConfigSchema;
using pipeline::kProbeSchema;

namespace fs = std::filesystem;
using nlohmann::json;

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

json Candidate(const std::string& f, uint64_t bytes, double cost) {
  return {{"format", f},
          {"bytes", bytes},
          {"weight_mse", cost},
          {"cost", {{"trace", 2 * cost}, {"channel", cost}, {"hessian", cost}, {"output", cost}}}};
}

// `scale` makes every Linear's costs distinct; `four_bit` adds NVFP4A16 and INT4 candidates.
json Linear(const std::string& module, int layer, const std::string& unit, double scale,
            bool four_bit) {
  json c = json::array({Candidate("BF16", 8192, 1e-6 * scale), Candidate("FP8", 4224, 5e-4 * scale),
                        Candidate("INT8", 4240, 2e-5 * scale)});
  if (four_bit) {
    c.push_back(Candidate("NVFP4A16", 2308, 3e-3 * scale));
    c.push_back(Candidate("INT4", 2200, 4e-2 * scale));
  }
  return {{"module", module},  {"layer", layer},
          {"unit", unit},      {"rows", 64},
          {"cols", 64},        {"is_lm_head", layer < 0},
          {"tied", false},     {"samples", 4},
          {"tokens", 256},     {"fisher_trace", 10 * scale},
          {"input_amax", 3.0}, {"candidates", c}};
}

const char* kProjs[] = {"gate_proj", "up_proj", "down_proj"};
const char* kAttn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    tmp_ = fs::temp_directory_path() / ("pq_report_test_" + std::to_string(rd()));
    fs::create_directories(tmp_);
    work_ = tmp_.string();
  }
  void TearDown() override { fs::remove_all(tmp_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(tmp_ / name) << text;
  }

  // 2 layers × (q, k, v, o, 3 experts × gate/up/down) + lm_head = 27 Linears, 15 cells.
  void WriteWork(bool four_bit = true) {
    json linears = json::array(), formats = json::object();
    double scale = 1;
    for (int l = 0; l < 2; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      for (const char* a : kAttn) {
        linears.push_back(Linear(p + "self_attn." + a, l, p + "qkv", scale *= 1.3, four_bit));
        formats[p + "self_attn." + a] = l == 0 ? "INT8" : (four_bit ? "NVFP4A16" : "FP8");
      }
      for (int e = 0; e < 3; ++e)
        for (const char* m : kProjs) {
          const std::string mod = p + "mlp.experts." + std::to_string(e) + "." + m;
          linears.push_back(Linear(mod, l, p + "experts", scale *= 1.3, four_bit));
          formats[mod] = "FP8";
        }
    }
    linears.push_back(Linear("lm_head", -1, "lm_head", 5000, four_bit));
    formats["lm_head"] = "BF16";
    const json inputs = {{"samples", 4}, {"seqlen", 64}, {"seed", 0}};
    json formats_probed = {"BF16", "FP8", "INT8"};
    if (four_bit) formats_probed = {"BF16", "NVFP4A16", "FP8", "INT4", "INT8"};
    const json probe = {{"schema", kProbeSchema},
                        {"inputs", inputs},
                        {"model",
                         {{"path", "models/<tiny> & \"moe\""},
                          {"architecture", "qwen3_moe"},
                          {"num_layers", 2},
                          {"hidden", 64},
                          {"num_experts", 3},
                          {"tie_word_embeddings", false},
                          {"other_tensor_bytes", 1000}}},
                        {"calibration",
                         {{"samples", 4},
                          {"seqlen", 64},
                          {"seed", 0},
                          {"stream_tokens", 999},
                          {"tokens", 256},
                          {"nll", 2.5}}},
                        {"estimators", {"trace", "channel", "hessian", "output"}},
                        {"formats", formats_probed},
                        {"linears", linears}};
    Write("probe.json", probe.dump(1));
    const json config = {{"schema", kLayerConfigSchema},
                         {"probe_inputs", inputs},
                         {"cost", "output"},
                         {"lm_head", "BF16"},
                         {"target", {{"bits", 7.5}}},
                         {"achieved",
                          {{"bits_per_param", 7.25},
                           {"unit_bytes", 90000},
                           {"total_bytes", 120000},
                           {"predicted_dloss", 0.004},
                           {"optimal", true}}},
                         {"knee_bits", 5.0},
                         {"formats", formats}};
    Write("layer_config.json", config.dump(1));
    Write("pareto.csv",
          "target_bits,achieved_bits,unit_bytes,total_bytes,predicted_dloss,optimal,count_BF16\n"
          "4.5,4.5,1,2,0.9,1,0\n5.0,5.0,1,2,0.05,1,0\n7.5,7.25,1,2,0.004,1,0\n"
          "10,9.9,1,2,0.0009,0,0\n16,16,1,2,0.00001,1,3\n");
  }

  Result<std::string> Render(const std::string& out_name = "report.html") {
    ReportOptions o;
    o.work = work_;
    o.output = (tmp_ / out_name).string();
    auto r = WriteReport(o);
    if (!r.ok()) return r.status();
    std::ifstream in(r->path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path tmp_;
  std::string work_;
};

TEST_F(ReportTest, CellsCollapseExpertsIntoOneColumnPerProjection) {
  WriteWork();
  auto d = LoadReportData(work_);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const std::vector<std::string> cols = {"self_attn.q_proj",        "self_attn.k_proj",
                                         "self_attn.v_proj",        "self_attn.o_proj",
                                         "mlp.experts.*.gate_proj", "mlp.experts.*.up_proj",
                                         "mlp.experts.*.down_proj"};
  EXPECT_EQ(d->columns, cols);
  EXPECT_EQ(d->row_labels, (std::vector<std::string>{"layer 0", "layer 1", "lm_head"}));
  ASSERT_EQ(d->cells.size(), 2u * 7 + 1);
  const ReportCell& experts = d->cells[4];
  EXPECT_EQ(experts.members, 3);
  EXPECT_EQ(experts.format, "FP8");
  EXPECT_EQ(d->reference_format, "NVFP4A16");
  // Experts summed: the three gate_proj Linears of layer 0 (scales 1.3^5, 1.3^8, 1.3^11).
  const double s = std::pow(1.3, 5) + std::pow(1.3, 8) + std::pow(1.3, 11);
  ASSERT_TRUE(experts.reference_cost.has_value());
  EXPECT_NEAR(*experts.reference_cost, 3e-3 * s, 1e-12);
  EXPECT_NEAR(experts.chosen_cost, 5e-4 * s, 1e-12);
  EXPECT_EQ(d->cells.back().span, 7);
  EXPECT_TRUE(d->knee_bits.has_value());
}

TEST_F(ReportTest, PageHasChartsMarkersLegendAndOneCellPerLayerModule) {
  WriteWork();
  auto html = Render();
  ASSERT_TRUE(html.ok()) << html.status().ToString();
  const std::string& h = *html;
  EXPECT_EQ(Count(h, "<svg "), 3u);
  EXPECT_EQ(Count(h, "class=\"cell\""), 15u);
  EXPECT_EQ(Count(h, "class=\"heat\""), 15u);
  EXPECT_EQ(Count(h, "class=\"knee\""), 2u);    // marker + legend
  EXPECT_EQ(Count(h, "class=\"chosen\""), 2u);  // marker + legend
  EXPECT_NE(h.find("class=\"knee-label\""), std::string::npos);
  EXPECT_NE(h.find("class=\"chosen-label\""), std::string::npos);
  EXPECT_NE(h.find("data-yscale=\"log\""), std::string::npos);  // 0.9 .. 1e-5: 5 decades
  EXPECT_EQ(Count(h, "<polyline class=\"curve\""), 1u);
  EXPECT_EQ(Count(h, "class=\"pt"), 5u + 1);  // 5 sweep points + legend
  for (const char* f : {"BF16", "NVFP4", "NVFP4A16", "MXFP8", "MXFP4", "FP8", "INT4", "INT8"})
    EXPECT_NE(h.find("</span>" + std::string(f) + " <small>"), std::string::npos) << f;
  EXPECT_EQ(Count(h, "<li class=\"legend"), 8u);
  EXPECT_NE(h.find("mlp.experts.*.gate_proj"), std::string::npos);
  // No per-expert cell or label in the charts (the table lists single Linears).
  EXPECT_EQ(h.substr(0, h.find("<table")).find("mlp.experts.1."), std::string::npos);
  // Top table: 15 rows, the most sensitive first (lm_head, scale 5000).
  EXPECT_EQ(Count(h, "<tr><td>"), 15u);
  EXPECT_LT(h.find("<td class=\"mod\">lm_head"), h.find("<td class=\"mod\">model.layers"));
  // Tooltips carry module, format and predicted Δloss.
  EXPECT_NE(h.find("<title>layer 1 · self_attn.q_proj\nformat: NVFP4A16\npredicted Δloss in it: "),
            std::string::npos);
}

TEST_F(ReportTest, FitsTheWindowAndReachesNoNetwork) {
  WriteWork();
  auto html = Render();
  ASSERT_TRUE(html.ok()) << html.status().ToString();
  std::string h = *html;
  const std::regex svg_tag("<svg [^>]*>");
  size_t svgs = 0;
  for (auto it = std::sregex_iterator(h.begin(), h.end(), svg_tag); it != std::sregex_iterator();
       ++it, ++svgs) {
    EXPECT_NE(it->str().find("viewBox=\"0 0 1200 "), std::string::npos) << it->str();
    EXPECT_NE(it->str().find("width=\"100%\""), std::string::npos) << it->str();
  }
  EXPECT_EQ(svgs, 3u);
  // No fixed pixel width wider than the window anywhere (attributes or CSS).
  const std::regex widths("width(=\"|:)\\s*([0-9.]+)(px)?");
  for (auto it = std::sregex_iterator(h.begin(), h.end(), widths); it != std::sregex_iterator();
       ++it)
    EXPECT_LE(std::stod((*it)[2].str()), 1280) << it->str();
  EXPECT_EQ(h.find("<script"), std::string::npos);
  const std::string xmlns = "http://www.w3.org/2000/svg";
  for (size_t p; (p = h.find(xmlns)) != std::string::npos;) h.erase(p, xmlns.size());
  EXPECT_EQ(h.find("http://"), std::string::npos);
  EXPECT_EQ(h.find("https://"), std::string::npos);
  EXPECT_EQ(h.find("url(http"), std::string::npos);
}

TEST_F(ReportTest, TextIsEscaped) {
  WriteWork();
  auto html = Render();
  ASSERT_TRUE(html.ok()) << html.status().ToString();
  EXPECT_EQ(html->find("<tiny>"), std::string::npos);
  EXPECT_NE(html->find("models/&lt;tiny&gt; &amp; &quot;moe&quot;"), std::string::npos);
  EXPECT_EQ(HtmlEscape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
}

TEST_F(ReportTest, ReferenceFallsBackToTheCheapestFormat) {
  WriteWork(/*four_bit=*/false);
  auto d = LoadReportData(work_);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->reference_format, "FP8");  // 4224 bytes < INT8's 4240 < BF16's 8192
  for (const auto& c : d->cells) EXPECT_TRUE(c.reference_cost.has_value());
}

TEST_F(ReportTest, MissingInputsNameTheFileAndTheCommand) {
  auto r = LoadReportData(work_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("probe.json"), std::string::npos);
  EXPECT_NE(r.status().message().find("prismaquant probe"), std::string::npos);

  WriteWork();
  fs::remove(tmp_ / "layer_config.json");
  r = LoadReportData(work_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("layer_config.json"), std::string::npos);
  EXPECT_NE(r.status().message().find("prismaquant allocate"), std::string::npos);

  WriteWork();
  fs::remove(tmp_ / "pareto.csv");
  r = LoadReportData(work_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("pareto.csv"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp_ / "report.html"));
}

TEST_F(ReportTest, DamagedInputsAreDataLoss) {
  const std::vector<std::pair<std::string, std::string>> damage = {
      {"layer_config.json", "{\"schema\": "},
      {"layer_config.json", "{\"schema\": \"prismaquant.layer_config/1\", \"cost\": \"output\"}"},
      {"probe.json", "[1, 2"},
      {"pareto.csv", "target_bits,achieved_bits\n1,2\n"},
      {"pareto.csv",
       "target_bits,achieved_bits,unit_bytes,total_bytes,predicted_dloss,optimal\n4,4,1,2,x,1\n"},
  };
  for (const auto& [file, text] : damage) {
    WriteWork();
    Write(file, text);
    auto r = LoadReportData(work_);
    ASSERT_FALSE(r.ok()) << file << ": " << text;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
    EXPECT_NE(r.status().message().find(file), std::string::npos) << r.status().ToString();
  }
  // A config whose types are wrong is damaged too.
  WriteWork();
  json c = json::parse(std::ifstream(tmp_ / "layer_config.json"));
  c["achieved"]["bits_per_param"] = "many";
  Write("layer_config.json", c.dump());
  auto r = LoadReportData(work_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
}

TEST_F(ReportTest, RefusesAnotherProbesConfigAndExistingOutput) {
  WriteWork();
  json c = json::parse(std::ifstream(tmp_ / "layer_config.json"));
  c["probe_inputs"]["seed"] = 7;
  Write("layer_config.json", c.dump());
  auto r = LoadReportData(work_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);

  WriteWork();
  ASSERT_TRUE(Render().ok());
  auto again = Render();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kInvalidArgument);
  ReportOptions o;
  o.work = work_;
  o.output = (tmp_ / "report.html").string();
  o.overwrite = true;
  EXPECT_TRUE(WriteReport(o).ok());
}

}  // namespace
}  // namespace pq::report
