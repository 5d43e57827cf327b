// The offline embedding job behind `flame embed`: stream captions, keep this
// process's scale-out part, encode each store shard (file) with the
// FacetEncoder, and write it atomically. A killed job restarted with the same
// arguments skips the shards already on disk, so the final store equals an
// uninterrupted run's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data/caption_source.h"
#include "text/fda_encoder.h"
#include "text/store_manifest.h"
#include "util/part_selection.h"

namespace flame::text {

struct EmbedJobOptions {
  std::filesystem::path llm_dir;
  std::string prompts = "long";  // built-in set name or JSON file
  std::vector<std::string> inputs;
  std::filesystem::path out;
  // Record field to embed; empty: the prompt set's name when records have it
  // (JSONL {"long":..}), else "caption" (TSV, tar .txt).
  std::string field;
  data::CaptionSourceOptions source;
  FacetEncoderOptions encoder;
  std::string compute_dtype = "bf16";
  std::string store_dtype = "f16";  // f16 | bf16 | int8
  std::string device = "cpu";
  int64_t shard_size = 1024;  // captions per store shard file (the unit of resume)
  PartSelection part;         // scale-out: this process writes part part.index of part.count
  int64_t limit = 0;          // embed only the first N records (0 = all), e.g. for a quick look
  bool progress = true;
  // Called once the job knows its store identity and the fingerprint of its
  // inputs, before anything is written (a launched job checks the store it
  // will replace); throws to stop the job.
  std::function<void(const StoreIdentity& identity, const std::string& inputs_sha256)> before_writing;
};

// The fingerprint of what a job reads, the same on every part and wherever
// the files lie: each input file's size and SHA-256 (sampled for tar shards),
// the field and the reading options (not --limit). Recorded as "inputs_sha256" in a store's job record
// (manifest "job", and OUT/inputs.json while the job runs); parts of one store
// must agree, and a store resumes only from the same inputs.
inline constexpr const char* kInputsRecordFile = "inputs.json";

// Refuses the store at `dir` when its job record (manifest "job", or
// kInputsRecordFile of an unfinished job) names other inputs than
// `inputs_sha256`, saying "<dir>: the store was made from other inputs (...),
// this job's <sha>: <consequence>". Stores without a record pass.
void check_store_inputs(const std::filesystem::path& dir, const std::string& inputs_sha256,
                        const std::string& consequence);

struct EmbedJobSummary {
  int64_t records = 0;    // records of this part
  int64_t embedded = 0;   // encoded in this run
  int64_t resumed = 0;    // found complete on disk
  int64_t truncated = 0;  // captions cut to fit the context (this run)
  int64_t problems = 0;   // input problems (see OUT/problems.jsonl)
  int64_t dropped = 0;    // records left out because of a problem
  int64_t tokens = 0;     // tokens processed by the LLM (this run)
  double seconds = 0;
  double model_seconds = 0;  // of `seconds`, the LLM's forward passes (the rest: reading, writing, waiting)
  std::filesystem::path store;  // the output directory
};

// Embeds this part's captions into the store at options.out. The inputs are
// read twice as streams (a count for progress, then the embedding), never held
// in memory; store shards are embedded as they fill, so a killed job restarted
// with the same arguments skips the shards on disk and ends with the store an
// uninterrupted run writes.
EmbedJobSummary run_embed_job(const EmbedJobOptions& options);

}  // namespace flame::text
