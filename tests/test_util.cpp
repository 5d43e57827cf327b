// Utilities: atomic writes, byte sizes, progress-line formatting, JSONL logs.
#include <gtest/gtest.h>

#include <cstdio>

#include "test_helpers.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"
#include "util/strings.h"

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

}  // namespace
}  // namespace flame
