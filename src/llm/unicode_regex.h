// A compiled Unicode regular expression (PCRE2 with UTF and UCP, JIT when
// available), for the pre-tokenizer split patterns. Compiled once and shared:
// find_all is safe to call from several threads at once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flame::llm {

class UnicodeRegex {
 public:
  // Throws flame::Error naming the pattern and the position of a syntax error.
  explicit UnicodeRegex(std::string pattern);
  ~UnicodeRegex();
  UnicodeRegex(const UnicodeRegex&) = delete;
  UnicodeRegex& operator=(const UnicodeRegex&) = delete;

  const std::string& pattern() const { return pattern_; }

  // The [begin, end) byte offsets of the successive leftmost non-overlapping
  // matches in `text` (valid UTF-8). The subject is `text` alone, so
  // lookarounds and anchors see its ends. After an empty match the search
  // resumes one character further; an empty match right where the previous
  // match ended is skipped (the convention of Rust's and Oniguruma's iterators).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8
};

}  // namespace flame::llm
