// Caption inputs: JSONL, WebDataset tar and TSV files made in the test (and
// the shared Flickr8k table) read into keyed records; bad records reported,
// never dropped silently; brace patterns; a stable split for scale-out.
#include <gtest/gtest.h>

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "data/brace_expand.h"
#include "data/caption_source.h"
#include "tar_writer.h"
#include "test_helpers.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::data {
namespace {

using test::error_of;
using test::fresh_temp_dir;
using test::write_tar;
using Strings = std::vector<std::string>;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

Strings keys_of(const std::vector<CaptionRecord>& records) {
  Strings keys;
  for (const auto& r : records) keys.push_back(r.key);
  return keys;
}

const InputProblem* problem_for(const CaptionInput& input, const std::string& key) {
  for (const auto& p : input.problems)
    if (p.key == key) return &p;
  return nullptr;
}

TEST(CaptionSource, BraceExpansion) {
  EXPECT_EQ(expand_braces("data-{0000..0003}.tar"),
            Strings({"data-0000.tar", "data-0001.tar", "data-0002.tar", "data-0003.tar"}));
  EXPECT_EQ(expand_braces("{train,val}.jsonl"), Strings({"train.jsonl", "val.jsonl"}));
  EXPECT_EQ(expand_braces("{a,b}-{1..2}"), Strings({"a-1", "a-2", "b-1", "b-2"}));
  EXPECT_EQ(expand_braces("x{a,b{1,2}}y"), Strings({"xay", "xb1y", "xb2y"}));
  EXPECT_EQ(expand_braces("{3..1}"), Strings({"3", "2", "1"}));
  EXPECT_EQ(expand_braces("{8..10}"), Strings({"8", "9", "10"}));
  EXPECT_EQ(expand_braces("{08..10}"), Strings({"08", "09", "10"}));
  EXPECT_EQ(expand_braces("{-1..1}"), Strings({"-1", "0", "1"}));
  EXPECT_EQ(expand_braces("s3.tar"), Strings({"s3.tar"}));
  // Not a list or range, or unbalanced: kept as written.
  EXPECT_EQ(expand_braces("{x}/{a..b}/}{"), Strings({"{x}/{a..b}/}{"}));
  EXPECT_EQ(expand_braces("{x}-{1,2}"), Strings({"{x}-1", "{x}-2"}));
  EXPECT_EQ(expand_braces("a{,b}"), Strings({"a", "ab"}));
  EXPECT_EQ(expand_braces("d-{0..99999}.tar").size(), 100000u);
  EXPECT_THROW(expand_braces("{0..99999999}"), Error);
}

TEST(CaptionSource, ReadsJsonl) {
  const auto dir = fresh_temp_dir();
  const auto path = (dir / "caps.jsonl").string();
  write_text(
      path,
      "\xEF\xBB\xBF"  // a byte order mark is dropped
      "{\"key\": \"b\", \"long\": \"a long one\", \"short\": \"short\", \"raw\": \"raw text\", \"n\": 3}\n"
      "\n"
      "{\"key\": \"a\", \"caption\": \"caf\xC3\xA9\"}\r\n"
      "{\"key\": 42, \"caption\": \"integer key\"}\n"
      "[1, 2]\n"
      "{\"key\": \"c\", \"caption\": \n"
      "{\"caption\": \"no key\"}\n"
      "{\"key\": \"\", \"caption\": \"empty key\"}\n");
  const CaptionInput input = read_captions({path});
  EXPECT_EQ(keys_of(input.records), Strings({"b", "a", "42"}));  // file order
  EXPECT_EQ(input.records[0].fields, (std::map<std::string, std::string>{
                                         {"long", "a long one"}, {"short", "short"}, {"raw", "raw text"}}));
  EXPECT_EQ(input.records[0].source, path + ":1");
  EXPECT_EQ(input.records[1].fields.at("caption"), "caf\xC3\xA9");
  ASSERT_EQ(input.problems.size(), 4u);
  EXPECT_EQ(input.problems[0].source, path + ":5");
  EXPECT_EQ(input.problems[0].reason, "not a JSON object");
  EXPECT_EQ(input.problems[1].source, path + ":6");
  EXPECT_EQ(input.problems[1].reason, "not valid JSON");
  EXPECT_EQ(input.problems[2].source, path + ":7");
  EXPECT_NE(input.problems[2].reason.find("key"), std::string::npos);
  EXPECT_EQ(input.problems[3].source, path + ":8");
  for (const auto& p : input.problems) EXPECT_TRUE(p.dropped);
  EXPECT_EQ(input.dropped_count(), 4);

  // Another key field, e.g. COCO's integer ids.
  write_text(dir / "coco.jsonl", "{\"image_id\": 139, \"caption\": \"A room.\"}\n");
  CaptionSourceOptions options;
  options.jsonl_key_field = "image_id";
  const CaptionInput coco = read_captions({(dir / "coco.jsonl").string()}, options);
  ASSERT_EQ(coco.records.size(), 1u);
  EXPECT_EQ(coco.records[0].key, "139");
}

TEST(CaptionSource, ReadsWebDatasetTar) {
  const auto dir = fresh_temp_dir();
  const auto path = (dir / "shard-0000.tar").string();
  write_tar(path, {
                      {"000.jpg", std::string("\xFF\xD8\xFF\xE0 jpeg bytes", 15)},
                      {"000.txt", "A dog runs on the beach."},
                      {"000.json", R"({"short": "dog, beach", "width": 640, "url": "http://x/0.jpg"})"},
                      {"sub/", ""},
                      {"sub/001.txt", "Two cats."},
                      {"sub/001.jpg", "jpeg"},
                      {"002.json", R"({"long": "only json here"})"},
                      {"README", "no extension: not part of a sample"},
                      {"003.seg.png", "png"},
                      {"003.meta.txt", "ext is meta.txt, not txt"},
                      {"004.TXT", "upper-case extension"},
                  });
  const CaptionInput input = read_captions({path});
  ASSERT_EQ(keys_of(input.records), Strings({"000", "sub/001", "002", "004"}));
  EXPECT_EQ(input.records[0].fields,
            (std::map<std::string, std::string>{{"txt", "A dog runs on the beach."},
                                                {"caption", "A dog runs on the beach."},
                                                {"short", "dog, beach"},
                                                {"url", "http://x/0.jpg"}}));
  EXPECT_EQ(input.records[0].source, path + ":000");
  EXPECT_EQ(input.records[1].fields.at("caption"), "Two cats.");
  EXPECT_EQ(input.records[2].fields, (std::map<std::string, std::string>{{"long", "only json here"}}));
  EXPECT_EQ(input.records[3].fields.at("txt"), "upper-case extension");
  // Key "003" ends at the first dot of the file name; it has no .txt or .json member.
  ASSERT_EQ(input.problems.size(), 1u);
  EXPECT_EQ(input.problems[0].key, "003");
  EXPECT_TRUE(input.problems[0].dropped);

  // Compressed shards read the same.
  const auto gz = (dir / "shard.tar.gz").string();
  {
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
    archive_write_open_filename(a, gz.c_str());
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, "k.txt");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 5);
    archive_write_header(a, e);
    archive_write_data(a, "hello", 5);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
  }
  const CaptionInput compressed = read_captions({gz});
  ASSERT_EQ(compressed.records.size(), 1u);
  EXPECT_EQ(compressed.records[0].fields.at("caption"), "hello");
}

