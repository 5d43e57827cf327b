#include "llm/checkpoint_identity.h"

#include <algorithm>
#include <memory>

#include "llm/config.h"
#include "llm/gguf_model.h"
#include "llm/weights.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"

namespace flame::llm {

namespace {

// One weight file: name, size, header (bytes [0, data_start)), then the evenly
// spaced data samples. Returns the bytes hashed.
uint64_t add_weight_file(Sha256& hash, const std::filesystem::path& path, const MappedFile& map,
                         uint64_t data_start) {
  const uint64_t size = map.size();
  const std::string name_and_size = path.filename().string() + "\n" + std::to_string(size) + "\n";
  hash.update(name_and_size);
  hash.update(map.data(), static_cast<size_t>(data_start));
  return name_and_size.size() + data_start +
         hash_evenly_spaced(hash, map.data() + data_start, size - data_start, kSamplesPerFile, kSampleBytes);
}

// A GGUF file is its own config: its metadata (the header) stands for config.json.
CheckpointIdentity gguf_identity(const std::filesystem::path& path) {
  const GgufWeights weights(path);
  Sha256 hash;
  CheckpointIdentity id;
  id.bytes_hashed = add_weight_file(hash, path, weights.mapping(), weights.file().data_offset);
  const auto* header = weights.mapping().data();
  id.json = {{"name", path.filename().string()},
             {"architecture", weights.config().architecture_name},
             {"config_sha256", sha256_hex(std::string_view(reinterpret_cast<const char*>(header),
                                                           weights.file().data_offset))},
             {"weights_fingerprint", "sampled-v1:" + hash.hex()}};
  return id;
}

}  // namespace

CheckpointIdentity checkpoint_identity(const std::filesystem::path& llm_dir) {
  if (is_gguf_file(llm_dir)) return gguf_identity(llm_dir);
  const LlmConfig config = load_llm_config(llm_dir);
  const WeightFiles weights(llm_dir);
  std::vector<const SafetensorsFile*> files;
  for (const auto& f : weights.files()) files.push_back(f.get());
  std::sort(files.begin(), files.end(),
            [](const SafetensorsFile* a, const SafetensorsFile* b) { return a->path() < b->path(); });
  Sha256 hash;
  uint64_t hashed = 0;
  for (const SafetensorsFile* f : files)
    hashed += add_weight_file(hash, f->path(), *f->mapping(), f->header().data_start);

  const std::string config_text = read_file(llm_dir / "config.json");
  CheckpointIdentity id;
  id.bytes_hashed = hashed + config_text.size();
  id.json = {{"name", std::filesystem::weakly_canonical(llm_dir).filename().string()},
             {"architecture", config.architecture_name},
             {"config_sha256", sha256_hex(config_text)},
             {"weights_fingerprint", "sampled-v1:" + hash.hex()}};
  return id;
}

}  // namespace flame::llm
