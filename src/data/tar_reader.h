// Tar archives, the WebDataset shard format, read two ways:
//  - TarReader: sequential reading through libarchive (plain or compressed),
//    for captions, which are read front to back;
//  - index_tar_members: where each member's data lies in an uncompressed tar,
//    for images, which the loader reads in random order from many threads.
// Why a second walker beside libarchive: libarchive streams a member's bytes
// through one archive handle and reports neither where they lie in the file
// nor how to read them again later, so random access would mean reading the
// shard from the start (or one handle per thread, read up to the member) for
// every image. Walking the 512-byte header blocks once (ustar, pax and GNU
// long names; data skipped) gives each member's offset and size, and then any
// thread reads any image with one pread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

struct archive;

namespace flame::data {

struct TarMember {
  std::string path;  // as stored in the archive, e.g. "shard0/000123.txt"
  std::string data;  // the whole contents
};

// WebDataset's split of a member path into KEY and extension: KEY is the path
// up to the first dot of the file name ("shard0/000123.seg.png" -> key
// "shard0/000123", ext "seg.png", lowercased). False when there is no
// extension. Caption and image readers split alike, so their keys match.
bool split_member_path(const std::string& path, std::string* key, std::string* ext);

// Where a regular-file member's bytes lie in an uncompressed tar file.
struct TarMemberLocation {
  std::string path;     // as stored (pax or GNU long names applied)
  uint64_t offset = 0;  // first data byte in the file
  uint64_t size = 0;    // bytes
};

// Walks the ustar/pax/GNU headers of the uncompressed tar open as `fd`
// (`file_size` bytes; `path` for messages) and calls `on_member` for each
// regular file, in archive order. Member data is skipped, not read. A missing
// end-of-archive marker is tolerated, as tar does. Throws flame::Error naming
// the file when it is not a tar, a header is corrupt or the file is truncated.
void index_tar_members(int fd, const std::string& path, uint64_t file_size,
                       const std::function<void(const TarMemberLocation& member)>& on_member);

class TarReader {
 public:
  // Opens the archive; throws flame::Error naming the file if it cannot be
  // opened or is not an archive.
  explicit TarReader(const std::filesystem::path& path);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // Reads the next regular-file member (directories, links and other entries
  // are skipped). Returns false at the end of the archive. When `wants_data`
  // is given and returns false for the member's path, its bytes are skipped
  // and `data` is left empty (images need not be copied to read captions).
  // Throws flame::Error naming the file and member when the archive is
  // truncated or corrupt.
  bool next(TarMember* member, const std::function<bool(const std::string& path)>& wants_data = nullptr);

 private:
  std::filesystem::path path_;
  struct archive* archive_ = nullptr;
  std::string last_member_;  // for error messages
};

}  // namespace flame::data
