// The fuzz targets: one function per parser, each running one input through
// the parser as flame reads real files. A target returns true when the input
// parsed and false when it was refused with flame::Error; anything else (any
// other exception, a crash, a sanitizer report, a hang, a broken invariant
// trapped with __builtin_trap) is a bug.
//
// scripts/fuzz builds each <target>_fuzz.cpp with libFuzzer, ASan and UBSan
// (FLAME_FUZZER is defined there, so FLAME_FUZZ_ENTRY defines
// LLVMFuzzerTestOneInput); the test suite (tests/test_fuzz_corpora.cpp)
// replays every corpus in tests/data/<target>-corpus through the same
// functions.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace flame::fuzz {

bool safetensors(const uint8_t* data, size_t size);
bool gguf(const uint8_t* data, size_t size);
bool tokenizer_json(const uint8_t* data, size_t size);
bool tokenizer_encode(const uint8_t* data, size_t size);
bool llm_config(const uint8_t* data, size_t size);
bool captions(const uint8_t* data, size_t size);
bool tar(const uint8_t* data, size_t size);
bool image_decode(const uint8_t* data, size_t size);
bool store_manifest(const uint8_t* data, size_t size);
bool checkpoint_config(const uint8_t* data, size_t size);
bool open_clip_config(const uint8_t* data, size_t size);  // flame import's config
bool eval_results(const uint8_t* data, size_t size);      // a results file as eval --resume reads it

// The shared data folder (FLAME_SHARED_DIR: set by the test build and by
// tests/fuzz/Makefile).
inline std::filesystem::path shared_dir() {
  return FLAME_SHARED_DIR;
}

// Writes the input to `name` in a folder of this process (parsers that read
// files get the very bytes), and returns the path.
inline std::filesystem::path input_file(const uint8_t* data, size_t size, const std::string& name) {
  static const std::filesystem::path dir = [] {
    const auto d = std::filesystem::temp_directory_path() / ("flame-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  const auto path = dir / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  return path;
}

}  // namespace flame::fuzz

#ifdef FLAME_FUZZER
#define FLAME_FUZZ_ENTRY(target)                                            \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    flame::fuzz::target(data, size);                                        \
    return 0;                                                               \
  }
#else
#define FLAME_FUZZ_ENTRY(target)
#endif
