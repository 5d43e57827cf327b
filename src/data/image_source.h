// Training images as a list of keyed records with random access, from either
//  (a) WebDataset tar shards ("data-{0000..0099}.tar"): members KEY.jpg,
//      KEY.jpeg, KEY.png or KEY.webp, the key being the member path up to the first dot
//      of its file name, as WebDataset (and caption_source) splits it; or
//  (b) a TSV table with an image-name column (header row) plus the folder of
//      the images: key = the image name, as `flame embed` keys TSV captions.
// An optional split file (one image name per line) keeps only those keys.
//
// Tar shards are indexed once at open (data::index_tar_members: header blocks
// only, the image data is not read) and members are then read with pread on
// one shared descriptor per shard, so any number of loader threads can read at
// once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace flame::data {

struct ImageSourceOptions {
  // TSV: the folder holding the images; empty: "images" beside the TSV file.
  std::string image_dir;
  std::string image_column = "image";
  // Optional: a file with one key (image name) per line; only those images are kept.
  std::string split_file;
};

struct ImageRecord {
  std::string key;
  int32_t file = 0;     // index into ImageSource::files()
  uint64_t offset = 0;  // tar: where the member's data starts; folder: 0
  uint64_t size = 0;    // bytes
};

class ImageSource {
 public:
  // `spec` is a TSV file (".tsv"), or a tar pattern expanding to ".tar"
  // files. Throws flame::Error naming the file when an input is missing,
  // unreadable or compressed (".tar.gz" allows no random access), when a key
  // appears twice (naming both locations), when listed images are missing,
  // or when nothing is left.
  static ImageSource open(const std::string& spec, const ImageSourceOptions& options = {});

  int64_t size() const { return static_cast<int64_t>(records_.size()); }
  const ImageRecord& record(int64_t index) const;
  const std::vector<ImageRecord>& records() const { return records_; }
  const std::vector<std::string>& files() const { return files_; }
  bool is_tar() const { return tar_; }
  // "shard.tar:member.jpg" or the image's path, for messages.
  std::string location(int64_t index) const;

  // The record's encoded bytes. Thread-safe. Throws naming the location when
  // the file cannot be read or is shorter than indexed.
  std::string read_bytes(int64_t index) const;

 private:
  struct OpenFiles;  // the shards' descriptors, closed with the last copy
  // The steps of open().
  void read_table(const std::string& spec, const ImageSourceOptions& options);
  void index_shards(const std::string& spec);
  void keep_split(const std::string& split_file, const std::string& spec);
  void size_table_images(const std::string& spec);

  std::vector<std::string> files_;
  std::vector<ImageRecord> records_;
  std::vector<std::string> member_names_;  // tar: the member path of each record
  std::shared_ptr<const OpenFiles> open_files_;
  bool tar_ = false;
};

}  // namespace flame::data
