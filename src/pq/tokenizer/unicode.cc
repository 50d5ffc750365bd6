#include "pq/tokenizer/unicode.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "pq/tokenizer/unicode_tables.h"

namespace pq::tokenizer::unicode {
namespace {

// Hangul syllable composition constants (Unicode chapter 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

const tables::Decomposition* FindDecomposition(char32_t cp) {
  const auto& t = tables::kCanonicalDecomposition;
  const auto* it = std::lower_bound(
      std::begin(t), std::end(t), cp,
      [](const tables::Decomposition& d, char32_t c) { return d.cp < static_cast<uint32_t>(c); });
  if (it == std::end(t) || it->cp != cp) return nullptr;
  return it;
}

// Primary composites keyed by (first, second), built once from the decomposition table.
struct CompositionTable {
  std::vector<std::pair<uint64_t, char32_t>> pairs;  // sorted by key
  CompositionTable() {
    for (const auto& d : tables::kCanonicalDecomposition) {
      if (d.composes) pairs.emplace_back((uint64_t{d.first} << 32) | d.second, d.cp);
    }
    std::sort(pairs.begin(), pairs.end());
  }
};

// Returns the primary composite of (a, b), or 0 if there is none.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  static const CompositionTable* table = new CompositionTable();
  const uint64_t key = (uint64_t{a} << 32) | b;
  auto it = std::lower_bound(table->pairs.begin(), table->pairs.end(), key,
                             [](const auto& p, uint64_t k) { return p.first < k; });
  if (it == table->pairs.end() || it->first != key) return 0;
  return it->second;
}

void Decompose(char32_t cp, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  const tables::Decomposition* d = FindDecomposition(cp);
  if (d == nullptr) {
    out->push_back(cp);
    return;
  }
  Decompose(d->first, out);
  if (d->second != 0) Decompose(d->second, out);
}

// Canonical decomposition followed by canonical ordering (stable sort of non-starter runs).
std::vector<char32_t> DecomposeAndOrder(std::string_view s) {
  std::vector<char32_t> cps;
  cps.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) Decompose(DecodeUtf8(s, &pos), &cps);
  size_t i = 0;
  while (i < cps.size()) {
    if (CombiningClass(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && CombiningClass(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i),
                     cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return CombiningClass(a) < CombiningClass(b); });
    i = j;
  }
  return cps;
}

std::string Encode(const std::vector<char32_t>& cps) {
  std::string out;
  out.reserve(cps.size() * 2);
  for (char32_t c : cps) AppendUtf8(c, &out);
  return out;
}

}  // namespace

char32_t DecodeUtf8(std::string_view s, size_t* pos) {
  const auto b0 = static_cast<unsigned char>(s[*pos]);
  const size_t n = std::min(Utf8Length(b0), s.size() - *pos);
  char32_t cp;
  switch (n) {
    case 2:
      cp = b0 & 0x1Fu;
      break;
    case 3:
      cp = b0 & 0x0Fu;
      break;
    case 4:
      cp = b0 & 0x07u;
      break;
    default:
      cp = b0;
  }
  for (size_t k = 1; k < n; ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[*pos + k]) & 0x3Fu);
  }
  *pos += n;
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsWhiteSpace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int CombiningClass(char32_t c) {
  if (c < 0x300) return 0;
  const auto& t = tables::kCombiningClass;
  const auto* it = std::upper_bound(
      std::begin(t), std::end(t), c,
      [](char32_t x, const tables::CccRange& r) { return static_cast<uint32_t>(x) < r.first; });
  if (it == std::begin(t)) return 0;
  --it;
  return c <= it->last ? it->ccc : 0;
}

bool IsAscii(std::string_view s) {
  for (char ch : s) {
    if (static_cast<unsigned char>(ch) >= 0x80) return false;
  }
  return true;
}

std::string Nfd(std::string_view s) {
  if (IsAscii(s)) return std::string(s);
  return Encode(DecomposeAndOrder(s));
}

std::string Nfc(std::string_view s) {
  if (IsAscii(s)) return std::string(s);
  std::vector<char32_t> cps = DecomposeAndOrder(s);
  if (cps.empty()) return {};
  // Canonical composition (UAX #15 reference algorithm): a character composes with the last
  // starter unless a character of equal or higher class (or a starter) lies between them.
  size_t starter = 0;
  int last_class = CombiningClass(cps[0]);
  if (last_class != 0) last_class = 256;  // a leading non-starter blocks everything
  size_t out = 1;
  for (size_t i = 1; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const int cls = CombiningClass(c);
    const char32_t composite = Compose(cps[starter], c);
    if (composite != 0 && (last_class < cls || last_class == 0)) {
      cps[starter] = composite;
      continue;
    }
    if (cls == 0) starter = out;
    last_class = cls;
    cps[out++] = c;
  }
  cps.resize(out);
  return Encode(cps);
}

const char* UnicodeVersion() { return tables::kUnicodeVersion; }

}  // namespace pq::tokenizer::unicode
