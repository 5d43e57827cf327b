#include "data/image_source.h"

#include "data/tar_reader.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unordered_map>
#include <unordered_set>

#include "data/brace_expand.h"
#include "util/error.h"
#include "util/file.h"
#include "util/strings.h"

namespace flame::data {

namespace {

constexpr size_t kMaxExamples = 5;

// Compressed tars would need reading from the start for every image.
void refuse_compressed(int fd, const std::string& path) {
  unsigned char magic[6] = {0};
  const size_t got = pread_full(fd, reinterpret_cast<char*>(magic), sizeof(magic), 0);
  const auto starts = [&](std::initializer_list<unsigned char> bytes) {
    return got >= bytes.size() && std::equal(bytes.begin(), bytes.end(), magic);
  };
  if (starts({0x1f, 0x8b}) || starts({0x28, 0xb5, 0x2f, 0xfd}) || starts({'B', 'Z', 'h'}) ||
      starts({0xfd, '7', 'z', 'X', 'Z', 0x00})) {
    fail("image shard '{}' is compressed; images need random access, so decompress it to a plain .tar", path);
  }
}

void check_shard_path(const std::string& path) {
  if (!ends_with(lowercase(path), ".tar")) {
    fail("image input '{}' is neither a .tsv table nor a .tar shard (compressed tars are not supported)",
         path);
  }
  if (!fs::is_regular_file(path)) fail("image shard '{}' does not exist or is not a file", path);
}

// Opens a shard for the reader threads' preads; the descriptor joins `fds`
// (closed with the source) before anything can fail.
int open_shard(const std::string& path, std::vector<int>& fds) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open image shard '{}': {}", path, std::strerror(errno));
  fds.push_back(fd);
  return fd;
}

uint64_t shard_size(int fd, const std::string& path) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) fail("cannot stat image shard '{}': {}", path, std::strerror(errno));
  return static_cast<uint64_t>(info.st_size);
}

size_t column_index(const std::vector<std::string>& header, const std::string& name,
                    const std::string& spec) {
  const auto it = std::find(header.begin(), header.end(), name);
  if (it == header.end())
    fail("{}: no column '{}' in the header (columns: {})", spec, name, fmt::join(header, ", "));
  if (std::find(it + 1, header.end(), name) != header.end())
    fail("{}: the header names column '{}' twice", spec, name);
  return static_cast<size_t>(it - header.begin());
}

bool is_supported_image(const std::string& ext) {
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "webp";
}
bool is_other_image(const std::string& ext) {
  return ext == "gif" || ext == "bmp" || ext == "tif" || ext == "tiff";
}

std::vector<std::string> read_lines(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {} '{}': {}", what, path, std::strerror(errno));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (lines.empty() && starts_with(line, "\xEF\xBB\xBF")) line.erase(0, 3);
    lines.push_back(std::move(line));
  }
  if (in.bad()) fail("cannot read {} '{}'", what, path);
  return lines;
}

std::string examples(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxExamples; ++i) out += (i ? ", '" : "'") + names[i] + "'";
  return out;
}

}  // namespace

struct ImageSource::OpenFiles {
  std::vector<int> fds;
  ~OpenFiles() {
    for (int fd : fds) ::close(fd);
  }
};

ImageSource ImageSource::open(const std::string& spec, const ImageSourceOptions& options) {
  ImageSource source;
  if (ends_with(lowercase(spec), ".tsv")) {
    source.read_table(spec, options);
  } else {
    source.index_shards(spec);
  }
  if (!options.split_file.empty()) source.keep_split(options.split_file, spec);
  // Sizes are known (and missing files found) only once the split is applied,
  // so a split of a partly downloaded set still opens.
  if (!source.tar_) source.size_table_images(spec);
  if (source.records_.empty()) {
    fail("no images in '{}'{}", spec,
         options.split_file.empty() ? "" : fmt::format(" (after the split '{}')", options.split_file));
  }
  return source;
}

void ImageSource::read_table(const std::string& spec, const ImageSourceOptions& options) {
  const fs::path tsv(spec);
  const fs::path dir = options.image_dir.empty() ? tsv.parent_path() / "images" : fs::path(options.image_dir);
  const std::vector<std::string> lines = read_lines(spec, "image table");
  if (lines.empty()) fail("{}: empty TSV file, expected a header row", spec);
  const std::vector<std::string> header = split(lines[0], '\t');
  const size_t column = column_index(header, options.image_column, spec);
  std::unordered_set<std::string> seen;
  int64_t bad_rows = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const std::vector<std::string> cells = split(lines[i], '\t');
    // Rows repeat an image once per caption: the first occurrence makes the record.
    if (cells.size() != header.size() || trim(cells[column]).empty()) {
      ++bad_rows;
      continue;
    }
    const std::string& name = cells[column];  // untrimmed, as caption_source keys TSV rows
    if (!seen.insert(name).second) continue;
    files_.push_back((dir / name).string());
    records_.push_back(ImageRecord{name, static_cast<int32_t>(files_.size() - 1), 0, 0});
  }
  if (bad_rows > 0)
    spdlog::warn("{}: {} rows with a wrong column count or no image name were left out", spec, bad_rows);
}

