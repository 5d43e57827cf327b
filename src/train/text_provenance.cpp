#include "train/text_provenance.h"

#include <spdlog/spdlog.h>

#include "llm/checkpoint_identity.h"
#include "train/checkpoint.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::train {

nlohmann::json text_provenance_json(const std::vector<text::StoreIdentity>& stores) {
  nlohmann::json out = nlohmann::json::array();
  for (const text::StoreIdentity& identity : stores) out.push_back(text::identity_to_json(identity));
  return out;
}

TextProvenance read_text_provenance(const nlohmann::json& config, const std::string& source) {
  TextProvenance provenance;
  const auto it = config.find("text_stores");
  if (it == config.end()) return provenance;
  if (!it->is_array() || it->empty()) fail("{}: 'text_stores' must be a non-empty array", source);
  for (size_t i = 0; i < it->size(); ++i)
    provenance.stores.push_back(
        text::identity_from_json(it->at(i), fmt::format("{}: text_stores[{}]", source, i)));
  provenance.known = true;
  return provenance;
}

std::string prompt_set_for_role(const TextProvenance& provenance, const std::string& role) {
  for (const auto& store : provenance.stores) {
    if (store.prompt_set_name == role) return role;
    try {
      if (text::load_prompt_set(store.prompt_set_name).role == role) return store.prompt_set_name;
    } catch (const Error&) {
      // a prompt set given as a file that is not here any more: it cannot be used anyway
    }
  }
  return role;
}

const text::StoreIdentity* store_for_prompts(const TextProvenance& provenance, const std::string& name) {
  if (!provenance.known) return nullptr;
  for (const text::StoreIdentity& store : provenance.stores)
    if (store.prompt_set_name == name) return &store;
  return &provenance.stores.front();
}

std::string check_llm(const TextProvenance& provenance, const std::filesystem::path& llm_dir,
                      bool allow_mismatch, const std::string& model) {
  if (!provenance.known) return "";
  const nlohmann::json trained = provenance.stores.front().llm;
  const nlohmann::json identity = llm::checkpoint_identity(llm_dir).json;
  // Only the fields both name: stores written before the sampled fingerprint
  // carry a "weights_checksum" that cannot be recomputed here.
  nlohmann::json given = nlohmann::json::object(), recorded = nlohmann::json::object();
  for (const auto& [field, value] : identity.items()) {
    if (!trained.contains(field)) continue;
    given[field] = value;
    recorded[field] = trained.at(field);
  }
  const auto differences = text::llm_differences(recorded, given);
  if (differences.empty()) return "";
  std::string what;
  for (const auto& d : differences) {
    what +=
        fmt::format("{}{} {} (trained) vs {} (--llm)", what.empty() ? "" : "; ", d.field, d.first, d.second);
  }
  const std::string message =
      fmt::format("{} was trained against the LLM '{}', but --llm {} is another one: {}", model,
                  trained.value("name", std::string("?")), llm_dir.string(), what);
  if (!allow_mismatch) fail("{}; pass --allow-llm-mismatch to evaluate with it anyway", message);
  return message;
}

CheckedTextSide check_text_side(const std::filesystem::path& model, const std::filesystem::path& llm_dir,
                                bool allow_mismatch) {
  const std::filesystem::path config = resolve_checkpoint(model) / "config.json";
  CheckedTextSide out;
  out.provenance = read_text_provenance(read_json_file(config), config.string());
  if (!out.provenance.known) {
    out.warnings.push_back(fmt::format(
        "{} records no text side (written before checkpoints kept it): --llm and the layer are not checked, "
        "the default layer (L-1) is used",
        config.parent_path().string()));
  }
  const std::string mismatch =
      check_llm(out.provenance, llm_dir, allow_mismatch, config.parent_path().string());
  if (!mismatch.empty()) out.warnings.push_back(mismatch);
  for (const std::string& warning : out.warnings) spdlog::warn("{}", warning);
  return out;
}

}  // namespace flame::train
