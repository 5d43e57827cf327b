// UTF-8 validation for caption text: the tokenizer and the LLM expect valid
// UTF-8, so bad bytes are caught when captions are read, not deep in a job.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace flame::data {

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF). Otherwise sets *bad_offset, if given, to the byte
// offset of the first invalid sequence.
bool is_valid_utf8(std::string_view text, size_t* bad_offset = nullptr);

// `text` with every invalid sequence replaced by U+FFFD.
std::string replace_invalid_utf8(std::string_view text);

}  // namespace flame::data
