// tokenizer.json loading (vocabulary, merges, added tokens, normalizer,
// pre-tokenizer, post-processor, decoder); a loaded tokenizer must encode and
// decode a fixed text with ids inside its vocabulary.
#include "fuzz_targets.h"
#include "llm/tokenizer.h"
#include "util/error.h"

namespace flame::fuzz {

bool tokenizer_json(const uint8_t* data, size_t size) {
  try {
    const auto tokenizer = llm::Tokenizer::load_tokenizer_json(input_file(data, size, "tokenizer.json"));
    const auto ids = tokenizer->encode("Hello world! 123 ÀÉ 日本語 \t\n  x <s>", true);
    for (const int32_t id : ids) {
      if (id < 0 || id >= tokenizer->vocab_size()) __builtin_trap();
    }
    tokenizer->decode(ids, false);
    tokenizer->decode(ids, true);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(tokenizer_json)
