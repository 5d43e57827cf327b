#include "llm/checkpoint_identity.h"

#include <openssl/evp.h>

#include <algorithm>
#include <memory>

#include "llm/config.h"
#include "llm/weights.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"

namespace flame::llm {

namespace {

// Incremental SHA-256 (util/hash.h hashes whole buffers or files only).
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
      fail("SHA-256: cannot initialise");
  }
  void add(const void* data, size_t size) {
    if (EVP_DigestUpdate(ctx_.get(), data, size) != 1) fail("SHA-256: update failed");
    bytes_ += size;
  }
  void add(const std::string& text) { add(text.data(), text.size()); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), digest, &size) != 1) fail("SHA-256: final failed");
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < size; ++i) {
      out += digits[digest[i] >> 4];
      out += digits[digest[i] & 15];
    }
    return out;
  }
  uint64_t bytes() const { return bytes_; }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
  uint64_t bytes_ = 0;
};

// One weight file: name, size, header, then the evenly spaced data samples.
void add_weight_file(Sha256& hash, const SafetensorsFile& file) {
  const MappedFile& map = *file.mapping();
  const uint64_t data_start = file.header().data_start, size = map.size();
  hash.add(file.path().filename().string() + "\n" + std::to_string(size) + "\n");
  hash.add(map.data(), static_cast<size_t>(data_start));  // length prefix + JSON header
  const uint64_t data_bytes = size - data_start;
  if (data_bytes <= kSamplesPerFile * kSampleBytes) {
    hash.add(map.data() + data_start, static_cast<size_t>(data_bytes));
    return;
  }
  const uint64_t last = data_bytes - kSampleBytes;
  for (int i = 0; i < kSamplesPerFile; ++i) {
    const uint64_t offset = last * static_cast<uint64_t>(i) / (kSamplesPerFile - 1);
    hash.add(map.data() + data_start + offset, static_cast<size_t>(kSampleBytes));
  }
}

}  // namespace

CheckpointIdentity checkpoint_identity(const std::filesystem::path& llm_dir) {
  const LlmConfig config = load_llm_config(llm_dir);
  const WeightFiles weights(llm_dir);
  std::vector<const SafetensorsFile*> files;
  for (const auto& f : weights.files()) files.push_back(f.get());
  std::sort(files.begin(), files.end(),
            [](const SafetensorsFile* a, const SafetensorsFile* b) { return a->path() < b->path(); });
  Sha256 hash;
  for (const SafetensorsFile* f : files) add_weight_file(hash, *f);

  const std::string config_text = read_file(llm_dir / "config.json");
  CheckpointIdentity id;
  id.bytes_hashed = hash.bytes() + config_text.size();
  id.json = {{"name", std::filesystem::weakly_canonical(llm_dir).filename().string()},
             {"architecture", config.architecture_name},
             {"config_sha256", sha256_hex(config_text)},
             {"weights_fingerprint", "sampled-v1:" + hash.hex()}};
  return id;
}

}  // namespace flame::llm
