// UTF-8 validation, the one place that decides what well-formed text is (RFC 3629): every
// layer that accepts text from a file or the user checks it here.
#pragma once

#include <cstddef>
#include <string_view>

namespace pq {

// Returns true if `s` is well-formed UTF-8: no stray continuation or invalid lead bytes, no
// truncated sequences, no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
// U+10FFFF.
bool IsValidUtf8(std::string_view s);

// For streaming decoded text: the length of the longest prefix of `s` that does not end
// inside a multi-byte sequence, judged by the trailing lead byte and its continuation bytes
// (at most 3 looked at). A complete or invalid tail is kept: only a sequence that could still
// be completed by later bytes is held back.
size_t CompleteUtf8PrefixLength(std::string_view s);

}  // namespace pq
