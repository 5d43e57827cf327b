// Replays each fuzz target's corpus (tests/data/<target>-corpus, grown by
// scripts/fuzz) through the target's function: every input must parse or be
// refused with flame::Error, and each corpus holds inputs of both kinds, so an
// emptied or mis-wired corpus fails here too.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "fuzz/fuzz_targets.h"
#include "test_helpers.h"
#include "util/file.h"

namespace flame::test {
namespace {

struct Replay {
  int parsed = 0, refused = 0;
};

Replay replay(const std::string& target, bool (*run)(const uint8_t*, size_t)) {
  const fs::path corpus = test_data_dir() / (target + "-corpus");
  Replay counts;
  if (!fs::is_directory(corpus)) {
    ADD_FAILURE() << "no corpus " << corpus;
    return counts;
  }
  for (const auto& entry : fs::directory_iterator(corpus)) {
    const std::string bytes = read_file(entry.path());
    SCOPED_TRACE(entry.path().string());
    // Any exception other than flame::Error escapes the target and fails the test.
    const bool parsed = run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++(parsed ? counts.parsed : counts.refused);
  }
  return counts;
}

#define FLAME_REPLAY_TEST(target, name)                             \
  TEST(FuzzCorpus, name) {                                          \
    const Replay r = replay(#target, &fuzz::target);                \
    EXPECT_GT(r.parsed, 0) << "no input of the corpus parses";      \
    EXPECT_GT(r.refused, 0) << "no input of the corpus is refused"; \
  }

FLAME_REPLAY_TEST(safetensors, SafetensorsHeader)
FLAME_REPLAY_TEST(gguf, Gguf)
FLAME_REPLAY_TEST(tokenizer_json, TokenizerJson)
FLAME_REPLAY_TEST(tokenizer_encode, TokenizerEncode)
FLAME_REPLAY_TEST(llm_config, LlmConfig)
FLAME_REPLAY_TEST(captions, Captions)
FLAME_REPLAY_TEST(tar, Tar)
FLAME_REPLAY_TEST(image_decode, ImageDecode)
FLAME_REPLAY_TEST(store_manifest, StoreManifest)
FLAME_REPLAY_TEST(checkpoint_config, CheckpointConfig)
FLAME_REPLAY_TEST(open_clip_config, OpenClipConfig)
FLAME_REPLAY_TEST(eval_results, EvalResults)

}  // namespace
}  // namespace flame::test
