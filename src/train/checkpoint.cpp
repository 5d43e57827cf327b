#include "train/checkpoint.h"

#include <unistd.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <sstream>
#include <system_error>
#include <type_traits>
#include <utility>

#include "llm/weights.h"
#include "util/error.h"
#include "util/file.h"
#include "util/safetensors.h"
#include "vision/vit_config.h"

namespace flame::train {

namespace {

std::string step_name(int64_t step) {
  return fmt::format("step-{:08d}", step);
}

// The step of a checkpoint folder's name ("step-00000100"), or -1 for any
// other name.
int64_t step_of(const std::string& name) {
  if (name.size() < 6 || name.size() > 24 || name.rfind("step-", 0) != 0) return -1;
  int64_t step = 0;
  const char* end = name.data() + name.size();
  const auto [ptr, ec] = std::from_chars(name.data() + 5, end, step);
  return ec == std::errc() && ptr == end && step >= 0 ? step : -1;
}

// What makes checkpoints one series: a training run's share its
// train_identity (less the store paths, which a resumed run may change;
// the stores are compared by content), an import's have none.
nlohmann::json series_of(const nlohmann::json& config) {
  if (!config.is_object() || !config.contains("train_identity")) return nullptr;
  nlohmann::json identity = config.at("train_identity");
  if (identity.is_object()) identity.erase("text_stores");
  return identity;
}

// Removes all but the newest `keep` checkpoints of the series `config`
// belongs to, besides `written`. Folders of another run, an import or
// unreadable ones are never touched: pruning must not delete what this
// writer did not write.
void prune_checkpoints(const fs::path& root, const fs::path& written, const nlohmann::json& config,
                       int64_t keep) {
  const nlohmann::json series = series_of(config);
  std::vector<std::pair<int64_t, fs::path>> ours;
  for (const auto& e : fs::directory_iterator(root)) {
    const int64_t step = step_of(e.path().filename().string());
    if (step < 0 || !e.is_directory() || e.path() == written) continue;
    try {
      if (series_of(read_json_file(e.path() / "config.json")) == series) ours.emplace_back(step, e.path());
    } catch (const std::exception&) {
      // not a readable checkpoint: not ours to delete
    }
  }
  std::sort(ours.begin(), ours.end());
  const auto remove = static_cast<int64_t>(ours.size()) - (keep - 1);
  for (int64_t i = 0; i < remove; ++i) fs::remove_all(ours[static_cast<size_t>(i)].second);
}

// A saved AdamW step count ("<param>.step" in the metadata), strictly.
int64_t parse_step_count(const std::string& text, const std::string& key, const fs::path& file) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < 0)
    fail("{}: metadata '{}' must be a non-negative integer, not '{}'", file.string(), key, text);
  return value;
}

// AdamW keys its state by the parameter's TensorImpl address: as a string in
// LibTorch 1.x, as the void* itself in 2.x. Take whichever the map uses.
using StateKey = std::decay_t<decltype(std::declval<const torch::optim::AdamW&>().state())>::key_type;
[[maybe_unused]] std::string to_state_key(c10::TensorImpl* impl, std::string*) {
  std::ostringstream os;  // what c10::guts::to_string did in 1.x
  os << impl;
  return os.str();
}
[[maybe_unused]] void* to_state_key(c10::TensorImpl* impl, void**) {
  return impl;
}
StateKey state_key(const torch::Tensor& p) {
  return to_state_key(p.unsafeGetTensorImpl(), static_cast<StateKey*>(nullptr));
}

torch::Tensor read_tensor(const SafetensorsFile& file, const std::string& name) {
  return llm::mapped_tensor(file, file.info(name)).clone();
}

// Writes the checkpoint's four files into `tmp`.
void write_checkpoint_files(const fs::path& tmp, const torch::nn::Module& model,
                            const torch::optim::AdamW& optimizer, const CheckpointContents& contents) {
  std::vector<std::pair<std::string, torch::Tensor>> weights;
  SafetensorsWriter moments;
  std::map<std::string, std::string> steps;
  const auto& state = optimizer.state();
  for (const auto& item : model.named_parameters()) {
    weights.emplace_back(item.key(), item.value().detach().to(torch::kCPU, torch::kFloat32));
    const auto it = state.find(state_key(item.value()));
    if (it == state.end()) continue;  // no step taken yet
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    llm::add_tensor(moments, item.key() + ".exp_avg", s.exp_avg());
    llm::add_tensor(moments, item.key() + ".exp_avg_sq", s.exp_avg_sq());
    steps[item.key() + ".step"] = std::to_string(s.step());
  }
  for (const auto& item : model.named_buffers())
    weights.emplace_back(item.key(), item.value().detach().cpu());
  llm::add_tensor(moments, "rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  moments.set_metadata(steps);
  llm::write_checkpoint_weights(tmp, weights);
  moments.write(tmp / "optimizer.safetensors");
  write_json_file_atomic(tmp / "config.json", contents.config);
  write_json_file_atomic(tmp / "state.json", contents.state);
}

}  // namespace

