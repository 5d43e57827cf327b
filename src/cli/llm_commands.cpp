// flame llm ...: inspect and run the frozen LLM, and generate test checkpoints.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/commands.h"
#include "llm/config.h"
#include "llm/ggml_quants.h"
#include "llm/gguf_model.h"
#include "llm/random_checkpoint.h"
#include "llm/weights.h"
#include "util/error.h"
#include "util/strings.h"

namespace flame::cli {

namespace {

void add_make_random(CLI::App& llm) {
  auto opts = std::make_shared<llm::RandomCheckpointOptions>();
  auto out_dir = std::make_shared<std::string>();
  auto shard_size = std::make_shared<std::string>();
  auto* cmd = llm.add_subcommand("make-random",
                                 "Write a Hugging Face checkpoint with seeded random weights "
                                 "(config.json + safetensors + tokenizer files)");
  cmd->add_option("--arch", opts->arch, "llama, qwen2 or mistral (default: the preset's; tiny: llama)")
      ->check(CLI::IsMember({"llama", "qwen2", "mistral"}));
  cmd->add_option("--preset", opts->preset,
                  fmt::format("{} (configs/llm), or a config.json path",
                              fmt::join(llm::random_checkpoint_presets(), ", ")))
      ->capture_default_str();
  cmd->add_option("--tokenizer", opts->tokenizer_dir, "directory with tokenizer.json to copy")
      ->check(CLI::ExistingDirectory);
  add_seed_option(*cmd, opts->seed, "random seed");
  cmd->add_option("--dtype", opts->dtype, "bf16, f16 or f32")
      ->capture_default_str()
      ->check(CLI::IsMember({"bf16", "f16", "f32"}));
  cmd->add_option("--shard-size", *shard_size, "split weights into shards of at most this size, e.g. 100MB");
  // 0 or less was silently the preset's count; a huge one allocated without end.
  cmd->add_option("--layers", opts->num_layers, "override num_hidden_layers (benchmarks)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("OUT_DIR", *out_dir, "output directory")->required();
  cmd->callback([opts, out_dir, shard_size] {
    if (!shard_size->empty()) {
      opts->shard_bytes = parse_byte_size(*shard_size);
      if (opts->shard_bytes == 0) fail("--shard-size must be positive, not '{}'", *shard_size);
    }
    llm::make_random_checkpoint(*opts, *out_dir);
    const auto config = llm::load_llm_config(*out_dir);
    fmt::print("wrote {} ({} {}, {} parameters, {})\n", *out_dir, config.architecture_name, opts->preset,
               config.parameter_count(), opts->dtype);
  });
}

void add_info(CLI::App& llm) {
  auto dir = std::make_shared<std::string>();
  auto* cmd = llm.add_subcommand("info", "Show a checkpoint's architecture, sizes, parameters and dtypes");
  cmd->add_option("DIR", *dir, "Hugging Face checkpoint directory or .gguf file")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->callback([dir] {
    const auto c = llm::load_llm_config(*dir);
    std::map<std::string, int64_t> dtype_counts;
    uint64_t bytes = 0;
    int64_t stored = 0;
    size_t files = 1;
    if (llm::is_gguf_file(*dir)) {
      const llm::GgufWeights weights(*dir);
      for (const auto& t : weights.file().tensors) {
        dtype_counts[llm::ggml_type_name(t.ggml_type)] += t.numel();
        stored += t.numel();
      }
      bytes = weights.mapping().size() - weights.file().data_offset;
    } else {
      const llm::WeightFiles weights(*dir);
      for (const auto& name : weights.names()) {
        const auto& info = weights.info(name);
        dtype_counts[std::string(dtype_name(info.dtype))] += info.numel();
        bytes += info.byte_size();
        stored += info.numel();
      }
      files = weights.files().size();
    }
    std::string dtypes;
    for (const auto& [d, n] : dtype_counts)
      dtypes += fmt::format("{}{} ({} params)", dtypes.empty() ? "" : ", ", d, n);
    fmt::print("checkpoint      {}\n", *dir);
    fmt::print("architecture    {} ({})\n", c.architecture_name, c.model_type);
    fmt::print("layers          {}\n", c.num_hidden_layers);
    fmt::print("hidden size     {}\n", c.hidden_size);
    fmt::print("intermediate    {}\n", c.intermediate_size);
    fmt::print("heads           {} query, {} key/value, head dim {}\n", c.num_attention_heads,
               c.num_key_value_heads, c.head_dim);
    fmt::print("vocab size      {}\n", c.vocab_size);
    fmt::print("context         {} positions, rope theta {}\n", c.max_position_embeddings, c.rope_theta);
    fmt::print("tied embeddings {}\n", c.tie_word_embeddings ? "yes" : "no");
    fmt::print("parameters      {} ({} stored)\n", c.parameter_count(), stored);
    fmt::print("weights         {} in {} file(s), {}\n", format_bytes(bytes), files, dtypes);
  });
}

}  // namespace

void add_llm_commands(CLI::App& app) {
  auto* llm =
      app.add_subcommand("llm", "Frozen LLM: inspect, tokenize, embed, generate, make test checkpoints");
  llm->require_subcommand(1);
  add_info(*llm);
  add_make_random(*llm);
  add_llm_tokenize_command(*llm);
  add_llm_run_commands(*llm);
}

}  // namespace flame::cli
