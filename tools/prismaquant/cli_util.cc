#include "cli_util.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace pq::cli {

Result<std::vector<formats::FormatId>> ParseFormatList(const std::string& list) {
  std::vector<formats::FormatId> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto f = formats::ParseFormat(item);
    if (!f)
      return InvalidArgument("unknown format \"" + item + "\" (" + formats::FormatNameList() + ")");
    out.push_back(*f);
  }
  return out;
}

Result<uint64_t> ParseByteSize(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  std::string unit(end);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  if (unit == "kb") mult = 1e3;
  if (unit == "mb") mult = 1e6;
  if (unit == "gb") mult = 1e9;
  if (unit == "tb") mult = 1e12;
  if (unit == "kib") mult = 1024.0;
  if (unit == "mib") mult = 1024.0 * 1024;
  if (unit == "gib") mult = 1024.0 * 1024 * 1024;
  if (unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  if (end == text.c_str() || mult == 0 || !std::isfinite(v) || v < 0 || v * mult > 1.8e19)
    return InvalidArgument("\"" + text + "\" is not a size (e.g. 22GB, 500MiB, 123456)");
  return static_cast<uint64_t>(std::floor(v * mult));
}

Result<std::vector<double>> ParseNumberList(const std::string& list) {
  std::vector<double> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (*end != '\0' || !std::isfinite(v))
      return InvalidArgument("\"" + item + "\" is not a number");
    out.push_back(v);
  }
  return out;
}

Result<formats::FormatId> ParseVisualFormat(const std::string& name) {
  const auto f = formats::ParseFormat(name);
  if (!f)
    return InvalidArgument("--visual-format: unknown format \"" + name + "\"; one of " +
                           formats::FormatNameList());
  if (formats::Spec(*f).quantizes_activations && *f == formats::FormatId::kNVFP4)
    return InvalidArgument(
        "--visual-format NVFP4 (W4A4) needs calibrated input scales, which "
        "the vision tower does not have yet; use NVFP4A16");
  return *f;
}

}  // namespace pq::cli
