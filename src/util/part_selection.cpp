#include "util/part_selection.h"

#include <cstdint>

#include "util/error.h"

namespace flame {

void PartSelection::validate(const std::string& source) const {
  if (count < 1 || index < 0 || index >= count) {
    fail("{}: invalid part {} of {}: need 0 <= index < count", source, index, count);
  }
}

PartSelection PartSelection::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("index") || !j.contains("count") || !j["index"].is_number_integer() ||
      !j["count"].is_number_integer()) {
    fail("{}: 'part' must be {{\"index\": i, \"count\": n}}", source);
  }
  // Read wide, then range-checked: get<int> would wrap 2^32 + 1 to 1.
  const int64_t index = j["index"].get<int64_t>(), count = j["count"].get<int64_t>();
  if (j["index"].is_number_unsigned() && j["index"].get<uint64_t>() > INT32_MAX)
    fail("{}: part index {} is too large", source, j["index"].dump());
  if (j["count"].is_number_unsigned() && j["count"].get<uint64_t>() > INT32_MAX)
    fail("{}: part count {} is too large", source, j["count"].dump());
  if (index < INT32_MIN || index > INT32_MAX || count < INT32_MIN || count > INT32_MAX) {
    fail("{}: part {} of {} is out of range", source, index, count);
  }
  const PartSelection part{static_cast<int>(index), static_cast<int>(count)};
  part.validate(source);
  return part;
}

}  // namespace flame
