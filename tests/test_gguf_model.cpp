// GGUF models (llm/gguf_model, llm/ggml_quants) against independent readers:
// dequantisation bit-identical to llama.cpp's `gguf` package for every type
// flame reads; the real SmolLM2-135M-Instruct (Q4_1, installed by
// scripts/setup) giving the hidden states of Hugging Face transformers loading
// the same file, and the token ids of Hugging Face tokenizers on a
// multilingual corpus; hostile files refused naming the file and tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "llm/checkpoint_identity.h"
#include "llm/ggml_quants.h"
#include "llm/gguf_model.h"
#include "llm/tokenizer.h"
#include "llm/transformer.h"
#include "test_helpers.h"
#include "util/file.h"
#include "util/safetensors.h"

namespace flame::llm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::contains;
using test::error_of;

// The real LLM: scripts/setup links it; its absence is a setup error, not a skip.
fs::path smollm2() {
  const fs::path path = fs::path(FLAME_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(path)) ADD_FAILURE() << path << " is missing: run scripts/setup";
  return path;
}

test::CommandResult oracle(const std::string& args) {
  const fs::path script = test::test_data_dir().parent_path() / "python" / "gguf_oracle.py";
  return test::run_command(fmt::format(FLAME_PYTHON " {} {} 2>&1", script.string(), args));
}

TEST(GgufModel, DequantisationIsBitIdenticalToTheGgufPackage) {
  const fs::path dir = test::fresh_temp_dir();
  const auto made =
      oracle(fmt::format("quantized {} {}", (dir / "q.gguf").string(), (dir / "q.safetensors").string()));
  ASSERT_EQ(made.status, 0) << made.output;
  const MappedFile map(dir / "q.gguf");
  const GgufFile file = parse_gguf(map.data(), map.size(), (dir / "q.gguf").string());
  const SafetensorsFile expected(dir / "q.safetensors");
  std::set<std::string> types;
  for (const GgufTensorInfo& t : file.tensors) {
    const torch::Tensor got = dequantize_gguf_tensor(file, map, t);
    const torch::Tensor want = mapped_tensor(expected, expected.info(t.name)).contiguous();
    ASSERT_EQ(got.sizes(), want.sizes()) << t.name;
    EXPECT_EQ(std::memcmp(got.data_ptr(), want.data_ptr(), static_cast<size_t>(got.nbytes())), 0)
        << t.name << ": max difference " << (got - want).abs().max().item<float>();
    types.insert(ggml_type_name(t.ggml_type));
  }
  EXPECT_EQ(fmt::format("{}", fmt::join(types, ",")), "BF16,F16,F32,Q4_0,Q4_1,Q4_K,Q5_0,Q5_1,Q6_K,Q8_0");

  // Another type, and data cut short: refused, naming the file, tensor and type.
  GgufTensorInfo q2k = file.tensors.front();
  q2k.ggml_type = 10;
  const std::string unsupported = error_of([&] { dequantize_gguf_tensor(file, map, q2k); });
  EXPECT_TRUE(contains(unsupported, "q.gguf: tensor 't.F32' is GGML type 10")) << unsupported;
  EXPECT_TRUE(contains(unsupported, "Q4_1")) << unsupported;
  const std::string bytes = read_file(dir / "q.gguf");
  write_file_atomic(dir / "cut.gguf", bytes.substr(0, bytes.size() - 100));
  const MappedFile cut_map(dir / "cut.gguf");
  const GgufFile cut = parse_gguf(cut_map.data(), cut_map.size(), (dir / "cut.gguf").string());
  const std::string truncated = error_of([&] { dequantize_gguf_tensor(cut, cut_map, cut.tensors.back()); });
  EXPECT_TRUE(contains(truncated, "cut.gguf: tensor 't.Q6_K'")) << truncated;
  EXPECT_TRUE(contains(truncated, "runs past the end of the file")) << truncated;
}

TEST(GgufModel, SmolLm2ConfigComesFromTheMetadata) {
  const LlmConfig c = load_llm_config(smollm2());
  const LlmConfig hf = load_llm_config(fs::path(FLAME_SOURCE_DIR) / "configs" / "llm" / "smollm2-135m.json");
  EXPECT_EQ(c.architecture_name, hf.architecture_name);
  EXPECT_EQ(c.hidden_size, hf.hidden_size);
  EXPECT_EQ(c.intermediate_size, hf.intermediate_size);
  EXPECT_EQ(c.num_hidden_layers, hf.num_hidden_layers);
  EXPECT_EQ(c.num_attention_heads, hf.num_attention_heads);
  EXPECT_EQ(c.num_key_value_heads, hf.num_key_value_heads);
  EXPECT_EQ(c.head_dim, hf.head_dim);
  EXPECT_EQ(c.vocab_size, hf.vocab_size);
  EXPECT_EQ(c.max_position_embeddings, hf.max_position_embeddings);
  EXPECT_EQ(c.rope_theta, hf.rope_theta);
  EXPECT_EQ(c.tie_word_embeddings, hf.tie_word_embeddings);
  EXPECT_FLOAT_EQ(static_cast<float>(c.rms_norm_eps), static_cast<float>(hf.rms_norm_eps));  // stored as f32
}

