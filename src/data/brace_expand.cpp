#include "data/brace_expand.h"

#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>

#include "util/error.h"

namespace flame::data {

namespace {

constexpr int64_t kMaxRangeSize = 10'000'000;

// Index of the '}' closing the '{' at `open`, or npos.
size_t matching_brace(const std::string& s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i;
  }
  return std::string::npos;
}

// Splits a group's body on the commas at nesting depth 0.
std::vector<std::string> split_top_level(const std::string& body) {
  std::vector<std::string> parts(1);
  int depth = 0;
  for (char c : body) {
    if (c == '{') ++depth;
    if (c == '}') --depth;
    if (c == ',' && depth == 0) {
      parts.emplace_back();
    } else {
      parts.back().push_back(c);
    }
  }
  return parts;
}

bool is_integer(const std::string& s) {
  size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
  if (i == s.size() || s.size() - i > 18) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// "{A..B}" body -> the numbers, zero-padded to the wider bound when either bound
// has a leading zero. Returns false when the body is not a range.
bool expand_range(const std::string& body, const std::string& pattern, std::vector<std::string>* out) {
  const size_t dots = body.find("..");
  if (dots == std::string::npos) return false;
  const std::string a = body.substr(0, dots), b = body.substr(dots + 2);
  if (!is_integer(a) || !is_integer(b)) return false;
  const int64_t first = std::strtoll(a.c_str(), nullptr, 10), last = std::strtoll(b.c_str(), nullptr, 10);
  const auto padded = [](const std::string& s) {
    return s.size() > 1 && (s[0] == '0' || (s[0] == '-' && s[1] == '0'));
  };
  const size_t width = (padded(a) || padded(b)) ? std::max(a.size(), b.size()) : 0;
  const int64_t step = first <= last ? 1 : -1;
  if ((last - first) * step >= kMaxRangeSize)
    fail("brace range '{{{}}}' in '{}' names too many files", body, pattern);
  for (int64_t v = first;; v += step) {
    std::string digits = std::to_string(v < 0 ? -v : v);
    const size_t sign = v < 0 ? 1 : 0;
    if (digits.size() + sign < width) digits.insert(0, width - digits.size() - sign, '0');
    out->push_back(v < 0 ? "-" + digits : digits);
    if (v == last) break;
  }
  return true;
}

void expand_into(const std::string& pattern, const std::string& whole, std::vector<std::string>* out) {
  // Find the first group that expands; braces before it are literal text.
  for (size_t open = pattern.find('{'); open != std::string::npos; open = pattern.find('{', open + 1)) {
    const size_t close = matching_brace(pattern, open);
    if (close == std::string::npos) break;
    const std::string body = pattern.substr(open + 1, close - open - 1);
    std::vector<std::string> alternatives;
    const auto parts = split_top_level(body);
    if (parts.size() > 1) {
      for (const auto& part : parts) expand_into(part, whole, &alternatives);
    } else if (!expand_range(body, whole, &alternatives)) {
      continue;
    }
    const std::string prefix = pattern.substr(0, open);
    std::vector<std::string> suffixes;
    expand_into(pattern.substr(close + 1), whole, &suffixes);
    for (const auto& alt : alternatives)
      for (const auto& suffix : suffixes) out->push_back(prefix + alt + suffix);
    return;
  }
  out->push_back(pattern);
}

}  // namespace

std::vector<std::string> expand_braces(const std::string& pattern) {
  std::vector<std::string> out;
  expand_into(pattern, pattern, &out);
  return out;
}

}  // namespace flame::data
