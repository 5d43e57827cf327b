// Sequential reading of tar archives (plain or compressed) through libarchive.
// WebDataset shards are tar files read front to back, so only forward
// iteration over regular-file members is offered.
#pragma once

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
