// LlmConfig parsing and the random-checkpoint generator: real-model presets
// carry the real config.json values; errors name the field and the file.
#include <gtest/gtest.h>

#include "llm/config.h"
#include "llm/random_checkpoint.h"
#include "llm/weights.h"
#include "test_helpers.h"
#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::llm {
namespace {

nlohmann::json minimal_llama() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"max_position_embeddings", 128},
          {"vocab_size", 100}};
}

std::string config_error(const nlohmann::json& j) {
  try {
    parse_llm_config(j, "dir/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LlmConfig, DefaultsFollowHuggingFace) {
  const auto c = parse_llm_config(minimal_llama(), "x");
  EXPECT_EQ(c.architecture, Architecture::Llama);
  EXPECT_EQ(c.num_key_value_heads, 4);  // defaults to num_attention_heads
  EXPECT_EQ(c.head_dim, 16);            // hidden / heads
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
}

TEST(LlmConfig, ReadsRopeScalingAndQwenBiases) {
  auto j = minimal_llama();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  auto c = parse_llm_config(j, "x");
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(parse_llm_config(j, "x").rope_scaling.type, RopeScaling::Type::Linear);
  auto q = minimal_llama();
  q["architectures"] = {"Qwen2ForCausalLM"};
  c = parse_llm_config(q, "x");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.attention_output_bias);
}

TEST(LlmConfig, ErrorsNameTheFieldAndFile) {
  auto j = minimal_llama();
  j.erase("hidden_size");
  EXPECT_EQ(config_error(j), "dir/config.json: missing required field 'hidden_size'");
  j = minimal_llama();
  j["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_NE(config_error(j).find("unsupported architecture 'GPT2LMHeadModel'"), std::string::npos);
  j = minimal_llama();
  j["num_key_value_heads"] = 3;
  EXPECT_NE(config_error(j).find("not a multiple of num_key_value_heads 3"), std::string::npos);
  j = minimal_llama();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}};
  EXPECT_NE(config_error(j).find("unsupported rope_scaling type 'yarn'"), std::string::npos);
  j = minimal_llama();
  j["hidden_size"] = "64";
  EXPECT_NE(config_error(j).find("'hidden_size' must be an integer"), std::string::npos);
}

TEST(LlmConfig, BinaryGarbageIsNamedAsSuch) {
  // nlohmann stops at a NUL as at the end of the text: "unexpected end of input".
  const auto dir = test::fresh_temp_dir();
  write_file_atomic(dir / "config.json", std::string("\0\x01garbage", 9));
  const std::string message = test::error_of([&] { load_llm_config(dir); });
  EXPECT_TRUE(test::contains(message, "config.json': a NUL byte at offset 0 (a binary or corrupt file?)"))
      << message;
  EXPECT_FALSE(test::contains(message, "end of input")) << message;
  // A number too large for a double escaped as nlohmann's out_of_range (found by fuzzing).
  write_file_atomic(dir / "config.json", R"({"hidden_size": 1e999})");
  const std::string overflow = test::error_of([&] { load_llm_config(dir); });
  EXPECT_TRUE(test::contains(overflow, "invalid JSON in '" + (dir / "config.json").string() + "'"))
      << overflow;
  EXPECT_TRUE(test::contains(overflow, "number overflow")) << overflow;
}

TEST(RandomCheckpoint, RealPresetsCarryTheRealModelConfig) {
  RandomCheckpointOptions o;
  o.preset = "smollm2-135m";
  auto j = random_checkpoint_config(o, 49152);
  EXPECT_EQ(j["hidden_size"], 576);
  EXPECT_EQ(j["num_hidden_layers"], 30);
  EXPECT_EQ(j["num_key_value_heads"], 3);
  EXPECT_EQ(j["rope_theta"], 100000);
  EXPECT_EQ(j["vocab_size"], 49152);
  const auto smol = parse_llm_config(nlohmann::json::parse(j.dump()), "x");
  EXPECT_NEAR(static_cast<double>(smol.parameter_count()), 134.5e6, 0.1e6);  // SmolLM2-135M
  o.preset = "qwen2.5-0.5b";
  j = random_checkpoint_config(o, 49153);
  EXPECT_EQ(j["architectures"][0], "Qwen2ForCausalLM");
  EXPECT_EQ(j["intermediate_size"], 4864);
  EXPECT_EQ(j["vocab_size"], 151936);
  const auto qwen = parse_llm_config(nlohmann::json::parse(j.dump()), "x");
  EXPECT_NEAR(static_cast<double>(qwen.parameter_count()), 494.0e6, 0.1e6);  // Qwen2.5-0.5B: 494M
  o.arch = "llama";
  EXPECT_THROW(random_checkpoint_config(o, 0), Error);
}

