// UTF-8, one rule for the whole program. Well-formed means the byte ranges of
// the Unicode Standard's table 3-7 (no overlong forms, surrogates or code
// points past U+10FFFF). Ill-formed input is read with the standard's
// "maximal subpart" practice (Unicode 15, section 3.9, U+FFFD substitution):
// each maximal subpart of an ill-formed sequence -- the longest prefix of a
// well-formed sequence, or else one byte -- stands for one U+FFFD. Python's
// bytes.decode("utf-8", "replace"), Rust's from_utf8_lossy and Hugging Face
// tokenizers do the same, so "\xE2\x82x" is "\uFFFDx" and "\xC0\xAF" is two
// U+FFFD.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flame::utf8 {

constexpr uint32_t kReplacementCharacter = 0xFFFD;
constexpr size_t kValid = static_cast<size_t>(-1);

// Length of the well-formed sequence starting at text[pos], or 0 if the bytes
// there are ill-formed (pos < text.size()).
size_t well_formed_length(std::string_view text, size_t pos);

// Bytes taken by the character at text[pos] (pos < text.size()): its
// well-formed length, or else the length of its maximal subpart (>= 1), which
// stands for one U+FFFD.
size_t char_length(std::string_view text, size_t pos);

// Start of the character holding byte `pos` of well-formed text: `pos` moved
// back over continuation bytes, never below `floor`.
size_t char_start(std::string_view text, size_t pos, size_t floor = 0);

// Byte offset of the first ill-formed sequence; kValid if there is none.
size_t find_invalid(std::string_view text);

// True when `text` is well-formed. Otherwise sets *bad_offset, if given, to
// the byte offset of the first ill-formed sequence.
bool is_valid(std::string_view text, size_t* bad_offset = nullptr);

// `text` with each maximal subpart of an ill-formed sequence replaced by U+FFFD.
std::string sanitize(std::string_view text);

// Decodes the character at *pos and advances *pos past it (char_length);
// an ill-formed subpart decodes to U+FFFD.
uint32_t next_code_point(std::string_view text, size_t* pos);
std::vector<uint32_t> code_points(std::string_view text);

void append(std::string& out, uint32_t cp);
std::string encode(const std::vector<uint32_t>& cps);

// Drops an incomplete sequence at the end of `text` (a maximal subpart that
// the end of the text cut short, e.g. "ab\xE2\x82"); anything else is kept.
void drop_incomplete_tail(std::string& text);

}  // namespace flame::utf8