TEST(CaptionSource, BracePatternReadsShardsInOrder) {
  const auto dir = fresh_temp_dir();
  for (int s = 0; s < 3; ++s) {
    write_tar(dir / fmt::format("data-{:04}.tar", s),
              {{fmt::format("s{}a.txt", s), "first"}, {fmt::format("s{}b.txt", s), "second"}});
  }
  const CaptionInput input = read_captions({(dir / "data-{0000..0002}.tar").string()});
  EXPECT_EQ(keys_of(input.records), Strings({"s0a", "s0b", "s1a", "s1b", "s2a", "s2b"}));
  // One shard of the pattern missing: an error naming it, before reading anything.
  const std::string missing = error_of([&] { read_captions({(dir / "data-{0000..0003}.tar").string()}); });
  EXPECT_NE(missing.find("data-0003.tar"), std::string::npos) << missing;
}

TEST(CaptionSource, BadFilesAreErrorsNamingTheFile) {
  const auto dir = fresh_temp_dir();
  std::string message = error_of([&] { read_captions({(dir / "absent.jsonl").string()}); });
  EXPECT_NE(message.find("absent.jsonl"), std::string::npos) << message;

  write_text(dir / "captions.csv", "key,caption\n");
  message = error_of([&] { read_captions({(dir / "captions.csv").string()}); });
  EXPECT_NE(message.find("captions.csv"), std::string::npos) << message;

  write_text(dir / "garbage.tar", std::string(3000, 'x'));
  message = error_of([&] { read_captions({(dir / "garbage.tar").string()}); });
  EXPECT_NE(message.find("garbage.tar"), std::string::npos) << message;

  // A shard cut short, as by an interrupted download.
  write_tar(dir / "full.tar", {{"a.txt", std::string(5000, 'a')}, {"b.txt", std::string(5000, 'b')}});
  const std::string bytes = read_file(dir / "full.tar");
  write_text(dir / "cut.tar", bytes.substr(0, 7000));
  message = error_of([&] { read_captions({(dir / "cut.tar").string()}); });
  EXPECT_NE(message.find("cut.tar"), std::string::npos) << message;

  // A header claiming 1 TB (GNU base-256 size) in a tiny file: reserved up
  // front, it threw std::bad_alloc (found by fuzzing the tar reader).
  write_tar(dir / "small.tar", {{"a.txt", "0123456789"}});
  std::string huge = read_file(dir / "small.tar");
  huge[124] = static_cast<char>(0x80);
  for (int i = 125; i < 136; ++i) huge[i] = 0;
  huge[130] = 1;  // 2^40: the field is big-endian, byte 135 the lowest
  std::fill(huge.begin() + 148, huge.begin() + 156, ' ');
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += static_cast<unsigned char>(huge[i]);
  const std::string checksum = fmt::format("{:06o}", sum);
  std::copy(checksum.begin(), checksum.end(), huge.begin() + 148);
  huge[154] = '\0';
  write_text(dir / "huge.tar", huge);
  message = error_of([&] { read_captions({(dir / "huge.tar").string()}); });
  EXPECT_NE(message.find("huge.tar"), std::string::npos) << message;

  write_text(dir / "t.tsv", "image\tcaption\n");
  CaptionSourceOptions options;
  options.tsv_text_column = "text";
  message = error_of([&] { read_captions({(dir / "t.tsv").string()}, options); });
  EXPECT_NE(message.find("no column 'text'"), std::string::npos) << message;

  // Two columns of the name asked for: the first was used without a word.
  write_text(dir / "twice.tsv", "image\tcaption\tcaption\na.jpg\tone\ttwo\n");
  message = error_of([&] { read_captions({(dir / "twice.tsv").string()}); });
  EXPECT_NE(message.find("twice.tsv: the header names column 'caption' twice"), std::string::npos) << message;
}