fs::path save_checkpoint(const fs::path& run_dir, int64_t step, const torch::nn::Module& model,
                         const torch::optim::AdamW& optimizer, const CheckpointContents& contents,
                         int64_t keep) {
  const fs::path root = run_dir / "checkpoints";
  fs::create_directories(root);
  const fs::path final_dir = root / step_name(step);
  const fs::path tmp = root / fmt::format(".{}.tmp-{}", step_name(step), ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    write_checkpoint_files(tmp, model, optimizer, contents);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);  // a full disk: no partial checkpoint left behind
    throw;
  }

  // A checkpoint of the same step from an earlier, interrupted attempt is
  // swapped out whole: a kill leaves one of the two complete at final_dir.
  replace_dir_durable(tmp, final_dir);
  write_file_atomic(root / "latest", step_name(step) + "\n");
  prune_checkpoints(root, final_dir, contents.config, keep);
  return final_dir;
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  const fs::path pointer = run_dir / "checkpoints" / "latest";
  if (!fs::exists(pointer)) return std::nullopt;
  std::string name = read_file(pointer);
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  if (step_of(name) < 0)
    fail("{} names '{}', which is not a checkpoint folder (step-N)", pointer.string(), name);
  const fs::path dir = run_dir / "checkpoints" / name;
  if (!fs::exists(dir / "state.json"))
    fail("{} names '{}', which is not a complete checkpoint", pointer.string(), name);
  return dir;
}

bool trained_with_sigmoid_loss(const nlohmann::json& checkpoint_config) {
  return checkpoint_config.value("train", nlohmann::json::object()).value("loss", "infonce") == "sigmoid";
}

CheckpointContents read_checkpoint_contents(const fs::path& dir) {
  return {read_json_file(dir / "config.json"), read_json_file(dir / "state.json")};
}

void load_checkpoint(const fs::path& dir, torch::nn::Module& model, torch::optim::AdamW* optimizer,
                     bool restore_rng) {
  torch::NoGradGuard no_grad;
  const llm::WeightFiles weights(dir);
  for (auto& item : model.named_parameters()) {
    if (!weights.contains(item.key())) fail("{}: checkpoint lacks tensor '{}'", dir.string(), item.key());
    const torch::Tensor saved = weights.get(item.key(), item.value().scalar_type(), item.value().device());
    if (saved.sizes() != item.value().sizes()) {
      fail("{}: tensor '{}' has shape {}, the model expects {}", dir.string(), item.key(),
           fmt::format("{}", fmt::join(saved.sizes(), "x")),
           fmt::format("{}", fmt::join(item.value().sizes(), "x")));
    }
    item.value().copy_(saved);
  }
  for (auto& item : model.named_buffers()) {
    if (weights.contains(item.key()))
      item.value().copy_(weights.get(item.key(), item.value().scalar_type(), item.value().device()));
  }
  if (optimizer == nullptr && !restore_rng) return;
  const SafetensorsFile moments(dir / "optimizer.safetensors");
  if (optimizer != nullptr) {
    auto& state = optimizer->state();
    const auto& meta = moments.header().metadata;
    for (auto& item : model.named_parameters()) {
      const auto step = meta.find(item.key() + ".step");
      if (step == meta.end()) continue;
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(parse_step_count(step->second, step->first, moments.path()));
      for (const char* moment : {".exp_avg", ".exp_avg_sq"}) {
        const torch::Tensor saved = read_tensor(moments, item.key() + moment);
        if (saved.sizes() != item.value().sizes() || !saved.is_floating_point()) {
          fail("{}: tensor '{}{}' has shape {} ({}), the parameter {}", moments.path().string(), item.key(),
               moment, fmt::format("{}", fmt::join(saved.sizes(), "x")), c10::toString(saved.scalar_type()),
               fmt::format("{}", fmt::join(item.value().sizes(), "x")));
        }
        const torch::Tensor value = saved.to(item.value().device(), item.value().scalar_type());
        if (std::string(moment) == ".exp_avg") {
          s->exp_avg(value);
        } else {
          s->exp_avg_sq(value);
        }
      }
      state[state_key(item.value())] = std::move(s);
    }
  }
  if (restore_rng) {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(read_tensor(moments, "rng.cpu"));
  }
}

fs::path resolve_checkpoint(const fs::path& dir) {
  if (fs::exists(dir / "config.json")) return dir;
  const auto latest = latest_checkpoint(dir);
  if (!latest) fail("{}: neither a checkpoint nor a run directory with checkpoints", dir.string());
  return *latest;
}

TrainedModel load_trained_model(const fs::path& dir, const torch::Device& device) {
  const fs::path checkpoint = resolve_checkpoint(dir);
  const fs::path config_file = checkpoint / "config.json";
  TrainedModel model = model_from_config(read_json_file(config_file), config_file.string());
  load_checkpoint(checkpoint, *model.root);
  model.root->to(device);
  model.root->eval();
  return model;
}

vision::ImageEncoder load_image_encoder(const fs::path& dir, const torch::Device& device) {
  return load_trained_model(dir, device).image;
}

}  // namespace flame::train
