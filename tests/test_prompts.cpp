// Prompt sets and caption clean-up.
#include <gtest/gtest.h>

#include "test_helpers.h"
#include "text/prompts.h"
#include "util/error.h"
#include "util/file.h"
#include "util/strings.h"

namespace flame::text {
namespace {

TEST(Prompts, BuiltInSetsFollowTheFacetHierarchy) {
  const auto long_set = load_prompt_set("long");
  const auto short_set = load_prompt_set("short");
  const auto raw = load_prompt_set("raw");
  ASSERT_EQ(long_set.num_facets(), 7);
  ASSERT_EQ(short_set.num_facets(), 3);
  ASSERT_EQ(raw.num_facets(), 1);
  const std::vector<std::string> levels = {"description", "entity",      "entity", "entity",
                                           "entity",      "interaction", "scene"};
  for (size_t k = 0; k < 7; ++k) {
    EXPECT_EQ(long_set.facets[k].level, levels[k]) << k;
    // Every facet ends where the model answers in one word after an opening quote.
    EXPECT_TRUE(ends_with(long_set.facets[k].text, " in just one word:\"")) << long_set.facets[k].text;
  }
  for (size_t k = 0; k < 3; ++k) EXPECT_EQ(short_set.facets[k].text, long_set.facets[k].text);
  EXPECT_EQ(raw.facets[0].text, long_set.facets[0].text);
  EXPECT_EQ(short_set.prefix_template, long_set.prefix_template);
  EXPECT_NE(short_set.sha256, long_set.sha256);
  EXPECT_EQ(long_set.sha256.size(), 64u);
  EXPECT_EQ(long_set.prefix("A dog runs."),
            "Detailed image description: \"A dog runs.\". After thinking step by step,");
}

TEST(Prompts, CaptionCleanUp) {
  EXPECT_EQ(clean_caption("  A dog runs  "), "A dog runs.");
  EXPECT_EQ(clean_caption("A \"big\" dog\n\nruns!"), "A 'big' dog runs!");
  EXPECT_EQ(clean_caption("Is it a cat?"), "Is it a cat?");
  EXPECT_EQ(clean_caption("line one\r\nline two ."), "line one line two .");
  EXPECT_EQ(clean_caption("tab\tseparated"), "tab separated.");
  EXPECT_EQ(clean_caption(""), "");
  EXPECT_EQ(clean_caption("Café au lait"), "Café au lait.");
}

TEST(Prompts, CustomSetsAndTheirErrors) {
  const auto dir = test::fresh_temp_dir();
  write_file_atomic(
      dir / "mine.json",
      R"({"name":"mine","prefix":"Caption: {caption} so,","facets":[{"name":"a","text":" one word:\""}]})");
  const auto set = load_prompt_set((dir / "mine.json").string());
  EXPECT_EQ(set.name, "mine");
  EXPECT_EQ(set.head(), "Caption: ");
  EXPECT_EQ(set.tail(), " so,");
  write_file_atomic(dir / "bad.json",
                    R"({"name":"bad","prefix":"no slot","facets":[{"name":"a","text":"x"}]})");
  try {
    load_prompt_set((dir / "bad.json").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json: the prefix must contain '{caption}' exactly once"),
              std::string::npos)
        << e.what();
  }
  write_file_atomic(dir / "toomany.json", R"({"name":"x","extends":"long","num_facets":9})");
  EXPECT_THROW(load_prompt_set((dir / "toomany.json").string()), Error);
  try {
    load_prompt_set("medium");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown prompt set 'medium'"), std::string::npos);
  }
}

// --prompts follows the rule of every preset-or-file option (find_preset): a
// value that names an existing file, contains '/' or ends in .json is a path.
TEST(Prompts, NamesAndPathsFollowTheConfigRule) {
  const auto dir = test::fresh_temp_dir();
  write_file_atomic(
      dir / "mine",
      R"({"name":"mine","prefix":"Caption: {caption} so,","facets":[{"name":"a","text":" one word:\""}]})");
  EXPECT_EQ(load_prompt_set((dir / "mine").string()).name, "mine");  // a path without .json
  const std::string missing = (dir / "nope.json").string();
  try {
    load_prompt_set(missing);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "prompt set config '" + missing + "' does not exist");
  }
  try {
    load_prompt_set("medium");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("presets: long, raw, release-long, release-raw, short"),
              std::string::npos)
        << e.what();
  }
}

