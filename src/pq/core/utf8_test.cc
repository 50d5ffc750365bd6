#include "pq/core/utf8.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace pq {
namespace {

// UTF-8 of code point `cp` written without any validity checks (so tests can build
// surrogates and values above U+10FFFF), in `len` bytes (len > minimal: an overlong form).
std::string Encode(uint32_t cp, int len) {
  std::string s;
  if (len == 1) {
    s += static_cast<char>(cp);
    return s;
  }
  static constexpr unsigned char kLead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
  s += static_cast<char>(kLead[len] | (cp >> (6 * (len - 1))));
  for (int k = len - 2; k >= 0; --k) s += static_cast<char>(0x80 | ((cp >> (6 * k)) & 0x3F));
  return s;
}

// a + b + c, built with append (GCC 12 warns falsely about operator+ on short literals).
std::string Cat(std::string_view a, std::string_view b, std::string_view c = {}) {
  std::string s(a);
  s.append(b);
  s.append(c);
  return s;
}

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii and \t\n controls"));
  EXPECT_TRUE(IsValidUtf8(std::string("nul \0 inside", 12)));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x96\x81"));
  // The edges of every length and of the surrogate gap.
  for (uint32_t cp : {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFDu, 0xFFFFu,
                      0x10000u, 0x10FFFFu}) {
    const int len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    EXPECT_TRUE(IsValidUtf8(Encode(cp, len))) << std::hex << cp;
    EXPECT_TRUE(IsValidUtf8(Cat("a", Encode(cp, len), "b"))) << std::hex << cp;
  }
}

TEST(Utf8, RejectsOverlongForms) {
  EXPECT_FALSE(IsValidUtf8("\xc0\x80"));          // U+0000 in two bytes
  EXPECT_FALSE(IsValidUtf8("\xc1\xbf"));          // U+007F in two bytes
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\x80"));      // U+0000 in three
  EXPECT_FALSE(IsValidUtf8("\xe0\x9f\xbf"));      // U+07FF in three
  EXPECT_FALSE(IsValidUtf8("\xf0\x80\x80\x80"));  // U+0000 in four
  EXPECT_FALSE(IsValidUtf8("\xf0\x8f\xbf\xbf"));  // U+FFFF in four
  for (uint32_t cp : {0x41u, 0x7FFu, 0xFFFFu}) {
    const int min_len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
    for (int len = min_len + 1; len <= 4; ++len)
      EXPECT_FALSE(IsValidUtf8(Encode(cp, len))) << std::hex << cp << " in " << len;
  }
}

TEST(Utf8, RejectsSurrogates) {
  for (uint32_t cp : {0xD800u, 0xDBFFu, 0xDC00u, 0xDFFFu})
    EXPECT_FALSE(IsValidUtf8(Cat("ok", Encode(cp, 3)))) << std::hex << cp;
  // A CESU-8 style pair (high + low surrogate) is not UTF-8 either.
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\xbd\xed\xb8\x80"));
}

TEST(Utf8, RejectsValuesAboveTheLastCodePoint) {
  EXPECT_FALSE(IsValidUtf8(Encode(0x110000, 4)));
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xf7\xbf\xbf\xbf"));      // U+1FFFFF, the largest 4-byte value
  EXPECT_FALSE(IsValidUtf8("\xf8\x88\x80\x80\x80"));  // 5-byte forms are not UTF-8
  EXPECT_FALSE(IsValidUtf8("\xfc\x84\x80\x80\x80\x80"));
}

TEST(Utf8, RejectsTruncatedSequences) {
  for (const std::string full : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}) {
    for (size_t keep = 1; keep < full.size(); ++keep) {
      const std::string cut = full.substr(0, keep);
      EXPECT_FALSE(IsValidUtf8(cut)) << keep;
      EXPECT_FALSE(IsValidUtf8(Cat("x", cut))) << keep;  // at the end of the text
      EXPECT_FALSE(IsValidUtf8(Cat(cut, "x")))
          << keep;  // an ASCII byte where a continuation is due
      EXPECT_FALSE(IsValidUtf8(Cat(cut, full))) << keep;  // a new lead byte where one is due
    }
  }
}

