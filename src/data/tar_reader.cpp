#include "data/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "util/error.h"
#include "util/file.h"
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
constexpr size_t kBlock = 512;

// A NUL-terminated (or full-width) header field.
std::string field(const char* block, size_t offset, size_t width) {
  const char* begin = block + offset;
  return std::string(begin, strnlen(begin, width));
}

// Header numbers are octal text, or base-256 when the first byte has its top
// bit set (GNU/star, for sizes of 8 GiB and more).
bool parse_number(const char* block, size_t offset, size_t width, uint64_t* value) {
  const auto* p = reinterpret_cast<const unsigned char*>(block + offset);
  *value = 0;
  if (p[0] & 0x80) {
    for (size_t i = 1; i < width; ++i) *value = (*value << 8) | p[i];
    return (p[0] & 0x7f) == 0;  // larger than 2^64 or negative: refuse
  }
  size_t i = 0;
  while (i < width && (p[i] == ' ' || p[i] == 0)) ++i;
  bool any = false;
  for (; i < width && p[i] >= '0' && p[i] <= '7'; ++i, any = true) *value = (*value << 3) | (p[i] - '0');
  for (; i < width; ++i)
    if (p[i] != ' ' && p[i] != 0) return false;
  return any;
}

// A pax extended header: records "LENGTH key=value\n". Only path and size
// matter for locating members.
void parse_pax(const std::string& data, std::string* path, uint64_t* size, const std::string& where) {
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t space = data.find(' ', pos);
    if (space == std::string::npos) break;
    const uint64_t length = std::strtoull(data.c_str() + pos, nullptr, 10);
    if (length == 0 || pos + length > data.size() || data[pos + length - 1] != '\n') {
      fail("{}: malformed pax extended header", where);
    }
    const std::string record = data.substr(space + 1, pos + length - 1 - (space + 1));
    const size_t eq = record.find('=');
    if (eq != std::string::npos) {
      const std::string key = record.substr(0, eq), value = record.substr(eq + 1);
      if (key == "path") *path = value;
      if (key == "size") *size = std::strtoull(value.c_str(), nullptr, 10);
    }
    pos += length;
  }
}

}  // namespace

void index_tar_members(int fd, const std::string& path, uint64_t file_size,
                       const std::function<void(const TarMemberLocation& member)>& on_member) {
  char block[kBlock];
  uint64_t offset = 0;
  std::string next_path;  // from a GNU long-name or pax header, for the next entry
  uint64_t next_size = UINT64_MAX;
  while (true) {
    const size_t got = pread_full(fd, block, kBlock, offset);
    if (got == 0) return;  // no end-of-archive blocks: tolerated, as tar does
    if (got < kBlock) fail("tar file '{}' is truncated at byte {}", path, offset);
    if (std::all_of(block, block + kBlock, [](char c) { return c == 0; })) return;
    uint64_t checksum = 0;
    if (!parse_number(block, 148, 8, &checksum))
      fail("'{}' is not a tar file (bad header at byte {})", path, offset);
    uint64_t sum = 0;
    for (size_t i = 0; i < kBlock; ++i)
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(block[i]);
    if (sum != checksum)
      fail("'{}' is not a tar file or is corrupt (header checksum at byte {})", path, offset);
    uint64_t size = 0;
    if (!parse_number(block, 124, 12, &size)) fail("tar file '{}': bad member size at byte {}", path, offset);
    const char type = block[156];
    std::string name = field(block, 0, 100);
    if (std::memcmp(block + 257, "ustar\0", 6) == 0) {  // POSIX: a prefix completes the name
      const std::string prefix = field(block, 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    const uint64_t data_offset = offset + kBlock;
    if (type == 'x' || type == 'L') {  // metadata for the next entry
      if (size > (64u << 20)) fail("tar file '{}': oversized extended header at byte {}", path, offset);
      std::string data(size, '\0');
      if (pread_full(fd, data.data(), size, data_offset) != size) {
        fail("tar file '{}' is truncated at byte {}", path, data_offset);
      }
      if (type == 'L') {
        next_path = data.substr(0, strnlen(data.c_str(), data.size()));
      } else {
        parse_pax(data, &next_path, &next_size, fmt::format("tar file '{}' at byte {}", path, offset));
      }
    } else {
      if (!next_path.empty()) name = next_path;
      if (next_size != UINT64_MAX) size = next_size;
      next_path.clear();
      next_size = UINT64_MAX;
      if (type == '0' || type == '\0' || type == '7') {
        if (data_offset + size > file_size) {
          fail("tar file '{}' is truncated: member '{}' needs {} bytes, the file ends first", path, name,
               size);
        }
        on_member(TarMemberLocation{name, data_offset, size});
      }
    }
    offset = data_offset + (size + kBlock - 1) / kBlock * kBlock;
  }
}

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

namespace {
constexpr la_int64_t kMaxReserve = 16 << 20;  // larger members grow as they are read
}  // namespace

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
    // The header's size is a hint, not a promise: a corrupt one (found by
    // fuzzing: 4 GB in a 1 KB file) must not allocate before the bytes are there.
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) > 0) {
      member->data.reserve(static_cast<size_t>(std::min<la_int64_t>(archive_entry_size(entry), kMaxReserve)));
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
