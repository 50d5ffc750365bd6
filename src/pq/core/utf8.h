// UTF-8 validation, the one place that decides what well-formed text is (RFC 3629): every
// layer that accepts text from a file or the user checks it here.
#pragma once

#include <string_view>

namespace pq {

// Returns true if `s` is well-formed UTF-8: no stray continuation or invalid lead bytes, no
// truncated sequences, no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
// U+10FFFF.
bool IsValidUtf8(std::string_view s);

}  // namespace pq
