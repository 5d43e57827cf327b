// flame train: the image encoder against stored facet embeddings (FLAME), or
// the CLIP baseline.
#include <fmt/format.h>

#include <type_traits>
#include <variant>

#include "cli/commands.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::cli {

namespace {

// An option naming one value of a choice (train/train_options.h), parsed into
// `value` here, once; a bad name fails naming the option and the names allowed.
template <typename E>
CLI::Option* add_choice(CLI::App& cmd, const std::string& flag, E& value, const std::string& help) {
  return cmd
      .add_option_function<std::string>(
          flag,
          [&value, flag](const std::string& name) { value = train::parse_choice<E>(name, "train: " + flag); },
          help)
      ->default_str(train::to_string(value));
}

// The flag of one TrainOptions field (train::train_fields), by its type.
void add_field_option(CLI::App& cmd, const train::TrainField& f, train::TrainOptions& o) {
  std::visit(
      [&](auto member) {
        using T = std::decay_t<decltype(o.*member)>;
        if constexpr (std::is_enum_v<T>) {
          add_choice(cmd, f.flag, o.*member, f.help);
        } else if constexpr (std::is_same_v<T, bool>) {
          cmd.add_flag(f.flag, o.*member, f.help);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          add_seed_option(cmd, o.*member, f.help);  // strict: -1 is refused, not wrapped
        } else {
          cmd.add_option(f.flag, o.*member, f.help)->capture_default_str();
        }
      },
      f.member);
}

// The options of a run: the defaults, then the recipe's, then the config
// file's, then every flag given on the command line (even one set to its
// default value). A --steps given here replaces the recipe's epochs.
train::TrainOptions merged_options(const CLI::App& cmd, const train::TrainOptions& flags,
                                   const std::string& recipe, const std::string& config) {
  nlohmann::json merged;
  train::to_json(merged, train::TrainOptions{});
  if (!recipe.empty()) merged.update(train::read_recipe(recipe));
  if (!config.empty()) {
    const nlohmann::json file = read_json_file(config);
    train::TrainOptions check;
    try {
      train::from_json(file, check);  // names the bad field
    } catch (const Error& e) {
      fail("{}: {}", config, e.what());
    }
    merged.update(file);
  }
  const auto given = [&](const char* flag) { return cmd.get_option(flag)->count() > 0; };
  if (given("--steps") && !given("--epochs")) merged["epochs"] = 0;
  train::TrainOptions options;
  train::from_json(merged, options);
  for (const train::TrainField& f : train::train_fields()) {
    if (given(f.flag)) train::copy_field(f, flags, options);
  }
  return options;
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<train::TrainOptions>();
  auto config = std::make_shared<std::string>();
  auto recipe = std::make_shared<std::string>();
  auto resume = std::make_shared<bool>(false);
  auto threads = std::make_shared<int>(0);
  auto print_config = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand(
      "train", "Train the image encoder on images + embedding stores (FLAME), or the CLIP baseline");
  // A recipe, then --config, then the flags given: each overrides the one before.
  cmd->add_option("--recipe", *recipe,
                  "training recipe: a preset in configs/recipes (flame-cc3m: the method's released training) "
                  "or a JSON file; flags override it");
  cmd->add_option("--config", *config,
                  "JSON file of train options (fields as in the checkpoint's config.json 'train')")
      ->check(CLI::ExistingFile);
  for (const train::TrainField& f : train::train_fields()) add_field_option(*cmd, f, *o);
  auto overwrite = std::make_shared<bool>(false);
  auto* resume_flag =
      cmd->add_flag("--resume", *resume, "continue from the latest checkpoint in --out, if any");
  cmd->add_flag("--overwrite", *overwrite,
                "delete the run already in --out (checkpoints, logs) and start again")
      ->excludes(resume_flag);
  cmd->add_flag("--print-config", *print_config,
                "print the options the run would use (recipe, --config and flags merged) as JSON, and exit");
  add_threads_option(*cmd, threads.get());
  cmd->callback([cmd, o, recipe, config, resume, overwrite, threads, print_config] {
    const train::TrainOptions options = merged_options(*cmd, *o, *recipe, *config);
    if (*print_config) {
      nlohmann::json json;
      train::to_json(json, options);
      fmt::print("{}\n", json.dump(2));
      return;
    }
    apply_threads(*threads);
    const train::TrainSummary summary = train::run_training(
        options, *resume ? train::RunStart::kResume
                         : (*overwrite ? train::RunStart::kOverwrite : train::RunStart::kNew));
    fmt::print("{}\n", summary.to_json().dump());
  });
}

}  // namespace flame::cli