void ImageSource::index_shards(const std::string& spec) {
  const std::vector<std::string> paths = expand_braces(spec);
  for (const auto& path : paths) check_shard_path(path);
  tar_ = true;
  auto open_files = std::make_shared<OpenFiles>();
  std::unordered_map<std::string, int64_t> index_of_key;
  const auto add = [&](ImageRecord record, const std::string& member) {
    const auto [it, inserted] = index_of_key.emplace(record.key, static_cast<int64_t>(records_.size()));
    records_.push_back(std::move(record));
    member_names_.push_back(member);
    if (!inserted) {
      fail("duplicate image key '{}': {} and {}", it->first, location(it->second), location(size() - 1));
    }
  };
  int64_t unsupported = 0;
  std::string unsupported_example;
  for (const auto& path : paths) {
    const int fd = open_shard(path, open_files->fds);
    files_.push_back(path);
    const auto file = static_cast<int32_t>(files_.size() - 1);
    const uint64_t bytes = shard_size(fd, path);
    refuse_compressed(fd, path);
    index_tar_members(fd, path, bytes, [&](const TarMemberLocation& member) {
      std::string key, ext;
      if (!split_member_path(member.path, &key, &ext) || key.empty() || key.back() == '/') return;
      if (is_other_image(ext) && unsupported++ == 0) unsupported_example = path + ":" + member.path;
      if (is_supported_image(ext)) add(ImageRecord{key, file, member.offset, member.size}, member.path);
    });
  }
  open_files_ = std::move(open_files);
  if (unsupported > 0) {
    spdlog::warn("{}: {} image members in formats other than JPEG, PNG and WebP were left out, e.g. {}", spec,
                 unsupported, unsupported_example);
  }
}

void ImageSource::keep_split(const std::string& split_file, const std::string& spec) {
  std::unordered_set<std::string> wanted;
  for (const auto& line : read_lines(split_file, "split file"))
    if (!trim(line).empty()) wanted.emplace(trim(line));
  std::vector<ImageRecord> kept;
  std::vector<std::string> kept_members;
  std::unordered_set<std::string> found;
  for (size_t i = 0; i < records_.size(); ++i) {
    if (wanted.count(records_[i].key) == 0) continue;
    found.insert(records_[i].key);
    kept.push_back(std::move(records_[i]));
    if (tar_) kept_members.push_back(std::move(member_names_[i]));
  }
  records_ = std::move(kept);
  member_names_ = std::move(kept_members);
  if (found.size() < wanted.size()) {
    std::vector<std::string> absent;
    for (const auto& key : wanted)
      if (found.count(key) == 0) absent.push_back(key);
    std::sort(absent.begin(), absent.end());
    spdlog::warn("{}: {} of its {} images are not in {}, e.g. {}", split_file, absent.size(), wanted.size(),
                 spec, examples(absent));
  }
}

void ImageSource::size_table_images(const std::string& spec) {
  std::vector<std::string> missing;
  for (auto& record : records_) {
    std::error_code ec;
    const auto size = fs::file_size(files_[record.file], ec);
    if (ec) {
      missing.push_back(files_[record.file]);
    } else {
      record.size = size;
    }
  }
  // All missing: a wrong folder, said now. Some missing: a web-scale listing
  // with holes; they stay listed and are skipped, counted and named as
  // unreadable images when the loader reaches them (--max-skip-fraction).
  if (!missing.empty() && missing.size() == records_.size()) {
    fail("none of the {} images listed in '{}' can be read, e.g. {} (is the image folder right?)",
         records_.size(), spec, examples(missing));
  }
  if (!missing.empty()) {
    spdlog::warn(
        "{} of the {} images listed in '{}' are missing or unreadable, e.g. {}: each is skipped when "
        "reached",
        missing.size(), records_.size(), spec, examples(missing));
  }
}

const ImageRecord& ImageSource::record(int64_t index) const {
  if (index < 0 || index >= size()) fail("image record {} out of range (the source has {})", index, size());
  return records_[static_cast<size_t>(index)];
}

std::string ImageSource::location(int64_t index) const {
  const ImageRecord& r = record(index);
  if (tar_) return files_[r.file] + ":" + member_names_[static_cast<size_t>(index)];
  return files_[r.file];
}

std::string ImageSource::read_bytes(int64_t index) const {
  const ImageRecord& r = record(index);
  if (!tar_) return read_file(files_[r.file]);
  std::string bytes(r.size, '\0');
  size_t got = 0;
  try {
    got = pread_full(open_files_->fds[r.file], bytes.data(), bytes.size(), r.offset);
  } catch (const Error& e) {
    fail("cannot read image '{}': {}", location(index), e.what());
  }
  if (got != bytes.size())
    fail("cannot read image '{}': the shard is shorter than when it was opened", location(index));
  return bytes;
}

}  // namespace flame::data
