// A results file of flame eval as --resume reads it back, apart from the
// evaluation itself (no LibTorch: the fuzz target links it alone).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <vector>

namespace flame::eval {

// A results file as --resume reads it: its "config" object and its finished
// task results, each an object with the "task" it ran. Throws flame::Error
// naming the file (and the entry) for anything else.
struct EarlierResults {
  nlohmann::json config;
  std::vector<nlohmann::json> tasks;
};
EarlierResults read_results_for_resume(const std::filesystem::path& path);

}  // namespace flame::eval
