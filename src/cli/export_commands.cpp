// flame export / flame import: trained models to and from OpenCLIP's
// state-dict names and config layout (train/open_clip_format.h).
#include <fmt/format.h>

#include "cli/commands.h"
#include "train/open_clip_format.h"

namespace flame::cli {

void add_export_commands(CLI::App& app) {
  auto format = std::make_shared<std::string>("open_clip");
  auto run = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  auto* exp =
      app.add_subcommand("export", "Write a trained model in OpenCLIP's names and config (docs/export.md)");
  exp->add_option("--format", *format, "open_clip")
      ->capture_default_str()
      ->check(CLI::IsMember({"open_clip"}));
  exp->add_option("RUN", *run, "run directory (its latest checkpoint) or checkpoint directory")->required();
  exp->add_option("OUT_DIR", *out, "folder for open_clip_model.safetensors and open_clip_config.json")
      ->required();
  exp->add_flag("--overwrite", *overwrite, "replace an earlier export in OUT_DIR");
  exp->callback([format, run, out, overwrite] {  // the options write into these: keep them alive
    const train::OpenClipExport e = train::export_open_clip(*run, *out, *overwrite);
    fmt::print("wrote {} tensors to {} and the config to {}\n", e.tensors, e.weights.string(),
               e.config.string());
  });

  auto o = std::make_shared<train::OpenClipImportOptions>();
  auto* imp = app.add_subcommand(
      "import",
      "Turn an OpenCLIP-named FLAME checkpoint (flame's export, or the method's release) into a run");
  imp->add_option("--format", *format, "open_clip")
      ->capture_default_str()
      ->check(CLI::IsMember({"open_clip"}));
  imp->add_option("FILE", o->weights, "OpenCLIP-named .safetensors (docs/export.md converts a .pt)")
      ->required();
  imp->add_option("RUN_DIR", o->run_dir, "run directory to create")->required();
  imp->add_option(
      "--config", o->config,
      "open_clip_config.json or the model config JSON (default: open_clip_config.json beside FILE)");
  imp->add_option(
      "--llm", o->llm,
      "the frozen LLM the model was trained against (required unless FILE is a flame export, whose "
      "record it must then match)");
  imp->add_option(
      "--layer", o->layer,
      "hidden_states index its text features used (default: the config's text_cfg.layer, else -2; "
      "a flame export's record must match)");
  imp->add_option(
         "--facet-positions", o->facet_positions,
         "separate or concatenated (default: concatenated for the method's release; a flame export's record "
         "must match)")
      ->check(CLI::IsMember({"separate", "concatenated"}));
  imp->add_flag("--overwrite", o->overwrite,
                "replace the run in RUN_DIR (checkpoints, log, summary) as a whole");
  imp->callback([format, o] {
    const auto checkpoint = train::import_open_clip(*o);
    fmt::print("imported {} into {}\n", o->weights.string(), checkpoint.string());
  });
}

}  // namespace flame::cli
