#include "util/part_selection.h"

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
  const PartSelection part{j["index"].get<int>(), j["count"].get<int>()};
  part.validate(source);
  return part;
}

}  // namespace flame