TEST(CaptionSource, ReadsTsvJoinedAndPerRow) {
  const auto dir = fresh_temp_dir();
  const auto path = (dir / "caps.tsv").string();
  write_text(path,
             "\xEF\xBB\xBF"
             "image\tcaption_index\tcaption\r\n"  // byte order mark, CRLF
             "b.jpg\t1\tsecond of b .\r\n"
             "a.jpg\t0\tfirst of a\n"
             "b.jpg\t0\t  first of b  \n"
             "a.jpg\t1\tsecond of a\n");
  CaptionSourceOptions joined;
  joined.tsv_join = true;
  joined.tsv_field = "long";
  const CaptionInput j = read_captions({path}, joined);
  EXPECT_TRUE(j.problems.empty());
  ASSERT_EQ(keys_of(j.records), Strings({"b.jpg", "a.jpg"}));  // order of first appearance
  EXPECT_EQ(j.records[0].fields, (std::map<std::string, std::string>{{"long", "first of b second of b ."}}));
  EXPECT_EQ(j.records[1].fields.at("long"), "first of a second of a");
  EXPECT_EQ(j.records[0].source, path + ":2");

  CaptionSourceOptions rows;
  rows.tsv_key_columns = {"image", "caption_index"};
  const CaptionInput r = read_captions({path}, rows);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(keys_of(r.records), Strings({"b.jpg#1", "a.jpg#0", "b.jpg#0", "a.jpg#1"}));
  EXPECT_EQ(r.records[2].fields.at("caption"), "  first of b  ");  // per-row text is kept as written
}

