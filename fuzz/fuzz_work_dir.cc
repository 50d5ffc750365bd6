// Fuzz target: the work dir's readers on untrusted bytes. The first byte picks the file
// (probe.json, a unit's results.json, layer_config.json, pareto.csv, probe/inputs.json, the
// calibration ids), the rest is its content. A JSON file that reads must also write back and
// read again to the same value — the round trip the work dir promises (work_dir.h); pareto.csv
// (fixed decimals) must read back as written.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "pq/pipeline/work_dir.h"

namespace {

namespace fs = std::filesystem;
using pq::pipeline::WorkDir;

// One scratch work dir per process (libFuzzer runs inputs one after another).
const WorkDir& Scratch() {
  static const WorkDir* w = [] {
    std::string tmpl = (fs::temp_directory_path() / "pq_fuzz_work_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) abort();
    return new WorkDir(tmpl);
  }();
  return *w;
}

void Put(const std::string& path, const uint8_t* data, size_t size) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

void Check(bool ok) {
  if (!ok) __builtin_trap();  // a value that read did not survive write + read
}

template <typename T, typename Write, typename Read>
void RoundTrip(const T& value, Write write, Read read) {
  Check(write(value).ok());
  auto again = read();
  Check(again.ok() && *again == value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const WorkDir& w = Scratch();
  const uint8_t which = data[0] % 6;
  ++data, --size;
  switch (which) {
    case 0: {
      Put(w.probe_json(), data, size);
      auto p = pq::pipeline::ReadProbeFile(w);
      if (p.ok())
        RoundTrip(*p, [&](const auto& v) { return pq::pipeline::WriteProbeFile(w, v); },
                  [&] { return pq::pipeline::ReadProbeFile(w); });
      break;
    }
    case 1: {
      const std::string dir = w.unit_dir(0);
      Put(dir + "/results.json", data, size);
      (void)pq::pipeline::ReadProbeUnit(dir);
      break;
    }
    case 2: {
      Put(w.layer_config_json(), data, size);
      auto c = pq::pipeline::ReadLayerConfig(w);
      if (c.ok())
        RoundTrip(*c, [&](const auto& v) { return pq::pipeline::WriteLayerConfig(w, v); },
                  [&] { return pq::pipeline::ReadLayerConfig(w); });
      break;
    }
    case 3: {  // a table, written with fixed decimals: what it writes must read back as is
      Put(w.pareto_csv(), data, size);
      auto t = pq::pipeline::ReadParetoTable(w);
      if (!t.ok()) break;
      Check(pq::pipeline::WriteParetoTable(w, *t).ok());
      auto written = pq::pipeline::ReadParetoTable(w);
      Check(written.ok());
      RoundTrip(*written, [&](const auto& v) { return pq::pipeline::WriteParetoTable(w, v); },
                [&] { return pq::pipeline::ReadParetoTable(w); });
      break;
    }
    case 4: {
      Put(w.inputs_json(), data, size);
      (void)pq::pipeline::CheckProbeInputs(w, {{"seed", 1}, {"samples", 2}});
      break;
    }
    default: {
      Put(w.calibration_dir() + "/model.safetensors", data, size);
      (void)pq::pipeline::ReadCalibrationSamples(w);
      break;
    }
  }
  return 0;
}
