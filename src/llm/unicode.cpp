#include "llm/unicode.h"

#include <algorithm>
#include <array>

#include "llm/unicode_data.h"
#include "util/utf8.h"

namespace flame::llm::unicode {

namespace ud = unicode_data;

// --- Properties ---

namespace {

Category category_from_table(uint32_t cp) {
  const auto* begin = ud::kCategoryRanges;
  const auto* end = begin + ud::kCategoryRangesCount;
  const auto* it =
      std::upper_bound(begin, end, cp, [](uint32_t v, const ud::CategoryRange& r) { return v < r.first; });
  if (it == begin) return Category::Cn;
  return static_cast<Category>((it - 1)->category);
}

}  // namespace

Category category(uint32_t cp) {
  // Latin-1 is most of the text: a direct table instead of the binary search.
  static const auto latin1 = [] {
    std::array<Category, 256> t{};
    for (uint32_t c = 0; c < 256; ++c) t[c] = category_from_table(c);
    return t;
  }();
  return cp < 256 ? latin1[cp] : category_from_table(cp);
}

bool is_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const auto* begin = ud::kCombiningClasses;
  const auto* end = begin + ud::kCombiningClassesCount;
  const auto* it =
      std::upper_bound(begin, end, cp, [](uint32_t v, const ud::ClassRange& r) { return v < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->combining_class : 0;
}

namespace {

const ud::SequenceMap* find_sequence(const ud::SequenceMap* table, size_t count, uint32_t cp) {
  const auto* end = table + count;
  const auto* it =
      std::lower_bound(table, end, cp, [](const ud::SequenceMap& m, uint32_t v) { return m.code_point < v; });
  return it != end && it->code_point == cp ? it : nullptr;
}

void append_sequence(const ud::SequenceMap& m, std::vector<uint32_t>& out) {
  out.insert(out.end(), ud::kSequencePool + m.offset, ud::kSequencePool + m.offset + m.length);
}

// Hangul syllables decompose and compose algorithmically.
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void decompose(uint32_t cp, bool compat, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto* m =
      compat ? find_sequence(ud::kNfkd, ud::kNfkdCount, cp) : find_sequence(ud::kNfd, ud::kNfdCount, cp);
  if (m != nullptr) {
    append_sequence(*m, out);
  } else {
    out.push_back(cp);
  }
}

bool compose_pair(uint32_t a, uint32_t b, uint32_t* out) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    *out = kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    return true;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    *out = a + (b - kTBase);
    return true;
  }
  const auto* begin = ud::kCompositions;
  const auto* end = begin + ud::kCompositionsCount;
  const auto* it =
      std::lower_bound(begin, end, std::make_pair(a, b), [](const ud::Composition& c, const auto& key) {
        return c.first < key.first || (c.first == key.first && c.second < key.second);
      });
  if (it != end && it->first == a && it->second == b) {
    *out = it->composite;
    return true;
  }
  return false;
}

// Stable sort of each run of non-starters by combining class.
void canonical_order(std::vector<uint32_t>& cps) {
  size_t i = 0;
  while (i < cps.size()) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(cps.begin() + i, cps.begin() + j,
                       [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    }
    i = j;
  }
}

void compose(std::vector<uint32_t>& cps) {
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  long starter = -1;       // index in `out` of the last starter
  uint8_t last_class = 0;  // class of the last code point appended
  for (uint32_t cp : cps) {
    const uint8_t cls = combining_class(cp);
    if (starter >= 0) {
      const bool adjacent = static_cast<long>(out.size()) - 1 == starter;
      if (adjacent || (last_class != 0 && last_class < cls)) {
        uint32_t composite;
        if (compose_pair(out[starter], cp, &composite)) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (cls == 0) starter = static_cast<long>(out.size());
    last_class = cls;
    out.push_back(cp);
  }
  cps.swap(out);
}

}  // namespace

void append_lowercase(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp < 0x80) {
    out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  const auto* m = find_sequence(ud::kLowercase, ud::kLowercaseCount, cp);
  if (m != nullptr) {
    append_sequence(*m, out);
  } else {
    out.push_back(cp);
  }
}

std::string lowercase(std::string_view valid_utf8) {
  std::vector<uint32_t> out;
  size_t pos = 0;
  while (pos < valid_utf8.size()) append_lowercase(utf8::next_code_point(valid_utf8, &pos), out);
  return utf8::encode(out);
}

std::vector<uint32_t> normalize(const std::vector<uint32_t>& cps, NormalForm form) {
  const bool compat = form == NormalForm::NFKC || form == NormalForm::NFKD;
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  for (uint32_t cp : cps) {
    if (cp < 0xC0) {
      // Nothing below U+00C0 decomposes canonically; U+00A0..U+00BF have compatibility forms.
      if (!compat || cp < 0xA0) {
        out.push_back(cp);
        continue;
      }
    }
    decompose(cp, compat, out);
  }
  canonical_order(out);
  if (form == NormalForm::NFC || form == NormalForm::NFKC) compose(out);
  return out;
}

std::string normalize(std::string_view valid_utf8, NormalForm form) {
  // ASCII is invariant under every form.
  bool ascii = true;
  for (char c : valid_utf8) {
    if (static_cast<uint8_t>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return std::string(valid_utf8);
  return utf8::encode(normalize(utf8::code_points(valid_utf8), form));
}

// --- Byte-level alphabet ---

namespace {

struct ByteLevelTables {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 256 + 68> cp_to_byte{};  // the alphabet lies below U+0144
  ByteLevelTables() {
    cp_to_byte.fill(-1);
    // Printable bytes stand for themselves; the others are shifted to U+0100 and up.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      utf8::append(byte_to_utf8[b], byte_to_cp[b]);
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables tables;
  return tables;
}

}  // namespace

uint32_t byte_to_code_point(uint8_t byte) {
  return byte_level_tables().byte_to_cp[byte];
}

int code_point_to_byte(uint32_t cp) {
  const auto& t = byte_level_tables().cp_to_byte;
  return cp < t.size() ? t[cp] : -1;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& t = byte_level_tables().byte_to_utf8;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t[static_cast<uint8_t>(c)];
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string* out) {
  size_t pos = 0;
  std::string bytes;
  bytes.reserve(text.size());
  while (pos < text.size()) {
    const int b = code_point_to_byte(utf8::next_code_point(text, &pos));
    if (b < 0) return false;
    bytes += static_cast<char>(b);
  }
  out->append(bytes);
  return true;
}

}  // namespace flame::llm::unicode