// release-long and release-raw give, for a caption, exactly the text the
// method's released encode_text builds: its template strings (written here as
// model.py has them, '_' for spaces), '_' -> ' ', the caption in "*sent 0*".
TEST(Prompts, ReleaseSetsSpellTheReleasedTemplates) {
  const std::string long_template =
      "Detailed_Image_description_:_\"*sent_0*\"_._After_thinking_step_by_step_,_<s>_this_image_description_"
      "means_in_just_one_word:\"_the_category_of_the_main_object_in_this_image_means_in_just_one_word:\"_the_"
      "prominent_characteristic_or_pattern_of_the_main_object_in_this_image_means_in_just_one_word:\"_the_"
      "category_of_the_minor_object_in_this_image_means_in_just_one_word:\"_the_prominent_characteristic_or_"
      "pattern_of_the_minor_object_in_this_image_means_in_just_one_word:\"_the_primary_action_or_event_"
      "taking_"
      "place_in_this_image_means_in_just_one_word:\"_the_overall_atmosphere_or_emotion_of_this_image_means_"
      "in_"
      "just_one_word:\"";
  const std::string short_template =
      "Image_description_:_\"*sent_0*\"_._After_thinking_step_by_step_,_this_image_description_means_in_just_"
      "one_word:\"";
  const std::string caption = "A dog runs across the green grass.";
  const auto release_text = [&](std::string t) {
    std::replace(t.begin(), t.end(), '_', ' ');
    return t.replace(t.find("*sent 0*"), 8, caption);
  };
  for (const auto& [name, templ] :
       {std::pair{"release-long", long_template}, std::pair{"release-raw", short_template}}) {
    const PromptSet set = load_prompt_set(name);
    std::string text = set.prefix(set.clean(caption));
    for (const auto& f : set.facets) text += f.text;
    EXPECT_EQ(text, release_text(templ)) << name;
  }
  EXPECT_EQ(load_prompt_set("release-long").num_facets(), 7);
  EXPECT_EQ(load_prompt_set("release-long").role, "long");
  EXPECT_EQ(load_prompt_set("release-raw").role, "raw");
  EXPECT_EQ(load_prompt_set("long").role, "long");  // flame's own sets play their names
  EXPECT_EQ(load_prompt_set("release-raw").caption_rule, "release");
  EXPECT_EQ(load_prompt_set("raw").caption_rule, "flame");
}

// The released clean-up, line by line of multiprompteol_embeddings.py: a period
// unless the caption ends in . ? " ', then " -> ', then a final ? -> .; no
// whitespace change. flame's rule differs on exactly these endings.
TEST(Prompts, ReleaseCaptionRule) {
  EXPECT_EQ(release_clean_caption("A dog runs"), "A dog runs.");
  EXPECT_EQ(release_clean_caption("A dog runs!"), "A dog runs!.");
  EXPECT_EQ(release_clean_caption("Is it a cat?"), "Is it a cat.");
  EXPECT_EQ(release_clean_caption("He said \"hi\""), "He said 'hi'");
  EXPECT_EQ(release_clean_caption("the dogs'"), "the dogs'");
  EXPECT_EQ(release_clean_caption("  two  spaces "), "  two  spaces .");
  EXPECT_EQ(release_clean_caption(""), "");
  EXPECT_EQ(clean_caption("A dog runs!"), "A dog runs!");
  EXPECT_EQ(clean_caption("Is it a cat?"), "Is it a cat?");
  // The rule is part of a set's identity: a set differing only in it hashes otherwise.
  const PromptSet flame_rule = load_prompt_set("release-raw");
  const fs::path dir = test::fresh_temp_dir();
  nlohmann::json j = read_json_file(prompt_config_dir() / "release-raw.json");
  j.erase("caption_rule");
  write_json_file_atomic(dir / "flame-rule.json", j);
  EXPECT_NE(load_prompt_set((dir / "flame-rule.json").string()).sha256, flame_rule.sha256);
}

}  // namespace
}  // namespace flame::text
