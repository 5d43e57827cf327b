#include "util/hash.h"

#include <openssl/evp.h>

#include <memory>

#include "util/error.h"
#include "util/file.h"

namespace flame {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) fail("SHA-256 is unavailable");
}

void Sha256::update(const void* data, size_t size) {
  EVP_DigestUpdate(ctx_.get(), data, size);
}

std::string Sha256::hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_.get(), digest, &n);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(digits[digest[i] >> 4]);
    out.push_back(digits[digest[i] & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.hex();
}

std::string sha256_file_hex(const std::filesystem::path& path) {
  const MappedFile map(path);
  Sha256 h;
  h.update(map.data(), map.size());
  return h.hex();
}

uint64_t hash_evenly_spaced(Sha256& hash, const uint8_t* data, uint64_t size, int samples,
                            uint64_t sample_bytes) {
  if (size <= static_cast<uint64_t>(samples) * sample_bytes) {
    hash.update(data, static_cast<size_t>(size));
    return size;
  }
  const uint64_t last = size - sample_bytes;
  for (int i = 0; i < samples; ++i) {
    const uint64_t offset = last * static_cast<uint64_t>(i) / static_cast<uint64_t>(samples - 1);
    hash.update(data + offset, static_cast<size_t>(sample_bytes));
  }
  return static_cast<uint64_t>(samples) * sample_bytes;
}

}  // namespace flame
