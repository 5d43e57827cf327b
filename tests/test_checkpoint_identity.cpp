// The LLM identity of a store: cheap (headers + samples, never every weight
// byte) yet able to tell apart checkpoints of identical shapes.
#include <gtest/gtest.h>

#include <fstream>

#include "llm/checkpoint_identity.h"
#include "llm/random_checkpoint.h"
#include "test_helpers.h"

namespace flame::llm {
namespace {

namespace fs = std::filesystem;

fs::path make_checkpoint(const fs::path& dir, uint64_t seed) {
  RandomCheckpointOptions o;
  o.preset = "tiny";
  o.tokenizer_dir = test::smollm_tokenizer_dir();  // 49k tokens x 64 x f32: a 12.6 MB embedding
  o.seed = seed;
  o.dtype = "f32";
  make_random_checkpoint(o, dir);
  return dir;
}

TEST(CheckpointIdentity, StableForTheSameFilesWithoutReadingEveryByte) {
  const auto root = test::fresh_temp_dir();
  const fs::path dir = make_checkpoint(root / "a" / "model", 1);
  const CheckpointIdentity first = checkpoint_identity(dir);
  const CheckpointIdentity again = checkpoint_identity(dir);
  EXPECT_EQ(first.json, again.json);
  EXPECT_EQ(first.json["name"], "model");
  EXPECT_EQ(first.json["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(first.json["weights_fingerprint"].get<std::string>().rfind("sampled-v1:", 0), 0u);
  const uint64_t weight_bytes = fs::file_size(dir / "model.safetensors");
  EXPECT_GT(weight_bytes, 10u << 20);
  EXPECT_LT(first.bytes_hashed, 2u << 20) << "of " << weight_bytes;  // headers + 64 x 16 KiB
}

TEST(CheckpointIdentity, TellsApartCheckpointsOfTheSameShapes) {
  const auto root = test::fresh_temp_dir();
  // Same directory name, same config.json, same headers: only the weights differ
  // (as for a fine-tune and its base model).
  const auto base = checkpoint_identity(make_checkpoint(root / "a" / "model", 1)).json;
  const auto tuned = checkpoint_identity(make_checkpoint(root / "b" / "model", 2)).json;
  EXPECT_EQ(base["config_sha256"], tuned["config_sha256"]);
  EXPECT_NE(base["weights_fingerprint"], tuned["weights_fingerprint"]);
  EXPECT_NE(base, tuned);

  // A change in the last bytes of the data (always sampled) is seen too.
  const fs::path file = root / "a" / "model" / "model.safetensors";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(file) - 2));
    f.put('\x7f');
  }
  EXPECT_NE(checkpoint_identity(root / "a" / "model").json["weights_fingerprint"],
            base["weights_fingerprint"]);
}

TEST(CheckpointIdentity, NamesWhatIsMissing) {
  const auto root = test::fresh_temp_dir();
  try {
    checkpoint_identity(root);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flame::llm
