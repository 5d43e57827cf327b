#include "text/embed_job.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "llm/config.h"
#include "llm/load_llm.h"
#include "llm/weights.h"
#include "text/embedding_store.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/progress.h"

namespace flame::text {

namespace {

// The field to embed: the option, else the prompt set's name if the records
// carry it, else the reader's caption field.
std::string choose_field(const EmbedJobOptions& o, const PromptSet& prompts,
                         const std::vector<data::CaptionRecord>& records) {
  if (!o.field.empty()) return o.field;
  for (const auto& r : records) {
    if (r.fields.count(prompts.name)) return prompts.name;
  }
  return "caption";
}

void write_problems(const std::filesystem::path& path, const std::vector<data::InputProblem>& problems) {
  std::string text;
  for (const auto& p : problems) {
    text += nlohmann::json{{"key", p.key}, {"source", p.source}, {"reason", p.reason}, {"dropped", p.dropped}}
                .dump();
    text += "\n";
  }
  write_file_atomic(path, text);
}

// The records of this part that have text in `field`, in input order; the
// others become (dropping) input problems. At most o.limit records when set.
std::vector<data::CaptionRecord> usable_records(const EmbedJobOptions& o, const std::string& field,
                                                data::CaptionInput& input) {
  std::vector<data::CaptionRecord> usable;
  for (auto& r : input.records) {
    const auto it = r.fields.find(field);
    if (it == r.fields.end() || it->second.empty()) {
      input.problems.push_back(
          {r.key, r.source,
           it == r.fields.end() ? "missing field '" + field + "'" : "empty field '" + field + "'", true});
      continue;
    }
    usable.push_back(std::move(r));
  }
  auto records = data::part_records(usable, o.part);
  if (o.limit > 0 && static_cast<int64_t>(records.size()) > o.limit)
    records.resize(static_cast<size_t>(o.limit));
  return records;
}

// Lists the input problems in OUT/problems.jsonl and logs the first few.
void report_problems(const EmbedJobOptions& o, const std::vector<data::InputProblem>& problems,
                     int64_t dropped) {
  if (problems.empty()) return;
  write_problems(o.out / "problems.jsonl", problems);
  data::log_problem_examples(problems);
  spdlog::warn("{} input problem(s), {} record(s) dropped; all listed in {}", problems.size(), dropped,
               (o.out / "problems.jsonl").string());
}

StoreIdentity store_identity(const EmbedJobOptions& o, const PromptSet& prompts,
                             const FacetEncoder& encoder) {
  StoreIdentity identity;
  identity.llm = llm_identity(o.llm_dir);
  identity.prompt_set_name = prompts.name;
  identity.prompt_set_sha256 = prompts.sha256;
  for (const auto& f : prompts.facets) identity.facets.push_back(f.name);
  identity.layer = static_cast<int>(encoder.layer());
  identity.dtype = o.store_dtype;
  identity.num_facets = prompts.num_facets();
  identity.dim = encoder.dim();
  identity.normalized = o.encoder.normalize;
  return identity;
}

// What writing each store shard of a run needs.
struct ShardJob {
  const FacetEncoder& encoder;
  const std::vector<data::CaptionRecord>& records;
  const std::string& field;
  EmbeddingStoreWriter& writer;
  JsonlWriter& log;
  ProgressBar& bar;
};

// Encodes records [begin, end) and writes them as store shard `shard`.
void embed_store_shard(const ShardJob& job, int64_t shard, int64_t begin, int64_t end,
                       const std::vector<std::string>& keys, EmbedJobSummary* summary) {
  const auto shard_start = std::chrono::steady_clock::now();
  std::vector<TokenizedCaption> tokenized;
  int64_t truncated = 0;
  for (int64_t i = begin; i < end; ++i) {
    tokenized.push_back(job.encoder.tokenize(job.records[i].fields.at(job.field)));
    if (tokenized.back().truncated) {
      ++truncated;
      spdlog::debug("caption of '{}' truncated to fit {} tokens", job.records[i].key,
                    job.encoder.max_tokens());
    }
  }
  EncodeStats stats;
  const auto embeddings = job.encoder.encode(tokenized, &stats);
  job.writer.write_shard(shard, keys, embeddings);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - shard_start).count();
  summary->embedded += end - begin;
  summary->truncated += truncated;
  summary->tokens += stats.tokens;
  job.bar.advance(end - begin, stats.tokens);
  job.log.write({{"event", "shard"},
                 {"shard", shard},
                 {"captions", end - begin},
                 {"tokens", stats.tokens},
                 {"padded_tokens", stats.padded_tokens},
                 {"truncated", truncated},
                 {"seconds", seconds},
                 {"captions_per_s", (end - begin) / std::max(seconds, 1e-9)},
                 {"tokens_per_s", stats.tokens / std::max(seconds, 1e-9)}});
}

}  // namespace