TEST(CaptionSource, Flickr8kTsv) {
  const auto path = (test::shared_dir() / "data" / "flickr8k" / "captions.tsv").string();
  CaptionSourceOptions options;
  options.tsv_join = true;
  const CaptionInput joined = read_captions({path}, options);
  EXPECT_TRUE(joined.problems.empty());
  ASSERT_EQ(joined.records.size(), 8091u);
  EXPECT_EQ(joined.records.front().key, "1000268201_693b08cb0e.jpg");
  EXPECT_EQ(joined.records.back().key, "997722733_0cb5439472.jpg");
  EXPECT_EQ(joined.records.front().fields.at("caption"),
            "A child in a pink dress is climbing up a set of stairs in an entry way . "
            "A girl going into a wooden building . "
            "A little girl climbing into a wooden playhouse . "
            "A little girl climbing the stairs to her playhouse . "
            "A little girl in a pink dress going into a wooden cabin .");
  int64_t words = 0;
  for (const auto& record : joined.records) {
    const std::string& text = record.fields.at("caption");
    words += 1 + std::count(text.begin(), text.end(), ' ');
  }
  const double mean_words = static_cast<double>(words) / 8091;
  EXPECT_GT(mean_words, 50);
  EXPECT_LT(mean_words, 70);

  options.tsv_join = false;
  options.tsv_key_columns = {"image", "caption_index"};
  const CaptionInput rows = read_captions({path}, options);
  EXPECT_TRUE(rows.problems.empty());
  ASSERT_EQ(rows.records.size(), 40455u);
  EXPECT_EQ(rows.records[0].key, "1000268201_693b08cb0e.jpg#0");
  EXPECT_EQ(rows.records[4].key, "1000268201_693b08cb0e.jpg#4");
  EXPECT_EQ(rows.records[1].fields.at("caption"), "A girl going into a wooden building .");

  // Keyed by image alone without join, the 4 later captions of each image are duplicates.
  const CaptionInput dups = read_captions({path});
  EXPECT_EQ(dups.records.size(), 8091u);
  EXPECT_EQ(dups.problems.size(), 4u * 8091u);
  EXPECT_EQ(dups.dropped_count(), 4 * 8091);
}

