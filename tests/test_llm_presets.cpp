// The real-model presets in configs/llm/: each is the model's own config.json,
// so parsing it must give the parameter count the model card publishes.
#include <gtest/gtest.h>

#include "llm/config.h"
#include "llm/random_checkpoint.h"
#include "test_helpers.h"
#include "util/config_files.h"
#include "util/file.h"

namespace flame::llm {
namespace {

namespace fs = std::filesystem;

LlmConfig preset_config(const std::string& preset, int64_t layers = 0) {
  RandomCheckpointOptions o;
  o.preset = preset;
  o.num_layers = layers;
  return parse_llm_config(nlohmann::json::parse(random_checkpoint_config(o, 0).dump()), preset);
}

TEST(LlmPresets, RealModelsHaveTheirPublishedParameterCounts) {
  // Counts as Hugging Face reports them (sum of the checkpoint's tensor sizes).
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"smollm2-135m", 134515008},  {"qwen2.5-0.5b", 494032768},     {"qwen2.5-7b", 7615616512},
      {"llama-3.1-8b", 8030261248}, {"mistral-7b-v0.3", 7248023552}, {"mistral-nemo-12b", 12247782400}};
  for (const auto& [name, count] : expected) EXPECT_EQ(preset_config(name).parameter_count(), count) << name;
  const auto presets = random_checkpoint_presets();
  for (const auto& [name, count] : expected) {
    EXPECT_NE(std::find(presets.begin(), presets.end(), name), presets.end()) << name;
  }
}

TEST(LlmPresets, CarryTheFeaturesThatSetTheirShapes) {
  const LlmConfig nemo = preset_config("mistral-nemo-12b");
  EXPECT_EQ(nemo.architecture, Architecture::Mistral);
  EXPECT_EQ(nemo.hidden_size, 5120);
  EXPECT_EQ(nemo.head_dim, 128);  // not 5120 / 32 = 160
  const LlmConfig llama = preset_config("llama-3.1-8b");
  EXPECT_EQ(llama.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_DOUBLE_EQ(llama.rope_scaling.factor, 8.0);
  EXPECT_EQ(llama.rope_scaling.original_max_position_embeddings, 8192);
  const LlmConfig qwen = preset_config("qwen2.5-7b");
  EXPECT_TRUE(qwen.attention_bias);
  EXPECT_FALSE(qwen.tie_word_embeddings);
  // --layers shortens a model for benchmarks, keeping every other shape.
  const LlmConfig short_nemo = preset_config("mistral-nemo-12b", 2);
  EXPECT_EQ(short_nemo.num_hidden_layers, 2);
  EXPECT_EQ(short_nemo.head_dim, 128);
}

TEST(LlmPresets, AnyConfigFilePathWorksAndBadOnesAreNamed) {
  const auto dir = test::fresh_temp_dir();
  const fs::path mine = dir / "mine.json";
  auto j = read_json_file(config_dir("llm") / "mistral-7b-v0.3.json");
  j["num_hidden_layers"] = 3;
  write_file_atomic(mine, j.dump());
  EXPECT_EQ(preset_config(mine.string()).num_hidden_layers, 3);
  write_file_atomic(dir / "broken.json", "{\"hidden_size\": ");
  try {
    preset_config((dir / "broken.json").string());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.json"), std::string::npos) << e.what();
  }
  try {
    preset_config("no-such-model");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mistral-nemo-12b"), std::string::npos)
        << e.what();  // lists presets
  }
}

}  // namespace
}  // namespace flame::llm
