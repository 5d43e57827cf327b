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
#include "util/progress.h"

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
};

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
  return scan;
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

EmbedJobSummary run_embed_job(const EmbedJobOptions& o) {
  const auto start = Clock::now();
  if (o.inputs.empty()) fail("no input given (--input)");
  o.part.validate(kPartFlags);
  if (o.shard_size < 1) fail("--shard-size must be at least 1");
  const PromptSet prompts = load_prompt_set(o.prompts);
  // Inputs first: a missing or unknown input is reported before the model loads.
  data::check_caption_inputs(o.inputs, o.source);
  const InputScan scan = scan_inputs(o, prompts);

  const auto [model, tokenizer] = llm::load_llm(o.llm_dir, o.compute_dtype, o.device);
  const FacetEncoder encoder(model, *tokenizer, prompts, o.encoder);
  std::filesystem::create_directories(o.out);
  EmbeddingStoreWriter writer(o.out, store_identity(o, prompts, encoder), o.part);

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