TEST(CaptionSource, ReportsBadRecordsByKey) {
  const auto dir = fresh_temp_dir();
  const auto jsonl = (dir / "bad.jsonl").string();
  write_text(jsonl,
             "{\"key\": \"ok\", \"long\": \"fine\", \"short\": \"fine\"}\n"
             "{\"key\": \"empty\", \"long\": \"  \", \"short\": \"fine\"}\n"
             "{\"key\": \"badutf8\", \"long\": \"caf\xE9\", \"short\": \"x\"}\n"
             "{\"key\": \"ok\", \"long\": \"again\", \"short\": \"again\"}\n"
             "{\"key\": \"noshort\", \"long\": \"fine\"}\n"
             "{\"key\": \"blank\", \"long\": \"\"}\n"
             // Unicode whitespace, a zero-width space, a NUL: blank as ASCII spaces are.
             "{\"key\": \"ideographic\", \"long\": \"\\u3000\\u00a0\\u3000\"}\n"
             "{\"key\": \"invisible\", \"long\": \"\\u200b \\u0000\"}\n"
             "{\"key\": \"visible\", \"long\": \"\\u3000a\\u200b\"}\n");
  CaptionSourceOptions options;
  const CaptionInput input = read_captions({jsonl}, options);
  EXPECT_EQ(keys_of(input.records), Strings({"ok", "empty", "noshort", "visible"}));
  for (const char* key : {"ideographic", "invisible"}) {
    const InputProblem* blank = problem_for(input, key);
    ASSERT_NE(blank, nullptr) << key;
    EXPECT_TRUE(blank->dropped) << key;
    EXPECT_EQ(blank->reason,
              "field 'long' is empty (or only whitespace / invisible characters); no non-empty text field");
  }
  EXPECT_EQ(input.records[0].fields.at("long"), "fine");  // the first of a duplicated key wins
  EXPECT_EQ(input.records[1].fields, (std::map<std::string, std::string>{{"short", "fine"}}));

  const InputProblem* p = problem_for(input, "empty");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->source, jsonl + ":2");
  EXPECT_EQ(p->reason, "field 'long' is empty (or only whitespace / invisible characters)");
  EXPECT_FALSE(p->dropped);  // still usable: it has a short caption
  ASSERT_NE(p = problem_for(input, "badutf8"), nullptr);
  EXPECT_EQ(p->source, jsonl + ":3");
  EXPECT_EQ(p->reason, "line is not valid UTF-8 (byte 31)");
  EXPECT_TRUE(p->dropped);
  ASSERT_NE(p = problem_for(input, "ok"), nullptr);
  EXPECT_EQ(p->source, jsonl + ":4");
  EXPECT_EQ(p->reason, fmt::format("duplicate key (first seen at {}:1)", jsonl));
  EXPECT_TRUE(p->dropped);
  ASSERT_NE(p = problem_for(input, "blank"), nullptr);
  EXPECT_EQ(p->reason,
            "field 'long' is empty (or only whitespace / invisible characters); no non-empty text field");
  EXPECT_TRUE(p->dropped);
  EXPECT_EQ(input.problems.size(), 6u);
  // Every record read is either kept or has a problem saying it was dropped.
  EXPECT_EQ(input.records.size() + input.dropped_count(), 9u);

  options.required_fields = {"long"};
  const CaptionInput need_long = read_captions({jsonl}, options);
  EXPECT_EQ(keys_of(need_long.records), Strings({"ok", "noshort", "visible"}));
  ASSERT_NE(p = problem_for(need_long, "empty"), nullptr);
  EXPECT_EQ(p->reason,
            "field 'long' is empty (or only whitespace / invisible characters); missing field 'long'");
  EXPECT_TRUE(p->dropped);

  options.required_fields = {"long", "short"};
  const CaptionInput strict = read_captions({jsonl}, options);
  EXPECT_EQ(keys_of(strict.records), Strings({"ok"}));
  ASSERT_NE(p = problem_for(strict, "noshort"), nullptr);
  EXPECT_EQ(p->reason, "missing field 'short'");
  EXPECT_EQ(strict.records.size() + strict.dropped_count(), 9u);

  // The same defects in a tar shard and a joined TSV.
  const auto tar = (dir / "bad.tar").string();
  write_tar(tar, {{"k1.txt", "good"}, {"k2.txt", "bad \xC3\x28 bytes"}, {"k3.txt", ""}, {"k1.jpg", "x"}});
  const CaptionInput t = read_captions({tar});
  EXPECT_EQ(keys_of(t.records), Strings({"k1"}));  // k1.jpg after k3 starts a new sample "k1", without text
  ASSERT_NE(p = problem_for(t, "k2"), nullptr);
  EXPECT_EQ(p->source, tar + ":k2");
  EXPECT_NE(p->reason.find("not valid UTF-8 (byte 4)"), std::string::npos) << p->reason;
  ASSERT_NE(p = problem_for(t, "k3"), nullptr);
  EXPECT_TRUE(p->dropped);
  EXPECT_EQ(t.dropped_count(), 3);

  const auto tsv = (dir / "bad.tsv").string();
  write_text(tsv,
             "image\tcaption_index\tcaption\n"
             "x.jpg\t0\tone\n"
             "x.jpg\t1\t\n"
             "x.jpg\t2\tbad \xFF\n"
             "x.jpg\t0\tdup of zero\n"
             "x.jpg\tz\tnot a number\n"
             "short row\n"
             "y.jpg\t0\t \n"
             "x.jpg\t3\tfour\n");
  CaptionSourceOptions join;
  join.tsv_join = true;
  const CaptionInput s = read_captions({tsv}, join);
  ASSERT_EQ(keys_of(s.records), Strings({"x.jpg"}));
  EXPECT_EQ(s.records[0].fields.at("caption"), "one four");
  ASSERT_EQ(s.problems.size(), 7u);
  EXPECT_EQ(s.problems[0].source, tsv + ":3");
  EXPECT_EQ(s.problems[0].reason, "empty caption (or only whitespace / invisible characters); row left out");
  EXPECT_EQ(s.problems[1].source, tsv + ":4");
  EXPECT_EQ(s.problems[1].reason, "caption is not valid UTF-8 (byte 4); row left out");
  EXPECT_EQ(s.problems[2].reason, "duplicate caption_index 0; row left out");
  EXPECT_EQ(s.problems[3].reason, "caption_index 'z' is not an integer; row left out");
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(s.problems[i].key, "x.jpg");
    EXPECT_FALSE(s.problems[i].dropped) << "x.jpg is kept";
  }
  EXPECT_EQ(s.problems[4].source, tsv + ":7");
  EXPECT_EQ(s.problems[4].reason, "1 columns, the header has 3");
  EXPECT_TRUE(s.problems[4].dropped);
  EXPECT_EQ(s.problems[5].key, "y.jpg");
  EXPECT_FALSE(s.problems[5].dropped);
  EXPECT_EQ(s.problems[6].key, "y.jpg");  // all its rows left out: the record is dropped
  EXPECT_EQ(s.problems[6].source, tsv + ":8");
  EXPECT_TRUE(s.problems[6].dropped);
}

