// Unicode helpers for the tokenizers, without ICU: general categories, full
// lowercasing, the four normalization forms (tables in unicode_data.cpp,
// generated from the Unicode Character Database), and the GPT-2 byte-level
// alphabet. UTF-8 coding itself is util/utf8.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flame::llm::unicode {

// General categories; the order matches unicode_data_gen.py.
enum class Category : uint8_t {
  Cn,
  Lu,
  Ll,
  Lt,
  Lm,
  Lo,
  Mn,
  Mc,
  Me,
  Nd,
  Nl,
  No,
  Pc,
  Pd,
  Ps,
  Pe,
  Pi,
  Pf,
  Po,
  Sm,
  Sc,
  Sk,
  So,
  Zs,
  Zl,
  Zp,
  Cc,
  Cf,
  Cs,
  Co
};

// --- Properties ---
Category category(uint32_t cp);
inline bool is_letter(uint32_t cp) {
  auto c = category(cp);
  return c >= Category::Lu && c <= Category::Lo;
}
inline bool is_mark(uint32_t cp) {
  auto c = category(cp);
  return c >= Category::Mn && c <= Category::Me;
}
inline bool is_number(uint32_t cp) {
  auto c = category(cp);
  return c >= Category::Nd && c <= Category::No;
}
inline bool is_punctuation(uint32_t cp) {
  auto c = category(cp);
  return c >= Category::Pc && c <= Category::Po;
}
// Cc, Cf, Cs, Co or unassigned (Rust's char::is_other).
inline bool is_other(uint32_t cp) {
  auto c = category(cp);
  return c == Category::Cn || c >= Category::Cc;
}
// The White_Space property (Rust's char::is_whitespace).
bool is_whitespace(uint32_t cp);
inline bool is_alphanumeric(uint32_t cp) {
  return is_letter(cp) || is_number(cp);
}
uint8_t combining_class(uint32_t cp);

// Full lowercase mapping per code point (U+0130 becomes two code points).
void append_lowercase(uint32_t cp, std::vector<uint32_t>& out);
std::string lowercase(std::string_view valid_utf8);

// --- Normalization (UAX #15) ---
enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::vector<uint32_t> normalize(const std::vector<uint32_t>& cps, NormalForm form);
std::string normalize(std::string_view valid_utf8, NormalForm form);

// --- GPT-2 byte-level alphabet: each byte is shown as one printable code point ---
uint32_t byte_to_code_point(uint8_t byte);
int code_point_to_byte(uint32_t cp);  // -1 outside the alphabet
std::string bytes_to_byte_level(std::string_view bytes);
// Maps byte-level text back to bytes; false if a code point is outside the alphabet.
bool byte_level_to_bytes(std::string_view text, std::string* out);

}  // namespace flame::llm::unicode
