// Unicode Character Database tables (generated into unicode_data.cpp by
// unicode_data_gen.py). Only unicode.cpp reads them; use the functions in
// unicode.h instead.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flame::llm::unicode_data {

// A run of code points with one general category; it ends where the next begins.
struct CategoryRange {
  uint32_t first;
  uint8_t category;  // index into unicode::Category
};

// A code point mapped to a sequence of code points in kSequencePool.
struct SequenceMap {
  uint32_t code_point;
  uint32_t offset;
  uint32_t length;
};

struct ClassRange {
  uint32_t first;
  uint32_t last;
  uint8_t combining_class;
};

struct Composition {
  uint32_t first;
  uint32_t second;
  uint32_t composite;
};

// All sorted by code point (kCompositions by (first, second)).
extern const CategoryRange kCategoryRanges[];
extern const size_t kCategoryRangesCount;
extern const SequenceMap kLowercase[];
extern const size_t kLowercaseCount;
extern const SequenceMap kNfd[];  // full canonical decomposition, if not the code point itself
extern const size_t kNfdCount;
extern const SequenceMap kNfkd[];  // full compatibility decomposition
extern const size_t kNfkdCount;
extern const ClassRange kCombiningClasses[];  // non-zero classes only
extern const size_t kCombiningClassesCount;
extern const Composition kCompositions[];
extern const size_t kCompositionsCount;
extern const uint32_t kSequencePool[];
extern const size_t kSequencePoolCount;

}  // namespace flame::llm::unicode_data
