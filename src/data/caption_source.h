// Caption inputs for the offline embedding job: JSONL files, WebDataset tar
// shards and TSV tables, read into keyed records in a deterministic order.
//
// Bad records do not stop a job over millions of captions: each defect (empty
// or non-UTF-8 text, missing key or field, duplicate key, unparsable line) is
// collected as an InputProblem naming the key and file. A record is kept when
// it is still usable, otherwise dropped, and every dropped record has a problem
// with `dropped` set. Only a missing or unreadable input file throws.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util/part_selection.h"

namespace flame::data {

// A caption with nothing to read: every character Unicode White_Space (U+3000,
// U+00A0, ASCII space, ...) or a control or format character (NUL, U+200B
// zero-width space, ...). Every caption reader drops such captions, and eval
// skips them (eval::caption_defect).
bool blank_caption(std::string_view text);

struct CaptionRecord {
  std::string key;
  std::map<std::string, std::string> fields;  // e.g. "long", "short", "raw", or "caption"
  std::string source;                         // where it was read: "file:line" or "shard.tar:KEY"
};

struct InputProblem {
  std::string key;     // empty when the key itself could not be read
  std::string source;  // "file:line", or "shard.tar:KEY" for tar members
  std::string reason;
  bool dropped = false;  // the record was left out of CaptionInput::records
};

struct CaptionSourceOptions {
  // "auto" tells each file's format from its extension: .jsonl/.ndjson, .tsv,
  // .tar/.tar.gz/.tgz; or "jsonl", "tsv", "tar" for all inputs.
  std::string format = "auto";

  // JSONL: the field holding the key (a non-empty string or an integer).
  std::string jsonl_key_field = "key";

  // TSV (header row required): the key is the values of these columns joined
  // with '#', e.g. {"image", "caption_index"} -> "IMG.jpg#0".
  std::vector<std::string> tsv_key_columns = {"image"};
  std::string tsv_text_column = "caption";
  std::string tsv_field;  // field name for the text; empty: tsv_text_column
  // Join the rows sharing a key (within one file) into one caption, separated
  // by single spaces, in the order of tsv_order_column when the file has that
  // column, else in file order.
  bool tsv_join = false;
  std::string tsv_order_column = "caption_index";

  // Fields every kept record must have, non-empty. When empty, a record needs
  // at least one non-empty field.
  std::vector<std::string> required_fields;
};

struct CaptionInput {
  std::vector<CaptionRecord> records;  // inputs in the given order, each file in its own order
  std::vector<InputProblem> problems;  // in the order they were found

  int64_t dropped_count() const;
};

// Where stream_captions delivers: every usable record and every problem, in
// input order. `selects` (optional) keeps only the keys it returns true for
// (a scale-out part: in_part below); problems without a key count as key "".
// `record` may throw StopStreaming to end the stream early (e.g. --limit).
struct CaptionSink {
  std::function<void(CaptionRecord&&)> record;
  std::function<void(InputProblem&&)> problem;
  std::function<bool(const std::string& key)> selects;
};

// Reads the inputs as streams, one record at a time: memory holds the keys of
// the selected records (to refuse duplicates) but never the records read
// before, except that TSV with tsv_join groups one file's rows by key. Same
// records, problems and order as read_captions (restricted to `selects`).
// Throws as read_captions.
void stream_captions(const std::vector<std::string>& inputs, const CaptionSourceOptions& options,
                     const CaptionSink& sink);
struct StopStreaming {};

// The inputs' paths, brace patterns expanded; throws flame::Error naming the
// first that is missing, not a file, or of unknown format (stream_captions
// checks this before reading anything).
std::vector<std::string> check_caption_inputs(const std::vector<std::string>& inputs,
                                              const CaptionSourceOptions& options);

// Reads every record of the inputs into memory (small inputs: eval, tests). Each input may use brace patterns
// ("data-{0000..0099}.tar"). Throws flame::Error naming the file when an input
// is missing, unreadable, or of unknown format; everything else is a problem.
CaptionInput read_captions(const std::vector<std::string>& inputs, const CaptionSourceOptions& options = {});

// Logs (warn) the first `count` problems, one line each, naming key and source.
void log_problem_examples(const std::vector<InputProblem>& problems, size_t count = 5);

// FNV-1a 64 of the key's bytes: stable across machines, builds and runs.
uint64_t key_hash(const std::string& key);

// The records of scale-out part `part`: key_hash(key) % count == index, in
// input order. The split depends only on the keys, so every machine of a
// scale-out job computes the same partition whatever order it read the inputs in.
std::vector<CaptionRecord> part_records(const std::vector<CaptionRecord>& records, const PartSelection& part);

// Whether `key` belongs to `part` (the split of part_records).
bool in_part(const std::string& key, const PartSelection& part);

}  // namespace flame::data
