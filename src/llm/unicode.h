// Unicode helpers for the tokenizers, without ICU: UTF-8 coding, general
// categories, full lowercasing, the four normalization forms (tables in
// unicode_data.cpp, generated from the Unicode Character Database), and the
// GPT-2 byte-level alphabet.
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

constexpr uint32_t kReplacementCharacter = 0xFFFD;
constexpr size_t kValidUtf8 = static_cast<size_t>(-1);

// --- UTF-8 ---
// Byte offset of the first invalid UTF-8 sequence (bad lead or continuation
// byte, truncation, overlong form, surrogate, > U+10FFFF); kValidUtf8 if none.
size_t find_invalid_utf8(std::string_view text);
// Length of the sequence that starts with `lead` (1 for an invalid lead byte).
size_t utf8_length(uint8_t lead);
// Decodes the code point at *pos of valid UTF-8 and advances *pos.
uint32_t next_code_point(std::string_view text, size_t* pos);
std::vector<uint32_t> code_points(std::string_view valid_utf8);
void append_utf8(std::string& out, uint32_t cp);
std::string to_utf8(const std::vector<uint32_t>& cps);
// Replaces each invalid sequence with U+FFFD (like Rust's from_utf8_lossy).
std::string to_valid_utf8(std::string_view bytes);

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
inline bool is_symbol(uint32_t cp) {
  auto c = category(cp);
  return c >= Category::Sm && c <= Category::So;
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
