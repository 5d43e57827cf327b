// Shell-style brace expansion for input lists, as WebDataset and curl accept:
// "data-{0000..0099}.tar" names 100 shards, "{train,val}.jsonl" two files.
#pragma once

#include <string>
#include <vector>

namespace flame::data {

// Expands every brace group left to right; groups may nest. A numeric range
// {A..B} keeps the zero padding of its bounds ("{08..10}" -> 08 09 10) and may
// count down. A group that is neither a list nor a range (e.g. "{x}") and
// unbalanced braces are kept literally. Throws flame::Error for ranges of more
// than 10 million names.
std::vector<std::string> expand_braces(const std::string& pattern);

}  // namespace flame::data