// Every hidden state (embeddings, each layer, the final norm) at every
// position, float32, against transformers' LlamaForCausalLM on the same GGUF.
TEST(GgufModel, SmolLm2HiddenStatesMatchTransformers) {
  const fs::path dir = test::fresh_temp_dir();
  const std::vector<std::string> texts = {"A black dog runs along the beach.",
                                          "Zwei Kinder spielen im Schnee vor einem Haus.",
                                          "Un homme en veste rouge escalade un rocher."};
  std::string args =
      fmt::format("hidden {} {} {}", smollm2().string(),
                  (test::smollm_tokenizer_dir() / "tokenizer.json").string(), (dir / "hidden.json").string());
  for (const auto& t : texts) args += " '" + t + "'";
  const auto made = oracle(args);
  ASSERT_EQ(made.status, 0) << made.output;
  const json expected = read_json_file(dir / "hidden.json");

  TransformerOptions options;
  options.dtype = torch::kFloat32;
  const Transformer model = Transformer::load(smollm2(), options);
  const auto tokenizer = Tokenizer::load(smollm2());
  const int64_t L = model.num_layers();
  ForwardRequest request;
  for (int64_t l = 0; l <= L; ++l) request.hidden_layers.push_back(l);
  for (const json& row : expected["rows"]) {
    const auto ids = row["ids"].get<std::vector<int64_t>>();
    const auto flame_ids = tokenizer->encode(row["text"].get<std::string>(), /*add_special_tokens=*/false);
    EXPECT_EQ(std::vector<int64_t>(flame_ids.begin(), flame_ids.end()), ids) << row["text"];
    ForwardInput input;
    input.input_ids = torch::tensor(ids).unsqueeze(0);
    const ForwardOutput out = model.forward(input, request);
    for (int64_t l = 0; l <= L; ++l) {
      const auto values = row["hidden"][l].get<std::vector<std::vector<float>>>();
      torch::Tensor want = torch::empty({static_cast<int64_t>(values.size()), model.config().hidden_size});
      for (size_t t = 0; t < values.size(); ++t) want[static_cast<int64_t>(t)] = torch::tensor(values[t]);
      const torch::Tensor got = out.hidden[static_cast<size_t>(l)][0];
      const float scale = want.abs().max().item<float>(), error = (got - want).abs().max().item<float>();
      EXPECT_LE(error, 2e-5f * scale + 1e-5f)
          << row["text"] << " layer " << l << " (max |h| " << scale << ")";
    }
  }
}

// Each architecture written as llama.cpp writes it (gguf_oracle.py convert:
// llama.cpp's names, q/k rows permuted for llama and Mistral, Qwen2's biases)
// loads into the same model as its Hugging Face folder: every hidden state
// equal in f32, and the GGUF's tokenizer gives the same ids.
TEST(GgufModel, EveryArchitectureEqualsItsHuggingFaceCheckpoint) {
  const fs::path dir = test::fresh_temp_dir();
  TransformerOptions options;
  options.dtype = torch::kFloat32;
  for (const std::string arch : {"llama", "qwen2", "mistral"}) {
    const fs::path hf = test::tiny_checkpoint(arch, "f32"), gguf = dir / (arch + ".gguf");
    const auto made = oracle(fmt::format("convert {} {} F32", hf.string(), gguf.string()));
    ASSERT_EQ(made.status, 0) << made.output;
    // llama.cpp writes Mistral as llama: the same forward pass (its window is none here).
    EXPECT_EQ(load_llm_config(gguf).architecture_name,
              arch == "qwen2" ? "Qwen2ForCausalLM" : std::string("LlamaForCausalLM"));
    const Transformer a = Transformer::load(hf, options), b = Transformer::load(gguf, options);
    const auto ids = Tokenizer::load(hf)->encode("Two dogs play in 3 inches of snow.", false);
    EXPECT_EQ(Tokenizer::load(gguf)->encode("Two dogs play in 3 inches of snow.", false), ids) << arch;
    ForwardInput input;
    input.input_ids = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
    ForwardRequest request;
    for (int64_t l = 0; l <= a.num_layers(); ++l) request.hidden_layers.push_back(l);
    const ForwardOutput x = a.forward(input, request), y = b.forward(input, request);
    for (size_t l = 0; l < x.hidden.size(); ++l) {
      EXPECT_TRUE(torch::equal(x.hidden[l], y.hidden[l]))
          << arch << " layer " << l << ": " << (x.hidden[l] - y.hidden[l]).abs().max().item<float>();
    }
  }
}