TEST(RandomCheckpoint, WritesAValidCheckpointWithTokenizerAndSeededWeights) {
  const auto dir = test::fresh_temp_dir();
  RandomCheckpointOptions o;
  o.arch = "mistral";
  o.tokenizer_dir = test::smollm_tokenizer_dir();
  o.seed = 3;
  o.dtype = "bf16";
  make_random_checkpoint(o, dir / "a");
  make_random_checkpoint(o, dir / "b");
  o.seed = 4;
  make_random_checkpoint(o, dir / "c");
  const auto c = load_llm_config(dir / "a");
  EXPECT_EQ(c.architecture, Architecture::Mistral);
  EXPECT_EQ(c.vocab_size, 49153);  // covers the tokenizer's added [PAD]
  EXPECT_EQ(c.head_dim, 24);
  EXPECT_TRUE(fs::exists(dir / "a" / "tokenizer.json"));
  EXPECT_EQ(read_json_file(dir / "a" / "config.json")["torch_dtype"], "bfloat16");
  WeightFiles a(dir / "a"), b(dir / "b"), other(dir / "c");
  const int64_t per_layer = 9;  // norms 2, q k v o, gate up down
  EXPECT_EQ(static_cast<int64_t>(a.names().size()),
            2 + 1 + c.num_hidden_layers * per_layer);  // + lm_head (untied)
  const auto wa = a.get("model.layers.1.self_attn.q_proj.weight", torch::kFloat32, torch::kCPU, {96, 64});
  EXPECT_TRUE(
      torch::equal(wa, b.get("model.layers.1.self_attn.q_proj.weight", torch::kFloat32, torch::kCPU)));
  EXPECT_FALSE(
      torch::equal(wa, other.get("model.layers.1.self_attn.q_proj.weight", torch::kFloat32, torch::kCPU)));
  EXPECT_EQ(a.info("lm_head.weight").dtype, DType::BF16);
}

// find_preset, the rule behind --model, --clip-text, --prompts and
// --benchmark: a value that names an existing file, contains '/' or ends in
// .json is a path (relative to the working directory); else a preset name.
TEST(ConfigFiles, OneRuleForPresetNamesAndPaths) {
  const auto dir = test::fresh_temp_dir();
  write_file_atomic(dir / "presets" / "alpha.json", "{}");
  write_file_atomic(dir / "work" / "mine.json", "{}");
  write_file_atomic(dir / "work" / "alpha", "{}");
  const ConfigKind kind{dir / "presets", "benchmark", "benchmark"};
  const auto error_of = [&](const std::string& value) {
    try {
      find_preset(value, kind);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(find_preset("alpha", kind), dir / "presets" / "alpha.json");
  struct RestoreCwd {
    fs::path cwd = fs::current_path();
    ~RestoreCwd() { fs::current_path(cwd); }
  } restore;
  fs::current_path(dir / "work");
  EXPECT_EQ(find_preset("./mine.json", kind), fs::path("./mine.json"));
  EXPECT_EQ(find_preset("mine.json", kind), fs::path("mine.json"));
  EXPECT_EQ(find_preset("alpha", kind), fs::path("alpha")) << "an existing file is a path";
  EXPECT_EQ(error_of("./absent"), "benchmark config './absent' does not exist");
  EXPECT_EQ(error_of("absent.json"), "benchmark config 'absent.json' does not exist");
  EXPECT_EQ(error_of("beta"), "unknown benchmark 'beta' (no file '" +
                                  (dir / "presets" / "beta.json").string() + "'; presets: alpha)");
}

}  // namespace
}  // namespace flame::llm
