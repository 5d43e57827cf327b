#include "text/embed_job.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>

#include "llm/checkpoint_identity.h"
#include "llm/load_llm.h"
#include "llm/weights.h"
#include "text/embedding_store.h"
#include "text/shard_pipeline.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/progress.h"
#include "util/strings.h"

namespace flame::text {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
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
  StoreIdentity identity = prompt_store_identity(llm::checkpoint_identity(o.llm_dir).json, prompts);
  identity.layer = static_cast<int>(encoder.layer());
  identity.dtype = o.store_dtype;
  identity.dim = encoder.dim();
  identity.normalized = o.encoder.normalize;
  identity.compute_dtype = llm::short_dtype_name(llm::parse_dtype(o.compute_dtype));
  identity.mode = to_string(o.encoder.mode);
  identity.facet_positions = llm::to_string(o.encoder.facet_positions);
  return identity;
}

// A first pass over the inputs, keeping nothing but counts: how many records
// this part embeds (for progress and ETA) and which field to embed (the
// option, else the prompt set's name if any record carries it, else
// "caption"). Reading captions costs little beside running the LLM on them.
struct InputScan {
  int64_t records = 0;
  std::string field;
  std::string inputs_sha256;  // kInputsRecordFile
};

// One input file's content identity: its size and SHA-256, whole for caption
// text (read in full by the job anyway), sampled for tar shards (64 evenly
// spaced 16 KiB pieces, first and last bytes included: their images are the
// bulk). Paths are not part of it: a copy elsewhere is the same input.
std::string input_file_fingerprint(const std::string& path) {
  const uint64_t size = std::filesystem::file_size(path);
  const bool tar = ends_with(path, ".tar") || ends_with(path, ".tgz") || ends_with(path, ".tar.gz");
  if (!tar) return fmt::format("{}:{}", size, sha256_file_hex(path));
  Sha256 hash;
  const MappedFile map(path);
  hash_evenly_spaced(hash, map.data(), map.size(), 64, 16 * 1024);
  return fmt::format("{}:sampled:{}", size, hash.hex());
}

// What identifies the inputs (embed_job.h: kInputsRecordFile): the files'
// content, the field and the reading options; the same on every part.
std::string inputs_fingerprint(const EmbedJobOptions& o, const std::string& field) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& path : data::check_caption_inputs(o.inputs, o.source))
    files.push_back(input_file_fingerprint(path));
  const auto& s = o.source;
  const nlohmann::json what = {{"files", files},
                               {"field", field},
                               {"format", s.format},
                               {"jsonl_key", s.jsonl_key_field},
                               {"tsv_key", s.tsv_key_columns},
                               {"tsv_text", s.tsv_text_column},
                               {"tsv_field", s.tsv_field},
                               {"tsv_join", s.tsv_join},
                               {"tsv_order", s.tsv_order_column},
                               {"required", s.required_fields}};
  return sha256_hex(what.dump());
}

InputScan scan_inputs(const EmbedJobOptions& o, const PromptSet& prompts) {
  InputScan scan;
  bool has_prompt_field = false;
  data::CaptionSink sink;
  sink.selects = [&](const std::string& key) { return data::in_part(key, o.part); };
  sink.problem = [](data::InputProblem&&) {};
  sink.record = [&](data::CaptionRecord&& r) {
    has_prompt_field = has_prompt_field || r.fields.count(prompts.name) != 0;
    ++scan.records;
  };
  data::stream_captions(o.inputs, o.source, sink);
  scan.field = !o.field.empty() ? o.field : (has_prompt_field ? prompts.name : "caption");
  scan.inputs_sha256 = inputs_fingerprint(o, scan.field);
  return scan;
}

// A store resumes only from the inputs it was made from: the same keys with
// other captions (a new caption file) would keep the old vectors under them.
// The record is the finished store's manifest "job", else OUT/inputs.json
// (written when a job starts); stores from before it was recorded have
// neither, and record it now. A record beside no vectors (a job that failed
// or was killed before its first shard) binds nothing: it is replaced.
void check_inputs_record(const EmbedJobOptions& o, const std::string& inputs_sha256) {
  const std::filesystem::path record_path = o.out / kInputsRecordFile;
  const bool holds_vectors =
      std::filesystem::exists(o.out / kManifestFile) || !list_shard_files(o.out).empty();
  if (holds_vectors) {
    check_store_inputs(
        o.out, inputs_sha256,
        fmt::format("this job reads {}: the input files' content or --field differ; use a new --out",
                    nlohmann::json(o.inputs).dump()));
  }
  write_json_file_atomic(record_path, {{"inputs", o.inputs}, {"inputs_sha256", inputs_sha256}});
}

