// Typed reads of a JSON config object's fields, with errors that name the
// source file and the field (shared by the model and text tower configs).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace flame {

// Throws for a key not in `known`, listing the known fields.
void check_known_fields(const nlohmann::json& j, const std::vector<std::string>& known,
                        const std::string& source);

// An integer field; absent: an error when `required`, else `fallback`.
int64_t json_int(const nlohmann::json& j, const char* key, const std::string& source, bool required,
                 int64_t fallback);

// A non-negative integer field (a seed, a count): -1 or 1.5 is refused, not
// wrapped or truncated; absent: `fallback`.
uint64_t json_uint(const nlohmann::json& j, const char* key, const std::string& source, uint64_t fallback);

// A finite number field (NaN or inf, written as a string or 1e999, refused);
// absent: `fallback`.
double json_finite_number(const nlohmann::json& j, const char* key, const std::string& source,
                          double fallback);

// A number field (integer or not); absent: `fallback`.
double json_number(const nlohmann::json& j, const char* key, const std::string& source, double fallback);

void require_positive(int64_t value, const char* key, const std::string& source);

}  // namespace flame
