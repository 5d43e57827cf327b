#include "util/utf8.h"

namespace flame::utf8 {

namespace {

// How much of a well-formed sequence starts at text[pos]: `needed` is the
// length the lead byte announces (0 for a byte that cannot lead), `matched`
// how many bytes from pos fit table 3-7 (at most `needed`).
struct Match {
  size_t needed = 0;
  size_t matched = 0;
};

Match match_at(std::string_view text, size_t pos) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[pos + k]); };
  const uint8_t b0 = byte(0);
  if (b0 < 0x80) return {1, 1};
  Match m;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    m.needed = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    m.needed = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    m.needed = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return m;
  }
  m.matched = 1;
  while (m.matched < m.needed && pos + m.matched < text.size()) {
    const uint8_t b = byte(m.matched);
    if (b < (m.matched == 1 ? lo : 0x80) || b > (m.matched == 1 ? hi : 0xBF)) break;
    ++m.matched;
  }
  return m;
}

bool complete(const Match& m) {
  return m.needed != 0 && m.matched == m.needed;
}

}  // namespace

size_t well_formed_length(std::string_view text, size_t pos) {
  const Match m = match_at(text, pos);
  return complete(m) ? m.needed : 0;
}

size_t char_length(std::string_view text, size_t pos) {
  const Match m = match_at(text, pos);
  return m.matched > 0 ? m.matched : 1;
}

size_t char_start(std::string_view text, size_t pos, size_t floor) {
  while (pos > floor && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

size_t find_invalid(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = well_formed_length(text, i);
    if (n == 0) return i;
    i += n;
  }
  return kValid;
}

bool is_valid(std::string_view text, size_t* bad_offset) {
  const size_t bad = find_invalid(text);
  if (bad == kValid) return true;
  if (bad_offset != nullptr) *bad_offset = bad;
  return false;
}

std::string sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const Match m = match_at(text, i);
    if (complete(m)) {
      out.append(text.substr(i, m.needed));
    } else {
      append(out, kReplacementCharacter);
    }
    i += m.matched > 0 ? m.matched : 1;
  }
  return out;
}

uint32_t next_code_point(std::string_view text, size_t* pos) {
  const size_t i = *pos;
  const Match m = match_at(text, i);
  if (!complete(m)) {
    *pos = i + (m.matched > 0 ? m.matched : 1);
    return kReplacementCharacter;
  }
  const auto c = static_cast<uint8_t>(text[i]);
  uint32_t cp = m.needed == 1 ? c : m.needed == 2 ? (c & 0x1F) : m.needed == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < m.needed; ++k) cp = (cp << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3F);
  *pos = i + m.needed;
  return cp;
}

std::vector<uint32_t> code_points(std::string_view text) {
  std::vector<uint32_t> out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) out.push_back(next_code_point(text, &pos));
  return out;
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string encode(const std::vector<uint32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (uint32_t cp : cps) append(out, cp);
  return out;
}

void drop_incomplete_tail(std::string& text) {
  // A sequence is at most 4 bytes, so an incomplete one starts in the last 3.
  for (size_t k = 1; k <= 3 && k <= text.size(); ++k) {
    const size_t start = text.size() - k;
    const Match m = match_at(text, start);
    if (m.needed > 1 && !complete(m) && m.matched == k) {
      text.resize(start);
      return;
    }
  }
}

}  // namespace flame::utf8
