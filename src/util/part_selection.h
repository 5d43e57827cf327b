// One part of a scale-out job: n processes (or machines) each take part i of
// n of the records and write their own store, recorded in the store as
// "part": {"index": i, "count": n}. (Store *files* are shards; a part is a
// whole store written by one process.) Parsed and validated only here, so a
// bad part reads the same wherever it comes from.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace flame {

struct PartSelection {
  int index = 0;
  int count = 1;

  bool operator==(const PartSelection& o) const { return index == o.index && count == o.count; }

  // Throws flame::Error "SOURCE: invalid part I of N: need 0 <= index < count".
  void validate(const std::string& source) const;

  nlohmann::json to_json() const { return {{"index", index}, {"count", count}}; }
  // Reads {"index": i, "count": n} and validates it; errors name `source`.
  static PartSelection from_json(const nlohmann::json& j, const std::string& source);
};

// The source for part errors from the command-line options (and their
// EmbedJobOptions mirror).
inline constexpr const char* kPartFlags = "--part-index/--num-parts";

}  // namespace flame
