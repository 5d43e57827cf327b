#include "data/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include "util/error.h"
#include "util/strings.h"

namespace flame::data {

bool split_member_path(const std::string& path, std::string* key, std::string* ext) {
  const size_t slash = path.rfind('/');
  const size_t dot = path.find('.', slash == std::string::npos ? 0 : slash + 1);
  if (dot == std::string::npos || dot + 1 == path.size()) return false;
  *key = path.substr(0, dot);
  *ext = lowercase(path.substr(dot + 1));
  return true;
}

namespace {

constexpr size_t kReadBlockSize = 1 << 16;

}  // namespace

TarReader::TarReader(const std::filesystem::path& path) : path_(path) {
  if (!std::filesystem::is_regular_file(path)) fail("cannot open '{}': no such file", path.string());
  archive_ = archive_read_new();
  if (archive_ == nullptr) fail("{}: cannot allocate an archive reader", path.string());
  archive_read_support_format_tar(archive_);
  archive_read_support_filter_all(archive_);  // .tar.gz, .tar.zst, ...
  if (archive_read_open_filename(archive_, path.c_str(), kReadBlockSize) != ARCHIVE_OK) {
    const std::string why = archive_error_string(archive_) ? archive_error_string(archive_) : "unknown error";
    archive_read_free(archive_);
    archive_ = nullptr;
    fail("cannot read tar file '{}': {}", path.string(), why);
  }
}

TarReader::~TarReader() {
  if (archive_ != nullptr) archive_read_free(archive_);
}

bool TarReader::next(TarMember* member, const std::function<bool(const std::string& path)>& wants_data) {
  while (true) {
    struct archive_entry* entry = nullptr;
    const int status = archive_read_next_header(archive_, &entry);
    if (status == ARCHIVE_EOF) return false;
    if (status < ARCHIVE_WARN) {
      const char* why = archive_error_string(archive_) ? archive_error_string(archive_) : "corrupt archive";
      if (last_member_.empty()) fail("cannot read tar file '{}': {}", path_.string(), why);
      fail("cannot read tar file '{}' after member '{}': {}", path_.string(), last_member_, why);
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    const char* name = archive_entry_pathname(entry);
    member->path = name != nullptr ? name : "";
    last_member_ = member->path;
    member->data.clear();
    if (wants_data && !wants_data(member->path)) {
      if (archive_read_data_skip(archive_) < ARCHIVE_WARN) {
        fail("cannot read member '{}' of tar file '{}': {}", member->path, path_.string(),
             archive_error_string(archive_) ? archive_error_string(archive_) : "corrupt archive");
      }
      return true;
    }
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) > 0) {
      member->data.reserve(static_cast<size_t>(archive_entry_size(entry)));
    }
    char buffer[kReadBlockSize];
    while (true) {
      const la_ssize_t n = archive_read_data(archive_, buffer, sizeof(buffer));
      if (n == 0) break;
      if (n < 0) {
        fail("cannot read member '{}' of tar file '{}': {}", member->path, path_.string(),
             archive_error_string(archive_) ? archive_error_string(archive_) : "corrupt archive");
      }
      member->data.append(buffer, static_cast<size_t>(n));
    }
    return true;
  }
}

}  // namespace flame::data
