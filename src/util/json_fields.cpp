#include "util/json_fields.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "util/error.h"

namespace flame {

void check_known_fields(const nlohmann::json& j, const std::vector<std::string>& known,
                        const std::string& source) {
  for (const auto& item : j.items()) {
    if (std::find(known.begin(), known.end(), item.key()) == known.end()) {
      fail("{}: unknown field '{}' (known fields: {})", source, item.key(), fmt::join(known, ", "));
    }
  }
}

int64_t json_int(const nlohmann::json& j, const char* key, const std::string& source, bool required,
                 int64_t fallback) {
  if (!j.contains(key)) {
    if (required) fail("{}: missing required field '{}'", source, key);
    return fallback;
  }
  const nlohmann::json& v = j.at(key);
  if (!v.is_number_integer()) fail("{}: field '{}' must be an integer, got {}", source, key, v.dump());
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail("{}: field '{}' is too large: {}", source, key, v.dump());
  return v.get<int64_t>();
}

uint64_t json_uint(const nlohmann::json& j, const char* key, const std::string& source, uint64_t fallback) {
  if (!j.contains(key)) return fallback;
  const nlohmann::json& v = j.at(key);
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
    fail("{}: field '{}' must be a non-negative integer, got {}", source, key, v.dump());
  return v.get<uint64_t>();
}

double json_finite_number(const nlohmann::json& j, const char* key, const std::string& source,
                          double fallback) {
  const double value = json_number(j, key, source, fallback);
  if (!std::isfinite(value))
    fail("{}: field '{}' must be a finite number, got {}", source, key, j.at(key).dump());
  return value;
}

double json_number(const nlohmann::json& j, const char* key, const std::string& source, double fallback) {
  if (!j.contains(key)) return fallback;
  const nlohmann::json& v = j.at(key);
  if (!v.is_number()) fail("{}: field '{}' must be a number, got {}", source, key, v.dump());
  return v.get<double>();
}

void require_positive(int64_t value, const char* key, const std::string& source) {
  if (value <= 0) fail("{}: field '{}' must be positive, got {}", source, key, value);
}

}  // namespace flame
