// flame interpret: reads every projected image patch of a trained encoder
// through the frozen LLM's output head and writes, per image, the most likely
// word of each patch (or pooled cell) as JSON and as a picture.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "cli/commands.h"
#include "data/image_decode.h"
#include "eval/interpret.h"
#include "llm/config.h"
#include "llm/load_llm.h"
#include "train/checkpoint.h"
#include "train/text_provenance.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::cli {

namespace {

struct InterpretOptions {
  std::string model;
  std::string llm;
  bool allow_llm_mismatch = false;
  int pool = 1;
  std::string out = "interpret";
  std::string dtype = "bf16";
  std::string device = "cpu";
  int threads = 0;
  std::vector<std::string> images;
};

// The image's file stem, made unique among the outputs of this run.
std::string output_name(const fs::path& image, std::set<std::string>& used) {
  const std::string stem = image.stem().string().empty() ? "image" : image.stem().string();
  std::string name = stem;
  for (int i = 2; used.count(name) > 0; ++i) name = fmt::format("{}-{}", stem, i);
  used.insert(name);
  return name;
}

// "cat (12), dog (5), ...": the most frequent displayed words of one image.
std::string frequent_words(const eval::InterpretResult& result, size_t count) {
  std::map<std::string, int> freq;
  for (const auto& cell : result.patches) ++freq[eval::display_word(cell.token, 24)];
  std::vector<std::pair<std::string, int>> sorted(freq.begin(), freq.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<std::string> parts;
  for (size_t i = 0; i < std::min(count, sorted.size()); ++i) {
    parts.push_back(fmt::format("'{}' ({})", sorted[i].first, sorted[i].second));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace

void add_interpret_command(CLI::App& app) {
  auto o = std::make_shared<InterpretOptions>();
  auto* cmd = app.add_subcommand("interpret",
                                 "Patch-to-word maps: each image patch read as a word by the frozen LLM");
  cmd->add_option("--model", o->model, "trained image encoder: a checkpoint or a run directory (its latest)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--llm", o->llm,
                  "the LLM (checkpoint directory or .gguf file) the encoder was trained against")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--pool", o->pool, "average pool x pool patches per cell: 1, 2 or 4")
      ->check(CLI::IsMember({1, 2, 4}))
      ->capture_default_str();
  cmd->add_option("--out", o->out, "output directory: NAME.json and NAME.png per image")
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "LLM compute dtype: bf16, f16 or f32")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_flag("--allow-llm-mismatch", o->allow_llm_mismatch,
                "read the patches through an LLM other than the one the model's stores were made with");
  add_threads_option(*cmd, &o->threads);
  cmd->add_option("IMAGE", o->images, "JPEG or PNG images")->required()->check(CLI::ExistingFile);
  cmd->callback([o] {
    apply_threads(o->threads);
    const train::TrainedModel trained = train::load_trained_model(o->model, llm::parse_device(o->device));
    if (trained.is_clip()) {
      fail(
          "{} is a CLIP baseline: its image tower maps into a learned text space, not the LLM's, so there "
          "are "
          "no words to read its patches as; interpret a FLAME model",
          o->model);
    }
    vision::ImageEncoder encoder = trained.image;
    // Compare the dimensions before loading the (possibly large) LLM weights.
    const llm::LlmConfig llm_config = llm::load_llm_config(o->llm);
    if (encoder->text_dim() != llm_config.hidden_size) {
      fail(
          "{}: the image encoder projects into {} dimensions but the LLM at {} has hidden size {}: use the "
          "LLM "
          "it was trained against",
          o->model, encoder->text_dim(), o->llm, llm_config.hidden_size);
    }
    train::check_text_side(o->model, o->llm, o->allow_llm_mismatch);  // refuses another LLM, or warns
    const auto [model, tokenizer] = llm::load_llm(o->llm, o->dtype, o->device);

    // One interpret per output folder: a second one writing NAME.json beside ours fails now.
    const DirectoryLock lock(o->out, "the output folder of flame interpret");
    std::set<std::string> used;
    for (const std::string& path : o->images) {
      const auto start = std::chrono::steady_clock::now();
      const torch::Tensor image = data::decode_image(read_file(path), path);
      const eval::InterpretResult result = eval::interpret_image(encoder, model, *tokenizer, image, o->pool);
      const std::string name = output_name(path, used);
      eval::write_interpretation(result, o->out, name, path);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fmt::print("{} -> {}/{}.{{json,png}}: {} x {} cells, {:.2f} s; most frequent: {}\n", path, o->out, name,
                 result.grid, result.grid, seconds, frequent_words(result, 5));
    }
  });
}

}  // namespace flame::cli
