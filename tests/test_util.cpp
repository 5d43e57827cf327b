// Utilities: atomic writes, byte sizes, progress-line formatting, JSONL logs,
// UTF-8.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "test_helpers.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json_fields.h"
#include "util/progress.h"
#include "util/strings.h"
#include "util/utf8.h"

namespace flame {
namespace {

TEST(Util, AtomicWriteReplacesWholeFileAndLeavesNoTemp) {
  const auto dir = test::fresh_temp_dir();
  write_file_atomic(dir / "a.txt", "first version, long");
  write_file_atomic(dir / "a.txt", "second");
  EXPECT_EQ(read_file(dir / "a.txt"), "second");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
  EXPECT_THROW(read_file(dir / "missing.txt"), Error);
}

size_t entries(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += !e.path().empty();
  return n;
}

// A write that cannot finish (the target is a directory) leaves no temp file;
// check_output_file finds such problems before a long job, leaving nothing.
TEST(Util, OutputChecksComeFirstAndFailedWritesLeaveNothing) {
  const auto dir = test::fresh_temp_dir();
  fs::create_directories(dir / "taken");
  EXPECT_TRUE(test::contains(test::error_of([&] { write_file_atomic(dir / "taken", "x"); }), "taken"));
  EXPECT_EQ(entries(dir), 1u);  // only the directory: no ".taken.tmp..." left
  EXPECT_TRUE(test::contains(test::error_of([&] { check_output_file(dir / "taken", "--out"); }),
                             "--out '" + (dir / "taken").string() + "' is a directory"));
  const std::string no_folder =
      test::error_of([&] { check_output_file("/proc/flame-test/r.json", "--out"); });
  EXPECT_TRUE(test::contains(no_folder, "--out '/proc/flame-test/r.json': cannot create the folder"))
      << no_folder;
  const std::string read_only = test::error_of([&] { check_output_file("/proc/version.json", "--out"); });
  EXPECT_TRUE(test::contains(read_only, "--out '/proc/version.json' cannot be written")) << read_only;
  check_output_file(dir / "new" / "results.json", "--out");  // creatable: fine, nothing written
  EXPECT_TRUE(fs::is_directory(dir / "new"));
  EXPECT_EQ(entries(dir / "new"), 0u);
}

// The rename of an atomic write replaces whatever is at the path: a FIFO or a
// device given as --out is refused and left as it was (as root, `llm embed
// --out /dev/full` replaced the device by a regular file and printed "wrote").
TEST(Util, AWriteNeverReplacesADeviceOrFifo) {
  const auto dir = test::fresh_temp_dir();
  const fs::path fifo = dir / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  EXPECT_TRUE(test::contains(test::error_of([&] { write_file_atomic(fifo, "x"); }), "not a regular file"));
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_TRUE(test::contains(test::error_of([&] { check_output_file(fifo, "--out"); }),
                             "--out '" + fifo.string() + "' is not a regular file"));
  EXPECT_TRUE(
      test::contains(test::error_of([&] { check_output_file("/dev/null", "--out"); }), "not a regular file"));
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  EXPECT_EQ(entries(dir), 1u);  // no temp file beside the FIFO
}

// A folder replaced as a whole: the new content appears at once, nothing of the
// old one is left, and the staged name is gone; a file in the way is refused.
TEST(Util, ReplaceDirPutsTheWholeNewFolderInPlace) {
  const auto dir = test::fresh_temp_dir();
  const fs::path target = dir / "export", staged = temp_path_for(target);
  fs::create_directories(staged);
  write_file_atomic(staged / "a", "first");
  replace_dir_durable(staged, target);  // target did not exist: a rename
  EXPECT_EQ(read_file(target / "a"), "first");
  EXPECT_FALSE(fs::exists(staged));
  fs::create_directories(staged);
  write_file_atomic(staged / "b", "second");
  replace_dir_durable(staged, target);
  EXPECT_FALSE(fs::exists(target / "a"));  // nothing of the old folder
  EXPECT_EQ(read_file(target / "b"), "second");
  EXPECT_FALSE(fs::exists(staged));
  write_file_atomic(dir / "file", "x");
  fs::create_directories(staged);
  EXPECT_TRUE(
      test::contains(test::error_of([&] { replace_dir_durable(staged, dir / "file"); }), "not a folder"));
  EXPECT_EQ(read_file(dir / "file"), "x");
}

// Strict JSON numbers: -1 is not a seed, 1.5 is not a count, NaN/inf and
// integers beyond int64 are refused naming the file and field.
TEST(Util, JsonNumbersAreReadStrictly) {
  const auto j = nlohmann::json::parse(
      R"({"seed": -1, "half": 1.5, "big": 18446744073709551615, "ok": 7, "inf": "inf", "x": 0.25})");
  EXPECT_EQ(json_uint(j, "ok", "f.json", 0), 7u);
  EXPECT_EQ(json_uint(j, "absent", "f.json", 3), 3u);
  EXPECT_TRUE(test::contains(test::error_of([&] { json_uint(j, "seed", "f.json", 0); }),
                             "f.json: field 'seed' must be a non-negative integer, got -1"));
  EXPECT_TRUE(test::contains(test::error_of([&] { json_uint(j, "half", "f.json", 0); }), "got 1.5"));
  EXPECT_TRUE(test::contains(test::error_of([&] { json_int(j, "big", "f.json", true, 0); }), "too large"));
  EXPECT_TRUE(test::contains(test::error_of([&] { json_int(j, "half", "f.json", true, 0); }), "integer"));
  EXPECT_EQ(json_finite_number(j, "x", "f.json", 0), 0.25);
  EXPECT_TRUE(test::contains(test::error_of([&] { json_finite_number(j, "inf", "f.json", 0); }), "'inf'"));
  const auto nan = nlohmann::json{{"lr", std::nan("")}};
  EXPECT_TRUE(test::contains(test::error_of([&] { json_finite_number(nan, "lr", "f.json", 0); }), "finite"));
}

// A lock on a sibling file, for a folder that is replaced as a whole.
TEST(Util, ASiblingLockFileLocksAFolderReplacedWhole) {
  const auto dir = test::fresh_temp_dir();
  DirectoryLock first(dir, "the export", ".out.lock");
  EXPECT_TRUE(fs::exists(dir / ".out.lock"));
  EXPECT_TRUE(test::contains(test::error_of([&] { DirectoryLock second(dir, "the export", ".out.lock"); }),
                             "the export is in use by pid"));
  DirectoryLock other(dir, "another export", ".other.lock");  // another name: another lock
}

// One writer per folder: a second lock fails naming the holder; the lock goes
// with its owner.
TEST(Util, DirectoryLockNamesTheHolder) {
  const auto dir = test::fresh_temp_dir();
  auto first = std::make_unique<DirectoryLock>(dir / "run", "the run folder");
  const std::string message = test::error_of([&] { DirectoryLock second(dir / "run", "the run folder"); });
  EXPECT_TRUE(test::contains(message, fmt::format("the run folder is in use by pid {} on host", ::getpid())))
      << message;
  EXPECT_TRUE(test::contains(message, (dir / "run" / ".lock").string())) << message;
  first.reset();
  DirectoryLock again(dir / "run", "the run folder");
}

TEST(Util, ParsesByteSizes) {
  EXPECT_EQ(parse_byte_size("512"), 512u);
  EXPECT_EQ(parse_byte_size("100MB"), 100'000'000u);
  EXPECT_EQ(parse_byte_size("1.5GiB"), 1610612736u);
  EXPECT_EQ(parse_byte_size("2kb"), 2000u);
  EXPECT_THROW(parse_byte_size("12 parsecs"), Error);
  EXPECT_THROW(parse_byte_size("MB"), Error);
}

TEST(Util, ProgressLineShowsRateAndEta) {
  EXPECT_EQ(ProgressBar::format_duration(59.4), "0:59");
  EXPECT_EQ(ProgressBar::format_duration(3725), "1:02:05");
  char buffer[4096] = {};
  FILE* out = fmemopen(buffer, sizeof(buffer), "w");
  {
    ProgressBar bar("embed", 10, "captions", out);
    bar.set_extra_unit("tok");
    bar.advance(4, 100);
    bar.finish();
  }
  std::fclose(out);
  const std::string line(buffer);
  EXPECT_NE(line.find("embed: 4/10 captions ( 40.0%)"), std::string::npos) << line;
  EXPECT_NE(line.find("captions/s"), std::string::npos) << line;
  EXPECT_NE(line.find("tok/s"), std::string::npos) << line;
}

TEST(Util, JsonlWriterAppendsOneObjectPerLine) {
  const auto path = test::fresh_temp_dir() / "log.jsonl";
  {
    JsonlWriter log(path);
    log.write({{"step", 1}, {"loss", 2.5}});
  }
  {
    JsonlWriter log(path);  // appends, as a resumed job does
    log.write({{"step", 2}});
  }
  const auto lines = split(read_file(path), '\n');
  ASSERT_EQ(lines.size(), 3u);  // two records and the final empty field
  EXPECT_EQ(nlohmann::json::parse(lines[0])["loss"], 2.5);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["step"], 2);
}

TEST(Utf8, Validation) {
  size_t bad = 99;
  EXPECT_TRUE(utf8::is_valid("plain ascii"));
  EXPECT_TRUE(utf8::is_valid("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));  // é € 😀
  EXPECT_FALSE(utf8::is_valid("ab\xC3", &bad));                              // truncated sequence
  EXPECT_EQ(bad, 2u);
  EXPECT_FALSE(utf8::is_valid("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(utf8::is_valid("\xE0\x80\xAF"));      // overlong, 3 bytes
  EXPECT_FALSE(utf8::is_valid("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(utf8::is_valid("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(utf8::is_valid("\xFF"));
  EXPECT_FALSE(utf8::is_valid("x\x80y", &bad));  // lone continuation byte
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(utf8::sanitize("a\xFF"
                           "b"),
            "a\xEF\xBF\xBD"
            "b");
}

std::string hex_of(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

// The rule is Python's: these expected values are b.decode("utf-8",
// "replace").encode() computed by Python 3 (each maximal subpart of an
// ill-formed sequence becomes one U+FFFD; truncated sequences take one).
TEST(Utf8, ReplacesEachMaximalSubpartAsPythonDoes) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a\xFF"
       "b",
       "a\xEF\xBF\xBD"
       "b"},
      {"\x80", "\xEF\xBF\xBD"},
      {"\xC3", "\xEF\xBF\xBD"},
      {"ab\xC3", "ab\xEF\xBF\xBD"},
      {"\xE2\x82", "\xEF\xBF\xBD"},
      {"\xE2\x82x", "\xEF\xBF\xBDx"},
      {"\xF0\x9F\x98", "\xEF\xBF\xBD"},
      {"\xF0\x9F\x98x", "\xEF\xBF\xBDx"},
      {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xC1\xBF", "\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xE0\x80\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xE0\x9F\xBF", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xED\x9F\xBF", "\xED\x9F\xBF"},
      {"\xF0\x80\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xF0\x8F\xBF\xBF", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xF5\x80\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xF8\x88\x80\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xFE\xFF", "\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\x80\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xE1\x80\xE2\xF0\x91\x92\xF1\xBF"
       "A",
       "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
       "A"},
      {"\xF1\x80\x80\xE1\x80\xC2", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"caf\xE9", "caf\xEF\xBF\xBD"},
      {"\xEF\xBF\xBD", "\xEF\xBF\xBD"},
      {"\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF"},
      {"\xE0\xA0", "\xEF\xBF\xBD"},
      {"\xED\xA0", "\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xF0\x90", "\xEF\xBF\xBD"},
      {"\xF4\x90", "\xEF\xBF\xBD\xEF\xBF\xBD"},
  };
  for (const auto& [bytes, expected] : cases) {
    EXPECT_EQ(utf8::sanitize(bytes), expected) << hex_of(bytes);
    // Decoding to code points follows the same rule.
    EXPECT_EQ(utf8::encode(utf8::code_points(bytes)), expected) << hex_of(bytes);
    EXPECT_EQ(utf8::is_valid(bytes), bytes == expected) << hex_of(bytes);
  }
}

TEST(Utf8, DecodesCodePoints) {
  // Python: [hex(ord(c)) for c in b"a\xe2\x82x\xf0\x9f\x98\x80".decode("utf-8", "replace")]
  EXPECT_EQ(utf8::code_points("a\xE2\x82x\xF0\x9F\x98\x80"),
            std::vector<uint32_t>({0x61, 0xFFFD, 0x78, 0x1F600}));
  EXPECT_EQ(utf8::code_points("\xC0\xAF\xED\xA0\x80"), std::vector<uint32_t>(5, 0xFFFD));
  EXPECT_EQ(utf8::char_length("\xE2\x82x", 0), 2u);
  EXPECT_EQ(utf8::char_length("\xF0\x9F\x98\x80", 0), 4u);
  EXPECT_EQ(utf8::char_length("\xFF", 0), 1u);
  EXPECT_EQ(utf8::char_start("a\xE2\x82\xAC", 3), 1u);
  EXPECT_EQ(utf8::char_start("a\xE2\x82\xAC", 3, 2), 2u);
  EXPECT_EQ(utf8::char_start("a\xE2\x82\xAC", 0), 0u);
  EXPECT_EQ(utf8::encode({0x24, 0xE9, 0x20AC, 0x1F600}), "$\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}

TEST(Utf8, DropsOnlyAnIncompleteTail) {
  const auto dropped = [](std::string s) {
    utf8::drop_incomplete_tail(s);
    return s;
  };
  EXPECT_EQ(dropped("ab\xE2\x82"), "ab");
  EXPECT_EQ(dropped("ab\xF0\x9F\x98"), "ab");
  EXPECT_EQ(dropped("ab\xC3"), "ab");
  EXPECT_EQ(dropped("ab\xE2\x82\xAC"), "ab\xE2\x82\xAC");  // complete
  EXPECT_EQ(dropped("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(dropped("ab\x80"), "ab\x80");          // ill-formed, not cut short: kept
  EXPECT_EQ(dropped("ab\xC0"), "ab\xC0");          // C0 starts no well-formed sequence
  EXPECT_EQ(dropped("ab\xE0\x80"), "ab\xE0\x80");  // overlong, not incomplete
  EXPECT_EQ(dropped(""), "");
}

// PyPI's LibTorch exports its own std::filesystem, which crashed on removing a
// non-empty folder when it won the symbol binding (CMakeLists.txt links
// Debian's libstdc++ first): the folder removals of --overwrite and the tests.
TEST(Util, RemoveAllOfANonEmptyFolderUsesDebiansLibstdcxx) {
  const auto dir = test::fresh_temp_dir();
  std::filesystem::create_directories(dir / "a" / "b");
  write_file_atomic(dir / "a" / "b" / "file", "x");
  write_file_atomic(dir / "a" / "top", "y");
  EXPECT_EQ(std::filesystem::remove_all(dir / "a"), 4u);
  EXPECT_FALSE(std::filesystem::exists(dir / "a"));
}

}  // namespace
}  // namespace flame
