// Small parsers shared by the subcommands (format lists, byte sizes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"

namespace pq::cli {

// "NVFP4,MXFP8" -> ids (case-insensitive); empty string -> empty list.
Result<std::vector<formats::FormatId>> ParseFormatList(const std::string& list);

// --visual-format: the fixed format of the vision tower's Linears (Qwen3.5/3.6).
inline constexpr const char* kVisualFormatHelp =
    "Fixed format of the vision tower's Linears (default BF16). They are not calibrated yet: "
    "the probe has no image samples, so they are not allocated; their bytes are counted";
Result<formats::FormatId> ParseVisualFormat(const std::string& name);
// "1234", "22GB" (10^9), "500MiB" (2^20), "1.5TB" ... -> bytes.
Result<uint64_t> ParseByteSize(const std::string& text);
// "4.5,5,6" -> numbers.
Result<std::vector<double>> ParseNumberList(const std::string& list);

}  // namespace pq::cli
