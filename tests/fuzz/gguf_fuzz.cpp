// GGUF: the header, metadata and tensor infos (parse_gguf), then the
// tokenizer built from its arrays (Tokenizer::load_gguf, as `flame llm
// tokenize` reads a .gguf vocabulary), which encodes and decodes a fixed text.
#include "fuzz_targets.h"
#include "llm/gguf.h"
#include "llm/tokenizer.h"
#include "util/error.h"

namespace flame::fuzz {

bool gguf(const uint8_t* data, size_t size) {
  try {
    const llm::GgufFile file = llm::parse_gguf(data, size, "fuzz.gguf");
    // Every tensor offset the parser accepted lies after the header.
    if (file.data_offset > size && !file.tensors.empty()) __builtin_trap();
    const auto tokenizer = llm::Tokenizer::load_gguf(input_file(data, size, "fuzz.gguf"));
    const auto ids = tokenizer->encode("Hello world! 123 ÀÉ 日本語 \t\n  x", true);
    for (const int32_t id : ids) {
      if (id < 0 || id >= tokenizer->vocab_size()) __builtin_trap();
    }
    tokenizer->decode(ids);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(gguf)