// Numbers a user types: refused before the model loads, naming the flag.
// A path that cannot be looked at (a symlink loop, no permission) is named
// with its flag; a missing one is left to the check that follows.
void check_path_readable(const std::filesystem::path& path, const char* flag) {
  std::error_code error;
  (void)std::filesystem::status(path, error);
  if (error && error != std::errc::no_such_file_or_directory)
    fail("{} '{}': cannot read it: {}", flag, path.string(), error.message());
}

void check_numbers(const EmbedJobOptions& o) {
  for (const auto& input : o.inputs) check_path_readable(input, "--input");
  check_path_readable(o.out, "--out");
  if (std::filesystem::exists(o.out) && !std::filesystem::is_directory(o.out))
    fail("--out '{}' exists and is not a folder", o.out.string());
  if (o.shard_size < 1) fail("--shard-size must be at least 1, got {}", o.shard_size);
  if (o.limit < 0) fail("--limit must be 0 (all records) or a positive count, got {}", o.limit);
  if (o.encoder.batch_tokens < 1) fail("--batch-tokens must be at least 1, got {}", o.encoder.batch_tokens);
  if (o.encoder.max_tokens < 0)
    fail("--max-tokens must be 0 (the model's context) or a positive count, got {}", o.encoder.max_tokens);
}

// Everything the embedding of one run needs, shard after shard. The writer is
// asked (has_shard) on the reading thread and written on the writer thread:
// `writer_mutex` keeps the two apart.
struct ShardJob {
  const EmbedJobOptions& options;
  const FacetEncoder& encoder;
  EmbeddingStoreWriter& writer;
  std::mutex& writer_mutex;
  JsonlWriter& log;
  ProgressBar& bar;
  EmbedJobSummary& summary;
};

// A full shard, on the reading thread: skipped when a killed run already
// wrote it with these keys, else tokenized for the model.
ShardWork prepare_shard(const ShardJob& job, int64_t shard, std::vector<std::string> keys,
                        const std::vector<std::string>& texts) {
  ShardWork work;
  work.shard = shard;
  work.keys = std::move(keys);
  {
    std::lock_guard<std::mutex> lock(job.writer_mutex);
    work.resumed = job.writer.has_shard(shard, &work.keys);
  }
  if (work.resumed) return work;
  for (size_t i = 0; i < texts.size(); ++i) {
    work.tokens.push_back(job.encoder.tokenize(texts[i]));
    if (work.tokens.back().truncated) {
      ++work.truncated;
      spdlog::debug("caption of '{}' truncated to fit {} tokens", work.keys[i], job.encoder.max_tokens());
    }
  }
  return work;
}

// A computed (or resumed) shard, on the writer thread, in shard order.
void finish_shard(const ShardJob& job, const ShardWork& work, const torch::Tensor& embeddings) {
  const int64_t n = static_cast<int64_t>(work.keys.size());
  if (work.resumed) {
    job.summary.resumed += n;
    job.bar.set_initial(job.bar.done() + n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(job.writer_mutex);
    job.writer.write_shard(work.shard, work.keys, embeddings);
  }
  job.summary.embedded += n;
  job.summary.truncated += work.truncated;
  job.summary.tokens += work.stats.tokens;
  job.bar.advance(n, work.stats.tokens);
  const double seconds = work.model_seconds;
  job.log.write({{"event", "shard"},
                 {"shard", work.shard},
                 {"captions", n},
                 {"tokens", work.stats.tokens},
                 {"padded_tokens", work.stats.padded_tokens},
                 {"truncated", work.truncated},
                 {"model_seconds", seconds},
                 {"captions_per_s", n / std::max(seconds, 1e-9)},
                 {"tokens_per_s", work.stats.tokens / std::max(seconds, 1e-9)}});
}

// The second pass: this part's records with text in `field`, streamed into
// store shards of options.shard_size in input order (the same split on every
// run, so a resumed run finds its shards). Each full shard goes through the
// pipeline: tokenized here, encoded on its worker, written on its writer.
// Returns the input problems, in the order found.
std::vector<data::InputProblem> embed_inputs(const ShardJob& job, const std::string& field) {
  const EmbedJobOptions& o = job.options;
  ShardPipeline pipeline([&](ShardWork& w) { return job.encoder.encode(w.tokens, &w.stats); },
                         [&](const ShardWork& w, const torch::Tensor& e) { finish_shard(job, w, e); },
                         /*overlap=*/!llm::parse_device(o.device).is_cpu());
  std::vector<data::InputProblem> problems;
  std::vector<std::string> keys, texts;
  int64_t shard = 0, taken = 0;
  const auto flush = [&] {
    if (keys.empty()) return;
    pipeline.push(prepare_shard(job, shard++, std::move(keys), texts));
    keys.clear();
    texts.clear();
  };
  data::CaptionSink sink;
  sink.selects = [&](const std::string& key) { return data::in_part(key, o.part); };
  sink.problem = [&](data::InputProblem&& p) { problems.push_back(std::move(p)); };
  sink.record = [&](data::CaptionRecord&& r) {
    if (o.limit > 0 && taken >= o.limit) throw data::StopStreaming{};
    const auto it = r.fields.find(field);
    if (it == r.fields.end()) {
      problems.push_back({r.key, r.source, "missing field '" + field + "'", true});
      return;
    }
    keys.push_back(std::move(r.key));
    texts.push_back(std::move(it->second));
    ++taken;
    if (static_cast<int64_t>(keys.size()) == o.shard_size) flush();
  };
  data::stream_captions(o.inputs, o.source, sink);
  flush();
  pipeline.finish();
  job.summary.records = taken;
  job.summary.model_seconds = pipeline.model_seconds();
  return problems;
}

}  // namespace