nlohmann::json llm_identity(const std::filesystem::path& llm_dir) {
  const auto config = llm::load_llm_config(llm_dir);
  const llm::WeightFiles weights(llm_dir);
  std::string per_file;
  for (const auto& f : weights.files()) {
    per_file += f->path().filename().string() + ":" + sha256_file_hex(f->path()) + "\n";
  }
  auto name = std::filesystem::weakly_canonical(llm_dir).filename().string();
  return {{"name", name},
          {"architecture", config.architecture_name},
          {"config_sha256", sha256_file_hex(llm_dir / "config.json")},
          {"weights_checksum", "sha256:" + sha256_hex(per_file)}};
}

EmbedJobSummary run_embed_job(const EmbedJobOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  if (o.inputs.empty()) fail("no input given (--input)");
  o.part.validate(kPartFlags);
  if (o.shard_size < 1) fail("--shard-size must be at least 1");
  const PromptSet prompts = load_prompt_set(o.prompts);

  // Inputs first: bad input is reported before the model is loaded.
  data::CaptionInput input = data::read_captions(o.inputs, o.source);
  const std::string field = choose_field(o, prompts, input.records);
  const auto records = usable_records(o, field, input);

  EmbedJobSummary summary;
  summary.store = o.out;
  summary.records = static_cast<int64_t>(records.size());
  summary.problems = static_cast<int64_t>(input.problems.size());
  for (const auto& p : input.problems) summary.dropped += p.dropped ? 1 : 0;
  std::filesystem::create_directories(o.out);
  report_problems(o, input.problems, summary.dropped);

  const auto [model, tokenizer] = llm::load_llm(o.llm_dir, o.compute_dtype, o.device);
  const FacetEncoder encoder(model, *tokenizer, prompts, o.encoder);
  EmbeddingStoreWriter writer(o.out, store_identity(o, prompts, encoder), o.part);

  JsonlWriter log(o.out / "embed-log.jsonl");
  const int64_t n = static_cast<int64_t>(records.size());
  ProgressBar bar("embed " + prompts.name, n, "captions", o.progress ? stderr : nullptr);
  bar.set_extra_unit("tok");
  const ShardJob job{encoder, records, field, writer, log, bar};
  const int64_t num_store_shards = (n + o.shard_size - 1) / o.shard_size;
  for (int64_t shard = 0; shard < num_store_shards; ++shard) {
    const int64_t begin = shard * o.shard_size, end = std::min(n, begin + o.shard_size);
    std::vector<std::string> keys;
    for (int64_t i = begin; i < end; ++i) keys.push_back(records[i].key);
    if (writer.has_shard(shard, &keys)) {
      summary.resumed += end - begin;
      bar.set_initial(bar.done() + (end - begin));
      continue;
    }
    embed_store_shard(job, shard, begin, end, keys, &summary);
  }
  bar.finish();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json job_info = {{"inputs", o.inputs},
                             {"field", field},
                             {"mode", to_string(o.encoder.mode)},
                             {"compute_dtype", o.compute_dtype},
                             {"max_tokens", encoder.max_tokens()},
                             {"input_problems", summary.problems},
                             {"dropped", summary.dropped},
                             {"truncated_this_run", summary.truncated}};
  writer.finalize(job_info);
  log.write({{"event", "done"},
             {"records", summary.records},
             {"embedded", summary.embedded},
             {"resumed", summary.resumed},
             {"truncated", summary.truncated},
             {"problems", summary.problems},
             {"seconds", summary.seconds}});
  return summary;
}

}  // namespace flame::text