TEST(GgufModel, TokenizerMatchesHuggingFaceTokenizersOnAMultilingualCorpus) {
  const fs::path dir = test::fresh_temp_dir();
  const auto made = oracle(fmt::format("tokenize {} {} {} {}", smollm2().string(),
                                       (test::smollm_tokenizer_dir() / "tokenizer.json").string(),
                                       test::shared_dir().string(), (dir / "ids.json").string()));
  ASSERT_EQ(made.status, 0) << made.output;
  const json rows = read_json_file(dir / "ids.json");
  ASSERT_GT(rows.size(), 300u);
  const auto tokenizer = Tokenizer::load(smollm2());
  size_t equal = 0;
  for (const json& row : rows) {
    const auto ids = tokenizer->encode(row["text"].get<std::string>(), /*add_special_tokens=*/false);
    const bool same = std::vector<int64_t>(ids.begin(), ids.end()) == row["ids"].get<std::vector<int64_t>>();
    EXPECT_TRUE(same) << row["text"];
    equal += same ? 1 : 0;
  }
  EXPECT_EQ(equal, rows.size());
}

// The store identity of a GGUF names its content: a byte changed in the
// weights gives another fingerprint, a renamed copy the same one.
TEST(GgufModel, IdentityNamesTheFileContent) {
  const fs::path dir = test::fresh_temp_dir();
  const json original = checkpoint_identity(smollm2()).json;
  EXPECT_EQ(original["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(original["name"], "SmolLM2-135M-Instruct.Q4_1.gguf");
  std::string bytes = read_file(smollm2());
  const GgufFile header = read_gguf(smollm2());
  write_file_atomic(dir / "SmolLM2-135M-Instruct.Q4_1.gguf", bytes);
  EXPECT_EQ(checkpoint_identity(dir / "SmolLM2-135M-Instruct.Q4_1.gguf").json, original);
  bytes[header.data_offset] = static_cast<char>(bytes[header.data_offset] ^ 1);
  write_file_atomic(dir / "SmolLM2-135M-Instruct.Q4_1.gguf", bytes);
  const json changed = checkpoint_identity(dir / "SmolLM2-135M-Instruct.Q4_1.gguf").json;
  EXPECT_NE(changed["weights_fingerprint"], original["weights_fingerprint"]);
  EXPECT_EQ(changed["config_sha256"], original["config_sha256"]);
}

TEST(GgufModel, HostileFilesNameTheProblem) {
  const fs::path dir = test::fresh_temp_dir();
  // A vocabulary-only GGUF (llama.cpp's test files) is no model.
  const fs::path vocab = test::llama_cpp_vocab_dir() / "ggml-vocab-gpt-2.gguf";
  const std::string no_model = error_of([&] { Transformer::load(vocab); });
  EXPECT_TRUE(contains(no_model, "ggml-vocab-gpt-2.gguf")) << no_model;
  EXPECT_TRUE(contains(no_model, "not supported") || contains(no_model, "no general.architecture") ||
              contains(no_model, "lacks"))
      << no_model;
  // The real file cut inside its last tensor's data, and cut in half (the
  // header's reader refuses offsets past the end before any tensor is read).
  const std::string bytes = read_file(smollm2());
  write_file_atomic(dir / "cut.gguf", bytes.substr(0, bytes.size() - 100));
  const std::string cut = error_of([&] { Transformer::load(dir / "cut.gguf"); });
  EXPECT_TRUE(contains(cut, "cut.gguf: tensor '")) << cut;
  EXPECT_TRUE(contains(cut, "runs past the end of the file")) << cut;
  write_file_atomic(dir / "half.gguf", bytes.substr(0, bytes.size() / 2));
  const std::string half = error_of([&] { Transformer::load(dir / "half.gguf"); });
  EXPECT_TRUE(contains(half, "half.gguf: corrupt GGUF file: tensor '")) << half;
}

}  // namespace
}  // namespace flame::llm
