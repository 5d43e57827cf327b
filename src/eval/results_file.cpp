#include "eval/results_file.h"

#include <string>

#include "util/error.h"
#include "util/file.h"

namespace flame::eval {

namespace fs = std::filesystem;

EarlierResults read_results_for_resume(const fs::path& path) {
  const nlohmann::json earlier = read_json_file(path);
  const std::string hint = " (is it the results of flame eval? give another --out, or drop --resume)";
  if (!earlier.is_object() || !earlier.contains("config") || !earlier["config"].is_object())
    fail("--resume: {} has no \"config\" object{}", path.string(), hint);
  if (!earlier.contains("tasks") || !earlier["tasks"].is_array())
    fail("--resume: {} has no \"tasks\" list{}", path.string(), hint);
  EarlierResults r{earlier["config"], {}};
  for (size_t i = 0; i < earlier["tasks"].size(); ++i) {
    const nlohmann::json& t = earlier["tasks"][i];
    if (!t.is_object() || !t.contains("task") || !t["task"].is_object() || !t.contains("name") ||
        !t["name"].is_string())
      fail("--resume: {}: task result {} lacks its \"name\" or the \"task\" it ran{}", path.string(), i + 1,
           hint);
    r.tasks.push_back(t);
  }
  return r;
}

}  // namespace flame::eval