TEST(CaptionSource, KeysMustBeValidUtf8) {
  const auto dir = fresh_temp_dir();
  const auto tsv = (dir / "keys.tsv").string();
  write_text(tsv, "image\tcaption\nok.jpg\tfine\nbad\xFF.jpg\tfine too\n");
  const CaptionInput t = read_captions({tsv});
  EXPECT_EQ(keys_of(t.records), Strings({"ok.jpg"}));
  ASSERT_EQ(t.problems.size(), 1u);
  EXPECT_EQ(t.problems[0].key, "bad\xEF\xBF\xBD.jpg");  // quoted as valid UTF-8
  EXPECT_EQ(t.problems[0].reason, "key is not valid UTF-8");
  EXPECT_TRUE(t.problems[0].dropped);

  const auto tar = (dir / "keys.tar").string();
  write_tar(
      tar,
      {{"k\xFF.txt", "bad key"}, {".txt", "no key"}, {"d/.json", "{}"}, {"d/.jpg", "x"}, {"k.txt", "ok"}});
  const CaptionInput r = read_captions({tar});
  EXPECT_EQ(keys_of(r.records), Strings({"k"}));
  ASSERT_EQ(r.problems.size(), 3u);
  EXPECT_EQ(r.problems[0].reason, "key is not valid UTF-8");
  EXPECT_EQ(r.problems[1].source, tar + ":.txt");
  EXPECT_EQ(r.problems[1].reason, "member name has no key before its extension");
  EXPECT_EQ(r.problems[2].source, tar + ":d/.json");
  EXPECT_EQ(r.dropped_count(), 3);
}

TEST(CaptionSource, DuplicateKeysAcrossFiles) {
  const auto dir = fresh_temp_dir();
  write_text(dir / "a.jsonl", "{\"key\": \"k\", \"caption\": \"from a\"}\n");
  write_tar(dir / "b.tar", {{"k.txt", "from b"}, {"j.txt", "only in b"}});
  const CaptionInput input = read_captions({(dir / "a.jsonl").string(), (dir / "b.tar").string()});
  EXPECT_EQ(keys_of(input.records), Strings({"k", "j"}));
  EXPECT_EQ(input.records[0].fields.at("caption"), "from a");
  ASSERT_EQ(input.problems.size(), 1u);
  EXPECT_EQ(input.problems[0].source, (dir / "b.tar").string() + ":k");
  EXPECT_TRUE(input.problems[0].dropped);
}

