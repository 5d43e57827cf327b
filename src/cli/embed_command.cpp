// flame embed: captions -> facet embeddings in an embedding store; merge and
// verify the parts of a scale-out job (--num-parts N --part-index i; a store's
// files are its shards, --shard-size).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "text/embed_launch.h"
#include "text/store_parts.h"
#include "util/error.h"
#include "util/strings.h"

namespace flame::cli {

namespace {

void add_merge(CLI::App& embed) {
  auto parts = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  auto* cmd =
      embed.add_subcommand("merge", "Verify the parts of a scale-out job and combine them into one store");
  cmd->add_option("--out", *out, "output store directory (new or empty)")->required();
  cmd->add_option("PARTS", *parts, "part store directories")->required()->check(CLI::ExistingDirectory);
  cmd->callback([parts, out] {
    std::vector<std::filesystem::path> dirs(parts->begin(), parts->end());
    text::merge_stores(dirs, *out);
    fmt::print("merged {} part(s) into {}\n", dirs.size(), *out);
  });
}

void add_verify(CLI::App& embed) {
  auto parts = std::make_shared<std::vector<std::string>>();
  auto* cmd =
      embed.add_subcommand("verify", "Check stores or parts: manifests agree, parts complete, keys unique");
  cmd->add_option("STORES", *parts, "store or part directories")->required()->check(CLI::ExistingDirectory);
  cmd->callback([parts] {
    std::vector<std::filesystem::path> dirs(parts->begin(), parts->end());
    const auto report = text::verify_stores(dirs);
    fmt::print("{}\n", report.summary());
    if (!report.ok()) fail("verification failed");
  });
}

// An old spelling of a flag, kept for one release: sets the same value and
// warns once, naming the new flag.
CLI::Option* add_deprecated_alias(CLI::App& cmd, const std::string& old_flag, CLI::Option* replacement,
                                  int* value) {
  const std::string new_flag = replacement->get_name();
  auto* alias = cmd.add_option_function<int>(
      old_flag,
      [value, old_flag, new_flag](int v) {
        spdlog::warn("{} is deprecated and will be removed: use {}", old_flag, new_flag);
        *value = v;
      },
      "deprecated: use " + new_flag);
  alias->excludes(replacement);
  return alias;
}

// --num-parts N --part-index i: this process writes part i of n of a scale-out
// job (checked with the job's other options in run_embed_job).
void add_part_options(CLI::App& cmd, PartSelection* part) {
  auto* count =
      cmd.add_option("--num-parts", part->count, "scale-out: number of parts")->capture_default_str();
  auto* index =
      cmd.add_option("--part-index", part->index, "scale-out: the part this process writes (0-based)")
          ->capture_default_str();
  add_deprecated_alias(cmd, "--num-shards", count, &part->count);
  add_deprecated_alias(cmd, "--shard-index", index, &part->index);
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto o = std::make_shared<text::EmbedJobOptions>();
  auto mode = std::make_shared<std::string>("fda");
  auto facet_positions = std::make_shared<std::string>("separate");
  auto key_columns = std::make_shared<std::string>("image");
  auto threads = std::make_shared<int>(0);
  auto* cmd = app.add_subcommand("embed", "Embed captions with the frozen LLM into an embedding store (FDA)");
  cmd->add_option("--llm", o->llm_dir, "Hugging Face checkpoint directory or .gguf file")
      ->check(CLI::ExistingPath);
  cmd->add_option("--prompts", o->prompts, "prompt set: long, short, raw or a JSON file")
      ->capture_default_str();
  cmd->add_option("--input", o->inputs, "JSONL, WebDataset tar (brace patterns allowed) or TSV; repeatable");
  cmd->add_option("--out", o->out, "output store directory (re-run to resume)");
  cmd->add_option("--field", o->field,
                  "record field to embed (default: the prompt set's name if present, else caption)");
  cmd->add_option("--tsv-key", *key_columns, "TSV key columns, comma-separated (joined with '#')")
      ->capture_default_str();
  cmd->add_option("--tsv-text", o->source.tsv_text_column, "TSV text column")->capture_default_str();
  cmd->add_flag("--tsv-join", o->source.tsv_join,
                "join TSV rows sharing a key into one caption (long captions)");
  cmd->add_option("--batch-tokens", o->encoder.batch_tokens, "padded tokens per forward pass")
      ->capture_default_str();
  cmd->add_option("--max-tokens", o->encoder.max_tokens,
                  "longest prompt; longer captions are truncated (0 = model context)");
  cmd->add_option(
         "--layer", o->encoder.layer,
         "hidden_states index as Python numbers it: 0 = embeddings, i = after layer i, -1 = after the "
         "final norm, -2 = second to last (the method's)")
      ->capture_default_str();
  cmd->add_flag("--normalize", o->encoder.normalize, "store L2-normalised vectors");
  cmd->add_option("--mode", *mode, "fda, fda-cache or naive")
      ->capture_default_str()
      ->check(CLI::IsMember({"fda", "fda-cache", "naive"}));
  cmd->add_option("--facet-positions", *facet_positions,
                  "separate: each facet positioned as its own prompt (the paper's FDA); concatenated: "
                  "numbered along the packed row, as the method's released code (to evaluate its "
                  "checkpoints; mode fda)")
      ->capture_default_str()
      ->check(CLI::IsMember({"separate", "concatenated"}));
  cmd->add_option("--dtype", o->compute_dtype, "compute dtype: bf16, f16 or f32")->capture_default_str();
  cmd->add_option("--store-dtype", o->store_dtype,
                  "stored dtype: f16, bf16 or int8 (one scale per vector, half the size of f16)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "bf16", "int8"}));
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--shard-size", o->shard_size, "captions per store shard file (the unit of resume)")
      ->capture_default_str();
  add_part_options(*cmd, &o->part);
  cmd->add_option("--limit", o->limit, "embed only the first N records");
  add_threads_option(*cmd, threads.get());
  add_merge(*cmd);
  add_verify(*cmd);
  cmd->callback([cmd, o, mode, facet_positions, key_columns, threads] {
    if (!cmd->get_subcommands().empty()) return;  // merge / verify ran
    if (o->llm_dir.empty() || o->inputs.empty() || o->out.empty()) {
      fail("flame embed needs --llm, --input and --out (or a subcommand: merge, verify)");
    }
    apply_threads(*threads);
    o->encoder.mode = text::parse_encode_mode(*mode);
    o->encoder.facet_positions = llm::parse_facet_positions(*facet_positions, "--facet-positions");
    o->source.tsv_key_columns = split(*key_columns, ',');
    const auto s = text::run_embed(*o);
    fmt::print(
        "embedded {} caption(s) ({} resumed from disk) into {} in {:.1f} s: {:.1f} captions/s, {:.0f} "
        "tokens/s, model busy {:.0f}% of the time\n",
        s.embedded, s.resumed, s.store.string(), s.seconds, s.embedded / std::max(s.seconds, 1e-9),
        s.tokens / std::max(s.seconds, 1e-9), 100 * s.model_seconds / std::max(s.seconds, 1e-9));
    if (s.truncated > 0) fmt::print("{} caption(s) truncated to fit the context\n", s.truncated);
    if (s.problems > 0) {
      fmt::print("{} input problem(s), {} record(s) dropped: see {}\n", s.problems, s.dropped,
                 (s.store / "problems.jsonl").string());
    }
  });
}

}  // namespace flame::cli
