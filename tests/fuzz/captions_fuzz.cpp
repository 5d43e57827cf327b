// Caption readers: the input read as a JSONL file and as a TSV table (one row
// per caption, and rows joined by key). Bad records become problems, so the
// only error allowed is flame::Error for an unreadable file; every kept
// record has a key and a non-empty field, and every dropped one a problem.
#include "data/caption_source.h"
#include "fuzz_targets.h"
#include "util/error.h"

namespace flame::fuzz {

namespace {

int64_t read_as(const std::string& path, const data::CaptionSourceOptions& options) {
  const data::CaptionInput input = data::read_captions({path}, options);
  for (const auto& record : input.records) {
    if (record.key.empty() || record.fields.empty()) __builtin_trap();
  }
  return static_cast<int64_t>(input.records.size());
}

}  // namespace

bool captions(const uint8_t* data, size_t size) {
  int64_t records = 0;
  try {
    records += read_as(input_file(data, size, "captions.jsonl").string(), {});
    data::CaptionSourceOptions tsv;
    tsv.tsv_key_columns = {"image", "caption_index"};
    records += read_as(input_file(data, size, "captions.tsv").string(), tsv);
    tsv.tsv_key_columns = {"image"};
    tsv.tsv_join = true;
    records += read_as(input_file(data, size, "joined.tsv").string(), tsv);
  } catch (const Error&) {
    return false;
  }
  return records > 0;
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(captions)