void check_store_inputs(const std::filesystem::path& dir, const std::string& inputs_sha256,
                        const std::string& consequence) {
  const std::filesystem::path manifest_path = dir / kManifestFile;
  for (const auto& path : {manifest_path, dir / kInputsRecordFile}) {
    if (!std::filesystem::exists(path)) continue;
    const nlohmann::json record = read_json_file(path);
    const nlohmann::json job = path == manifest_path ? record.value("job", nlohmann::json::object()) : record;
    if (!job.is_object() || !job.contains("inputs_sha256") || job["inputs_sha256"] == inputs_sha256) continue;
    fail("{}: the store was made from other inputs ({}; inputs_sha256 {}), this job's {}: {}", dir.string(),
         job.value("inputs", nlohmann::json::array()).dump(), job["inputs_sha256"].dump(), inputs_sha256,
         consequence);
  }
}

EmbedJobSummary run_embed_job(const EmbedJobOptions& o) {
  const auto start = Clock::now();
  if (o.inputs.empty()) fail("no input given (--input)");
  o.part.validate(kPartFlags);
  check_numbers(o);
  const PromptSet prompts = load_prompt_set(o.prompts);
  // Inputs first: a missing or unknown input is reported before the model loads.
  data::check_caption_inputs(o.inputs, o.source);
  const InputScan scan = scan_inputs(o, prompts);

  const auto [model, tokenizer] = llm::load_llm(o.llm_dir, o.compute_dtype, o.device);
  const FacetEncoder encoder(model, *tokenizer, prompts, o.encoder);
  const StoreIdentity identity = store_identity(o, prompts, encoder);
  if (o.before_writing) o.before_writing(identity, scan.inputs_sha256);
  std::filesystem::create_directories(o.out);
  EmbeddingStoreWriter writer(o.out, identity, o.part);
  check_inputs_record(o, scan.inputs_sha256);  // with the store locked

  EmbedJobSummary summary;
  summary.store = o.out;
  JsonlWriter log(o.out / "embed-log.jsonl");
  const int64_t expected = o.limit > 0 ? std::min(o.limit, scan.records) : scan.records;
  ProgressBar bar("embed " + prompts.name, expected, "captions", o.progress ? stderr : nullptr);
  bar.set_extra_unit("tok");
  std::mutex writer_mutex;
  const std::vector<data::InputProblem> problems =
      embed_inputs({o, encoder, writer, writer_mutex, log, bar, summary}, scan.field);
  bar.finish();
  summary.problems = static_cast<int64_t>(problems.size());
  for (const auto& p : problems) summary.dropped += p.dropped ? 1 : 0;
  report_problems(o, problems, summary.dropped);
  // A job that embeds nothing is a mistake (a wrong --field, every line bad),
  // not an empty success. One part of several may be empty on a tiny input.
  if (summary.records == 0 && o.part.count == 1) {
    fail("nothing to embed: no caption was read from {} ({} record(s) dropped{})", fmt::join(o.inputs, ", "),
         summary.dropped, summary.problems > 0 ? "; reasons in " + (o.out / "problems.jsonl").string() : "");
  }
  if (summary.records == 0) spdlog::warn("part {} of {} holds no caption", o.part.index, o.part.count);

  summary.seconds = seconds_since(start);
  writer.finalize({{"inputs", o.inputs},
                   {"inputs_sha256", scan.inputs_sha256},
                   {"limit", o.limit},
                   {"field", scan.field},
                   {"mode", to_string(o.encoder.mode)},
                   {"compute_dtype", o.compute_dtype},
                   {"max_tokens", encoder.max_tokens()},
                   {"input_problems", summary.problems},
                   {"dropped", summary.dropped},
                   {"truncated_this_run", summary.truncated}});
  log.write({{"event", "done"},
             {"records", summary.records},
             {"embedded", summary.embedded},
             {"resumed", summary.resumed},
             {"truncated", summary.truncated},
             {"problems", summary.problems},
             {"seconds", summary.seconds},
             {"model_busy_fraction", summary.model_seconds / std::max(summary.seconds, 1e-9)}});
  return summary;
}

}  // namespace flame::text
