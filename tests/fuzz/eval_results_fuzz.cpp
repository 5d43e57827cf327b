// A results file of flame eval as --resume reads it back before trusting any
// of its task results: the "config" object and every finished task's entry.
#include "eval/results_file.h"
#include "fuzz_targets.h"
#include "util/error.h"

namespace flame::fuzz {

bool eval_results(const uint8_t* data, size_t size) {
  try {
    const eval::EarlierResults r = eval::read_results_for_resume(input_file(data, size, "results.json"));
    if (!r.config.is_object()) __builtin_trap();
    for (const auto& t : r.tasks)
      if (!t.is_object() || !t["task"].is_object() || !t["name"].is_string()) __builtin_trap();
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(eval_results)