TEST(Utf8, RejectsStrayAndInvalidBytes) {
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(IsValidUtf8("a\xbf"));
  EXPECT_FALSE(IsValidUtf8("\xc3\xa9\xa9"));  // one continuation too many
  EXPECT_FALSE(IsValidUtf8("\xfe"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
}

// Every 1- and 2-byte string, and every 3-byte string with an E0/ED/EF lead, against a
// decoder written from the definition (RFC 3629 table of well-formed byte sequences).
bool WellFormedByTable(const std::string& s) {
  size_t i = 0;
  auto in = [](unsigned char c, unsigned lo, unsigned hi) { return c >= lo && c <= hi; };
  while (i < s.size()) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const size_t left = s.size() - i;
    if (b(0) <= 0x7F) {
      i += 1;
    } else if (in(b(0), 0xC2, 0xDF) && left >= 2 && in(b(1), 0x80, 0xBF)) {
      i += 2;
    } else if (left >= 3 && in(b(2), 0x80, 0xBF) &&
               ((b(0) == 0xE0 && in(b(1), 0xA0, 0xBF)) ||
                ((in(b(0), 0xE1, 0xEC) || in(b(0), 0xEE, 0xEF)) && in(b(1), 0x80, 0xBF)) ||
                (b(0) == 0xED && in(b(1), 0x80, 0x9F)))) {
      i += 3;
    } else if (left >= 4 && in(b(2), 0x80, 0xBF) && in(b(3), 0x80, 0xBF) &&
               ((b(0) == 0xF0 && in(b(1), 0x90, 0xBF)) ||
                (in(b(0), 0xF1, 0xF3) && in(b(1), 0x80, 0xBF)) ||
                (b(0) == 0xF4 && in(b(1), 0x80, 0x8F)))) {
      i += 4;
    } else {
      return false;
    }
  }
  return true;
}

TEST(Utf8, AgreesWithTheRfcTableExhaustively) {
  for (int a = 0; a < 256; ++a) {
    const std::string one(1, static_cast<char>(a));
    ASSERT_EQ(IsValidUtf8(one), WellFormedByTable(one)) << a;
    for (int b = 0; b < 256; ++b) {
      const std::string two = Cat(one, std::string(1, static_cast<char>(b)));
      ASSERT_EQ(IsValidUtf8(two), WellFormedByTable(two)) << a << " " << b;
    }
  }
  for (int lead : {0xE0, 0xED, 0xEF, 0xF0, 0xF4}) {
    for (int b = 0; b < 256; ++b) {
      for (int c = 0; c < 256; ++c) {
        std::string s = {static_cast<char>(lead), static_cast<char>(b), static_cast<char>(c)};
        ASSERT_EQ(IsValidUtf8(s), WellFormedByTable(s)) << lead << " " << b << " " << c;
        s += '\x80';
        ASSERT_EQ(IsValidUtf8(s), WellFormedByTable(s)) << lead << " " << b << " " << c;
      }
    }
  }
}

TEST(Utf8, CompletePrefixHoldsBackAnUnfinishedTail) {
  EXPECT_EQ(CompleteUtf8PrefixLength(""), 0u);
  EXPECT_EQ(CompleteUtf8PrefixLength("abc"), 3u);
  for (const std::string full : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}) {
    EXPECT_EQ(CompleteUtf8PrefixLength(Cat("ab", full)), 2 + full.size());
    for (size_t keep = 1; keep < full.size(); ++keep)
      EXPECT_EQ(CompleteUtf8PrefixLength(Cat("ab", full.substr(0, keep))), 2u) << keep;
  }
  // Invalid tails are not held back (waiting would not make them valid).
  EXPECT_EQ(CompleteUtf8PrefixLength("a\xff"), 2u);
  EXPECT_EQ(CompleteUtf8PrefixLength("\x80\x80"), 2u);
  EXPECT_EQ(CompleteUtf8PrefixLength("a\xc3\xa9\xa9"), 4u);
  // Streaming: feeding the complete prefix of every split reassembles the text.
  const std::string text = "x\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80y";
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    const size_t n = CompleteUtf8PrefixLength(text.substr(0, cut));
    EXPECT_LE(n, cut);
    EXPECT_TRUE(IsValidUtf8(text.substr(0, n))) << cut;
    EXPECT_GE(n + 3, cut) << cut;  // holds back at most one unfinished character
  }
}

}  // namespace
}  // namespace pq