TEST(CaptionSource, ShardingIsAStablePartition) {
  // Pinned: the split must not change across machines or builds.
  EXPECT_EQ(key_hash(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(key_hash("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(key_hash("foobar"), 0x85944171f73967e8ull);

  std::vector<CaptionRecord> records;
  for (int i = 0; i < 2000; ++i)
    records.push_back(CaptionRecord{fmt::format("img{:05}.jpg", i), {{"caption", "c"}}, ""});
  std::vector<CaptionRecord> shuffled = records;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(3));

  const int n = 7;
  std::set<std::string> all;
  size_t total = 0;
  for (int s = 0; s < n; ++s) {
    const auto shard = part_records(records, {s, n});
    const Strings keys = keys_of(shard);
    EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end())) << "input order is kept";
    EXPECT_GT(shard.size(), 2000u / n / 2) << "roughly balanced";
    total += shard.size();
    all.insert(keys.begin(), keys.end());
    // The same keys whatever the input order.
    Strings from_shuffled = keys_of(part_records(shuffled, {s, n}));
    std::sort(from_shuffled.begin(), from_shuffled.end());
    EXPECT_EQ(from_shuffled, keys);
    for (const auto& key : keys) EXPECT_EQ(key_hash(key) % n, static_cast<uint64_t>(s));
  }
  EXPECT_EQ(total, records.size()) << "disjoint";
  EXPECT_EQ(all.size(), records.size()) << "union is everything";
  EXPECT_EQ(part_records(records, {0, 1}).size(), records.size());
  EXPECT_THROW(part_records(records, {3, 3}), Error);
  EXPECT_THROW(part_records(records, {0, 0}), Error);
}

// Streaming parts: for any N, the parts' records are disjoint, each part keeps
// input order, and together they are exactly what one in-memory read gives,
// problems included (a keyless problem lands in exactly one part).
TEST(CaptionSourceStream, PartsAreDisjointAndCoverTheInputOnce) {
  const auto dir = test::fresh_temp_dir();
  std::string jsonl;
  for (int i = 0; i < 300; ++i) {
    if (i % 37 == 0) jsonl += "{not json\n";
    if (i % 41 == 0) jsonl += fmt::format("{{\"key\": \"k{}\", \"long\": \"\"}}\n", i);    // empty: dropped
    jsonl += fmt::format("{{\"key\": \"k{}\", \"long\": \"caption {}\"}}\n", i % 290, i);  // 10 duplicates
  }
  std::ofstream(dir / "in.jsonl", std::ios::binary) << jsonl;
  const std::vector<std::string> inputs = {(dir / "in.jsonl").string()};
  const CaptionInput all = read_captions(inputs);
  ASSERT_EQ(all.records.size(), 290u);
  ASSERT_GT(all.problems.size(), 20u);
  const auto record_text = [](const CaptionRecord& r) {
    return r.key + "=" + r.fields.at("long") + "@" + r.source;
  };
  const auto problem_text = [](const InputProblem& p) { return p.key + "|" + p.source + "|" + p.reason; };
  for (int parts = 1; parts <= 5; ++parts) {
    std::multiset<std::string> records, problems;
    for (int part = 0; part < parts; ++part) {
      std::vector<std::string> order;
      CaptionSink sink;
      sink.record = [&](CaptionRecord&& r) { order.push_back(record_text(r)); };
      sink.problem = [&](InputProblem&& p) { problems.insert(problem_text(p)); };
      sink.selects = [&](const std::string& key) { return in_part(key, PartSelection{part, parts}); };
      stream_captions(inputs, {}, sink);
      std::vector<std::string> expected;
      for (const auto& r : part_records(all.records, PartSelection{part, parts}))
        expected.push_back(record_text(r));
      EXPECT_EQ(order, expected) << part << " of " << parts;
      records.insert(order.begin(), order.end());
    }
    std::multiset<std::string> all_records, all_problems;
    for (const auto& r : all.records) all_records.insert(record_text(r));
    for (const auto& p : all.problems) all_problems.insert(problem_text(p));
    EXPECT_EQ(records, all_records) << parts;
    EXPECT_EQ(problems, all_problems) << parts;
  }
}

}  // namespace
}  // namespace flame::data
