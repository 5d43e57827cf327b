// flame llm embed / generate: run the frozen LLM on one text. `embed` prints
// the last token's hidden state of one layer (the quantity FLAME trains on);
// `generate` decodes greedily with the KV cache, as a smoke test of a checkpoint.
#include <fmt/format.h>

#include <chrono>

#include "cli/commands.h"
#include "llm/generate.h"
#include "llm/load_llm.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::cli {

namespace {

// Positions beyond max_position_embeddings were never trained (RoPE
// extrapolates silently): refused rather than answered.
void check_context(int64_t tokens, int64_t max_positions, const char* what) {
  if (max_positions > 0 && tokens > max_positions) {
    fail("{} need {} positions, more than the model's max_position_embeddings ({})", what, tokens,
         max_positions);
  }
}

struct RunOptions {
  std::string dir;
  std::string text;
  std::string dtype = "bf16";
  std::string device = "cpu";
  int threads = 0;
};

void add_run_options(CLI::App& cmd, RunOptions& o) {
  cmd.add_option("DIR", o.dir, "Hugging Face checkpoint directory or .gguf file")
      ->required()
      ->check(CLI::ExistingPath);
  cmd.add_option("TEXT", o.text, "input text")->required();
  cmd.add_option("--dtype", o.dtype, "compute dtype: bf16, f16 or f32")->capture_default_str();
  cmd.add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  add_threads_option(cmd, &o.threads);
}

llm::LoadedLlm load(const RunOptions& o) {
  apply_threads(o.threads);
  return llm::load_llm(o.dir, o.dtype, o.device);
}

std::vector<int64_t> to_int64(const std::vector<int32_t>& ids) {
  return {ids.begin(), ids.end()};
}

void add_embed(CLI::App& llm) {
  auto o = std::make_shared<RunOptions>();
  auto layer = std::make_shared<int64_t>(-1);
  auto out = std::make_shared<std::string>();
  auto show = std::make_shared<int64_t>(8);
  auto* cmd = llm.add_subcommand("embed", "Print the last token's hidden state of one layer for a text");
  add_run_options(*cmd, *o);
  cmd->add_option("--layer", *layer,
                  "hidden state index as Hugging Face numbers them: 0 = embeddings, i = after layer i, "
                  "L = after the final norm; negative counts from the end (-1 = L)")
      ->capture_default_str();
  cmd->add_option("--show", *show, "how many leading values to print")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--out", *out, "also write the vector and its metadata to this JSON file");
  cmd->callback([o, layer, out, show] {
    if (!out->empty()) check_output_file(*out, "--out");  // before the model loads, not after
    const auto [model, tokenizer] = load(*o);
    const int64_t L = model.num_layers();
    const int64_t index = llm::hidden_state_index(*layer, L);
    const auto ids = to_int64(tokenizer->encode(o->text));
    if (ids.empty()) fail("the text has no tokens");
    check_context(static_cast<int64_t>(ids.size()), model.config().max_position_embeddings, "the text");
    const auto start = std::chrono::steady_clock::now();
    const torch::Tensor input = torch::tensor(ids, torch::kInt64).unsqueeze(0);
    const torch::Tensor last = torch::full({1}, static_cast<int64_t>(ids.size()) - 1, torch::kInt64);
    const torch::Tensor state = model.hidden_at(input, {}, index, last)[0].to(torch::kCPU, torch::kFloat32);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!torch::isfinite(state).all().item<bool>()) {
      fail("{}: the hidden state of layer {} is not finite (NaN or inf): the checkpoint's weights are broken",
           o->dir, index);
    }
    const double norm = state.norm().item<double>();
    std::vector<float> values(state.data_ptr<float>(), state.data_ptr<float>() + state.numel());
    fmt::print("{} tokens, hidden state {} of {} (dim {}), {} on {}, {:.3f} s\n", ids.size(), index, L,
               values.size(), o->dtype, o->device, seconds);
    fmt::print("norm  {:.6g}\n", norm);
    const auto n = static_cast<size_t>(std::clamp<int64_t>(*show, 0, static_cast<int64_t>(values.size())));
    fmt::print("first [{:.6g}]\n",
               fmt::join(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(n), ", "));
    if (!out->empty()) {
      nlohmann::json j = {{"checkpoint", o->dir}, {"text", o->text},    {"token_ids", ids},
                          {"layer", index},       {"num_layers", L},    {"dtype", o->dtype},
                          {"norm", norm},         {"embedding", values}};
      write_json_file_atomic(*out, j);
      fmt::print("wrote {}\n", *out);
    }
  });
}

void add_generate(CLI::App& llm) {
  auto o = std::make_shared<RunOptions>();
  auto n = std::make_shared<int64_t>(20);
  auto* cmd =
      llm.add_subcommand("generate", "Greedy decoding with the KV cache (a smoke test of a checkpoint)");
  add_run_options(*cmd, *o);
  cmd->add_option("-n,--max-new-tokens", *n, "tokens to generate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->callback([o, n] {
    const auto [model, tokenizer] = load(*o);
    const auto prompt = tokenizer->encode(o->text);
    if (prompt.empty()) fail("the prompt has no tokens");
    check_context(static_cast<int64_t>(prompt.size()) + *n, model.config().max_position_embeddings,
                  "the prompt and --max-new-tokens");
    llm::GenerateOptions options;
    options.max_new_tokens = *n;
    options.stop_ids = model.config().eos_token_ids;
    if (tokenizer->eos_id()) options.stop_ids.push_back(*tokenizer->eos_id());
    const auto start = std::chrono::steady_clock::now();
    const auto generated = llm::greedy_generate(model, to_int64(prompt), options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::vector<int32_t> ids(generated.begin(), generated.end());
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), ids.begin(), ids.end());
    fmt::print("{}\n", tokenizer->decode(all, /*skip_special_tokens=*/true));
    fmt::print(stderr, "# {} prompt + {} generated tokens in {:.2f} s ({:.1f} tokens/s), ids: {}\n",
               prompt.size(), ids.size(), seconds,
               seconds > 0 ? static_cast<double>(ids.size()) / seconds : 0.0, fmt::join(ids, " "));
  });
}

}  // namespace

void add_llm_run_commands(CLI::App& llm) {
  add_embed(llm);
  add_generate(llm);
}

}  // namespace flame::cli
