// Encoding arbitrary bytes with every real vocabulary in ../shared/tokenizers
// (loaded once): valid UTF-8 encodes to ids inside the vocabulary that decode
// again; invalid UTF-8 is refused with flame::Error (as the CLI reports it).
#include <memory>
#include <string_view>
#include <vector>

#include "fuzz_targets.h"
#include "llm/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace flame::fuzz {

namespace {

std::vector<std::unique_ptr<llm::Tokenizer>> load_all() {
  std::vector<std::unique_ptr<llm::Tokenizer>> out;
  const auto root = shared_dir() / "tokenizers";
  for (const char* name : {"smollm", "llama3", "qwen3", "gemma3"}) {
    out.push_back(llm::Tokenizer::load(root / name / "tokenizer.json"));
  }
  for (const char* name : {"baichuan", "bert-bge", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2",
                           "gpt-neox", "llama-spm", "mpt", "phi-3", "refact", "starcoder"}) {
    out.push_back(
        llm::Tokenizer::load(root / "llama.cpp-vocab" / ("ggml-vocab-" + std::string(name) + ".gguf")));
  }
  return out;
}

}  // namespace

bool tokenizer_encode(const uint8_t* data, size_t size) {
  static const auto tokenizers = load_all();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = utf8::is_valid(text);
  for (const auto& tokenizer : tokenizers) {
    try {
      const auto ids = tokenizer->encode(text, size % 2 == 0);
      if (!valid) __builtin_trap();  // invalid UTF-8 must be refused
      for (const int32_t id : ids) {
        if (id < 0 || id >= tokenizer->vocab_size()) __builtin_trap();
      }
      tokenizer->decode(ids);
    } catch (const Error&) {
      if (valid) throw;  // valid text must encode: let the fuzzer report it
    }
  }
  return valid;
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(tokenizer_encode)

#ifdef FLAME_FUZZER
// Loading the 16 vocabularies takes longer than libFuzzer's per-input
// timeout under ASan: load them before the first input.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flame::fuzz::tokenizer_encode(nullptr, 0);
  return 0;
}
#endif
