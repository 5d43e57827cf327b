#include "data/caption_table.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "util/error.h"

namespace flame::data {

CaptionTable CaptionTable::read(const std::vector<std::string>& inputs, const CaptionSourceOptions& options,
                                const std::string& field) {
  CaptionSourceOptions o = options;
  o.required_fields = {field};
  const CaptionInput input = read_captions(inputs, o);
  CaptionTable table;
  if (!input.problems.empty()) {
    log_problem_examples(input.problems);
    spdlog::warn("captions: {} input problem(s); records without a usable '{}' are left out",
                 input.problems.size(), field);
  }
  for (const auto& r : input.records) {
    table.row_of_.emplace(r.key, table.size());
    table.keys_.push_back(r.key);
    table.captions_.push_back(r.fields.at(field));
  }
  if (table.keys_.empty()) fail("captions: no record of {} has a '{}' text", fmt::join(inputs, ", "), field);
  return table;
}

std::optional<int64_t> CaptionTable::index_of(const std::string& key) const {
  const auto it = row_of_.find(key);
  if (it == row_of_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> CaptionTable::captions(const std::vector<int64_t>& rows) const {
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (const int64_t row : rows) out.push_back(caption(row));
  return out;
}

}  // namespace flame::data
