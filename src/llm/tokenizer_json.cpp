// Loads a Hugging Face tokenizer.json: model (BPE, WordPiece), added tokens,
// normalizer, pre-tokenizer, post-processor and decoder. Anything this
// implementation cannot reproduce exactly is refused with an error naming the
// file and the component, rather than tokenized differently.
#include <nlohmann/json.hpp>

#include "llm/bpe.h"
#include "llm/tokenizer.h"
#include "llm/unicode_regex.h"
#include "llm/wpm.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::llm {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Context {
  std::string source;
};

std::string type_of(const json& j, const Context& ctx, const char* what) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    fail("{}: {} has no \"type\"", ctx.source, what);
  }
  return j["type"].get<std::string>();
}

template <typename T>
T value_or(const json& j, const char* key, T fallback) {
  if (!j.is_object()) return fallback;
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<T>();
}

// A token id: an integer in 0..INT32_MAX. Checked before conversion, since
// nlohmann converts 1e300 or 2^40 to int32 by a cast (undefined or wrapped).
int32_t token_id(const json& v, const Context& ctx, const std::string& what) {
  if (!v.is_number_integer() ||
      (v.is_number_unsigned() ? v.get<uint64_t>() > INT32_MAX
                              : v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)) {
    fail("{}: {} has invalid id {}", ctx.source, what, v.dump());
  }
  return static_cast<int32_t>(v.get<int64_t>());
}

// {"String": "..."} or {"Regex": "..."}: a literal or a compiled regex.
void parse_pattern(const json& j, const Context& ctx, const std::string& where, std::string* literal,
                   std::shared_ptr<const UnicodeRegex>* regex) {
  if (j.is_object() && j.contains("String")) {
    *literal = j["String"].get<std::string>();
  } else if (j.is_object() && j.contains("Regex")) {
    try {
      *regex = std::make_shared<UnicodeRegex>(j["Regex"].get<std::string>());
    } catch (const Error& e) {
      fail("{}: {}: {}", ctx.source, where, e.what());
    }
  } else {
    fail("{}: {}: pattern must be {{\"String\": ..}} or {{\"Regex\": ..}}", ctx.source, where);
  }
}

SplitBehavior parse_behavior(const json& j, const Context& ctx, const std::string& where) {
  const std::string b = j.is_string() ? j.get<std::string>() : "Isolated";
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  fail("{}: {}: unknown split behavior '{}'", ctx.source, where, b);
}

// prepend_scheme, or the older add_prefix_space flag.
PrependScheme parse_prepend_scheme(const json& j, const Context& ctx, const std::string& where) {
  if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
    const std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return PrependScheme::Always;
    if (s == "first") return PrependScheme::First;
    if (s == "never") return PrependScheme::Never;
    fail("{}: {}: unknown prepend_scheme '{}'", ctx.source, where, s);
  }
  return value_or<bool>(j, "add_prefix_space", true) ? PrependScheme::Always : PrependScheme::Never;
}

Normalizer parse_normalizer(const json& j, const Context& ctx) {
  const std::string type = type_of(j, ctx, "normalizer");
  const std::string where = "normalizer " + type;
  Normalizer n;
  using Kind = Normalizer::Kind;
  if (type == "Sequence") {
    n.kind = Kind::Sequence;
    for (const auto& child : j.at("normalizers")) n.children.push_back(parse_normalizer(child, ctx));
  } else if (type == "Prepend") {
    n.kind = Kind::Prepend;
    n.content = j.at("prepend").get<std::string>();
  } else if (type == "Replace") {
    n.kind = Kind::Replace;
    parse_pattern(j.at("pattern"), ctx, where, &n.pattern, &n.regex);
    n.content = j.at("content").get<std::string>();
  } else if (type == "NFC") {
    n.kind = Kind::NFC;
  } else if (type == "NFD") {
    n.kind = Kind::NFD;
  } else if (type == "NFKC") {
    n.kind = Kind::NFKC;
  } else if (type == "NFKD") {
    n.kind = Kind::NFKD;
  } else if (type == "Lowercase") {
    n.kind = Kind::Lowercase;
  } else if (type == "Strip") {
    n.kind = Kind::Strip;
    n.strip_left = value_or<bool>(j, "strip_left", true);
    n.strip_right = value_or<bool>(j, "strip_right", true);
  } else if (type == "StripAccents") {
    n.kind = Kind::StripAccents;
  } else if (type == "BertNormalizer") {
    n.kind = Kind::Bert;
    n.clean_text = value_or<bool>(j, "clean_text", true);
    n.handle_chinese_chars = value_or<bool>(j, "handle_chinese_chars", true);
    n.lowercase = value_or<bool>(j, "lowercase", true);
    n.strip_accents = value_or<bool>(j, "strip_accents", n.lowercase);
  } else {
    // e.g. Precompiled (SentencePiece's compiled charsmap) or ByteLevel.
    fail("{}: normalizer type '{}' is not supported", ctx.source, type);
  }
  return n;
}

PreTokenizer parse_pre_tokenizer(const json& j, const Context& ctx) {
  const std::string type = type_of(j, ctx, "pre_tokenizer");
  const std::string where = "pre_tokenizer " + type;
  PreTokenizer p;
  using Kind = PreTokenizer::Kind;
  if (type == "Sequence") {
    p.kind = Kind::Sequence;
    for (const auto& child : j.at("pretokenizers")) p.children.push_back(parse_pre_tokenizer(child, ctx));
  } else if (type == "ByteLevel") {
    p.kind = Kind::ByteLevel;
    p.add_prefix_space = value_or<bool>(j, "add_prefix_space", true);
    p.use_regex = value_or<bool>(j, "use_regex", true);
  } else if (type == "Split") {
    p.kind = Kind::Split;
    parse_pattern(j.at("pattern"), ctx, where, &p.literal, &p.regex);
    p.behavior = parse_behavior(j.value("behavior", json()), ctx, where);
    p.invert = value_or<bool>(j, "invert", false);
  } else if (type == "Digits") {
    p.kind = Kind::Digits;
    p.individual_digits = value_or<bool>(j, "individual_digits", false);
  } else if (type == "Metaspace") {
    p.kind = Kind::Metaspace;
    p.replacement = value_or<std::string>(j, "replacement", "\xe2\x96\x81");
    p.prepend_scheme = parse_prepend_scheme(j, ctx, where);
    p.split = value_or<bool>(j, "split", true);
  } else if (type == "Whitespace") {
    p.kind = Kind::Whitespace;
  } else if (type == "WhitespaceSplit") {
    p.kind = Kind::WhitespaceSplit;
  } else if (type == "BertPreTokenizer") {
    p.kind = Kind::Bert;
  } else if (type == "Punctuation") {
    p.kind = Kind::Punctuation;
    p.behavior = parse_behavior(j.value("behavior", json()), ctx, where);
  } else if (type == "CharDelimiterSplit") {
    p.kind = Kind::CharDelimiterSplit;
    p.literal = j.at("delimiter").get<std::string>();
  } else {
    fail("{}: pre_tokenizer type '{}' is not supported", ctx.source, type);
  }
  return p;
}

Decoder parse_decoder(const json& j, const Context& ctx) {
  const std::string type = type_of(j, ctx, "decoder");
  const std::string where = "decoder " + type;
  Decoder d;
  using Kind = Decoder::Kind;
  if (type == "Sequence") {
    d.kind = Kind::Sequence;
    for (const auto& child : j.at("decoders")) d.children.push_back(parse_decoder(child, ctx));
  } else if (type == "ByteLevel") {
    d.kind = Kind::ByteLevel;
  } else if (type == "Metaspace") {
    d.kind = Kind::Metaspace;
    d.content = value_or<std::string>(j, "replacement", "\xe2\x96\x81");
    d.prepend_scheme = parse_prepend_scheme(j, ctx, where);
  } else if (type == "Replace") {
    d.kind = Kind::Replace;
    std::shared_ptr<const UnicodeRegex> regex;
    parse_pattern(j.at("pattern"), ctx, where, &d.pattern, &regex);
    if (regex) fail("{}: {}: regex patterns are not supported in the Replace decoder", ctx.source, where);
    d.content = j.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    d.kind = Kind::ByteFallback;
  } else if (type == "Fuse") {
    d.kind = Kind::Fuse;
  } else if (type == "Strip") {
    d.kind = Kind::Strip;
    d.content = j.at("content").get<std::string>();
    d.strip_start = value_or<size_t>(j, "start", 0);
    d.strip_stop = value_or<size_t>(j, "stop", 0);
  } else if (type == "WordPiece") {
    d.kind = Kind::WordPiece;
    d.content = value_or<std::string>(j, "prefix", "##");
    d.cleanup = value_or<bool>(j, "cleanup", true);
  } else if (type == "BPEDecoder") {
    d.kind = Kind::BpeSuffix;
    d.content = value_or<std::string>(j, "suffix", "</w>");
  } else {
    fail("{}: decoder type '{}' is not supported", ctx.source, type);
  }
  return d;
}

// The single-sequence template: ids before and after the text.
void parse_post_processor(const json& j, const Context& ctx, Tokenizer::Parts* parts) {
  const std::string type = type_of(j, ctx, "post_processor");
  if (type == "Sequence") {
    for (const auto& child : j.at("processors")) parse_post_processor(child, ctx, parts);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets.
  } else if (type == "TemplateProcessing") {
    parts->prefix_ids.clear();
    parts->suffix_ids.clear();
    bool seen_sequence = false;
    const json& specials = j.at("special_tokens");
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        const std::string id = item["Sequence"].at("id").get<std::string>();
        if (id != "A") fail("{}: post_processor single template uses sequence '{}' (only A)", ctx.source, id);
        seen_sequence = true;
      } else if (item.contains("SpecialToken")) {
        const std::string name = item["SpecialToken"].at("id").get<std::string>();
        if (!specials.contains(name))
          fail("{}: post_processor template token '{}' is not in special_tokens", ctx.source, name);
        auto& target = seen_sequence ? parts->suffix_ids : parts->prefix_ids;
        for (const auto& id : specials[name].at("ids"))
          target.push_back(token_id(id, ctx, "post_processor token '" + name + "'"));
      } else {
        fail("{}: post_processor template item {} is not understood", ctx.source, item.dump());
      }
    }
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    parts->prefix_ids = {token_id(j.at("cls").at(1), ctx, "post_processor cls")};
    parts->suffix_ids = {token_id(j.at("sep").at(1), ctx, "post_processor sep")};
  } else {
    fail("{}: post_processor type '{}' is not supported", ctx.source, type);
  }
}

// A token named in tokenizer_config.json / special_tokens_map.json: a string or {"content": ..}.
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

// "type", or for older files what the model's keys imply.
std::string model_type_of(const json& model) {
  std::string model_type = value_or<std::string>(model, "type", "");
  if (model_type.empty())
    model_type = model.contains("merges") ? "BPE" : model.contains("vocab") ? "WordPiece" : "";
  return model_type;
}

// model.vocab as piece -> id; raises `max_id` to the largest id.
std::unordered_map<std::string, int32_t> read_vocab(const json& model, const std::string& model_type,
                                                    const Context& ctx, int64_t* max_id) {
  if (model_type != "BPE" && model_type != "WordPiece") {
    fail("{}: model type '{}' is not supported (BPE and WordPiece are)", ctx.source, model_type);
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    fail("{}: the {} model has no \"vocab\" object (piece -> id)", ctx.source, model_type);
  }
  std::unordered_map<std::string, int32_t> vocab;
  for (const auto& [piece, id] : model["vocab"].items()) {
    const int32_t v = token_id(id, ctx, "vocab entry '" + piece + "'");
    vocab.emplace(piece, v);
    *max_id = std::max<int64_t>(*max_id, v);
  }
  return vocab;
}

// root.added_tokens; raises `max_id` to the largest id.
std::vector<AddedToken> read_added_tokens(const json& root, const Context& ctx, int64_t* max_id) {
  std::vector<AddedToken> added;
  if (!root.contains("added_tokens") || !root["added_tokens"].is_array()) return added;
  for (const auto& t : root["added_tokens"]) {
    AddedToken a;
    a.content = t.at("content").get<std::string>();
    a.id = token_id(t.at("id"), ctx, "added token '" + a.content + "'");
    a.special = value_or<bool>(t, "special", false);
    a.lstrip = value_or<bool>(t, "lstrip", false);
    a.rstrip = value_or<bool>(t, "rstrip", false);
    a.single_word = value_or<bool>(t, "single_word", false);
    a.normalized = value_or<bool>(t, "normalized", !a.special);
    *max_id = std::max<int64_t>(*max_id, a.id);
    added.push_back(std::move(a));
  }
  return added;
}

// The vocabulary, then the added tokens over it, into one id -> piece table.
void fill_piece_table(const std::unordered_map<std::string, int32_t>& vocab, int64_t max_id,
                      const Context& ctx, Tokenizer::Parts* parts) {
  if (max_id < 0) fail("{}: empty vocabulary", ctx.source);
  // Ids may leave gaps (filled with ""), but a table mostly empty means a
  // corrupt id, which must not allocate gigabytes of empty pieces.
  const int64_t entries = static_cast<int64_t>(vocab.size() + parts->added_tokens.size());
  if (max_id >= 2 * entries + 1024) {
    fail("{}: token id {} is far beyond the {} tokens of the file (ids must be nearly contiguous)",
         ctx.source, max_id, entries);
  }
  parts->pieces.assign(static_cast<size_t>(max_id + 1), std::string());
  parts->types.assign(parts->pieces.size(), TokenType::Undefined);
  for (const auto& [piece, id] : vocab) {
    parts->pieces[id] = piece;
    parts->types[id] = TokenType::Normal;
  }
  for (const auto& a : parts->added_tokens) {
    parts->pieces[a.id] = a.content;
    parts->types[a.id] = a.special ? TokenType::Control : TokenType::UserDefined;
  }
}

void set_unk_token(const json& model, const std::unordered_map<std::string, int32_t>& vocab,
                   const Context& ctx, Tokenizer::Parts* parts) {
  const auto unk_token = value_or<std::string>(model, "unk_token", "");
  if (unk_token.empty()) return;
  const auto it = vocab.find(unk_token);
  if (it == vocab.end()) fail("{}: unk_token '{}' is not in the vocabulary", ctx.source, unk_token);
  parts->unk_id = it->second;
  parts->types[it->second] = TokenType::Unknown;
}

// model.merges, each "a b" or ["a", "b"].
std::vector<std::pair<std::string, std::string>> read_merges(const json& model, const Context& ctx) {
  std::vector<std::pair<std::string, std::string>> merges;
  // Hugging Face's tokenizers refuses a BPE model without vocab and merges; a
  // missing list read as 0 merges would split every word into characters.
  if (!model.contains("merges") || !model["merges"].is_array())
    fail("{}: the BPE model has no \"merges\" array (model.merges)", ctx.source);
  const json& merges_json = model["merges"];
  merges.reserve(merges_json.size());
  for (size_t i = 0; i < merges_json.size(); ++i) {
    const json& m = merges_json[i];
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        fail("{}: merge #{} '{}' is not two tokens separated by one space", ctx.source, i, s);
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      fail("{}: merge #{} is neither \"a b\" nor [\"a\", \"b\"]", ctx.source, i);
    }
  }
  return merges;
}

void build_bpe(const json& model, std::unordered_map<std::string, int32_t> vocab, const Context& ctx,
               Tokenizer::Parts* parts) {
  if (value_or<double>(model, "dropout", 0.0) > 0.0) {
    fail("{}: BPE dropout is set; only deterministic tokenization is supported", ctx.source);
  }
  const auto merges = read_merges(model, ctx);
  BpeOptions options;
  options.unk_id = parts->unk_id;
  options.fuse_unk = value_or<bool>(model, "fuse_unk", false);
  options.byte_fallback = value_or<bool>(model, "byte_fallback", false);
  options.ignore_merges = value_or<bool>(model, "ignore_merges", false);
  options.continuing_subword_prefix = value_or<std::string>(model, "continuing_subword_prefix", "");
  options.end_of_word_suffix = value_or<std::string>(model, "end_of_word_suffix", "");
  if (options.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      const auto it = vocab.find(fmt::format("<0x{:02X}>", b));
      if (it != vocab.end()) parts->types[it->second] = TokenType::Byte;
    }
  }
  const bool byte_fallback = options.byte_fallback;
  parts->model = std::make_shared<BpeModel>(std::move(vocab), merges, std::move(options), true, ctx.source);
  parts->description = fmt::format("BPE{}, {} tokens, {} merges", byte_fallback ? " with byte fallback" : "",
                                   parts->pieces.size(), merges.size());
}

void build_wordpiece(const json& model, std::unordered_map<std::string, int32_t> vocab, const Context& ctx,
                     Tokenizer::Parts* parts) {
  if (!parts->unk_id) fail("{}: WordPiece model without an unk_token", ctx.source);
  const auto prefix = value_or<std::string>(model, "continuing_subword_prefix", "##");
  const auto max_chars = value_or<size_t>(model, "max_input_chars_per_word", 100);
  parts->model = std::make_shared<WordPieceModel>(std::move(vocab), *parts->unk_id, "", prefix, max_chars);
  parts->description = fmt::format("WordPiece, {} tokens", parts->pieces.size());
}

bool is_byte_level(const PreTokenizer& p) {
  return p.kind == PreTokenizer::Kind::ByteLevel ||
         (p.kind == PreTokenizer::Kind::Sequence &&
          std::any_of(p.children.begin(), p.children.end(),
                      [](const PreTokenizer& c) { return c.kind == PreTokenizer::Kind::ByteLevel; }));
}

// The pipeline around the model: normalizer, pre-tokenizer, post-processor, decoder.
void parse_pipeline(const json& root, const Context& ctx, Tokenizer::Parts* parts) {
  if (root.contains("normalizer") && !root["normalizer"].is_null())
    parts->normalizer = parse_normalizer(root["normalizer"], ctx);
  if (root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null()) {
    parts->pre_tokenizer = parse_pre_tokenizer(root["pre_tokenizer"], ctx);
    if (is_byte_level(*parts->pre_tokenizer)) parts->description = "byte-level " + parts->description;
  }
  if (root.contains("post_processor") && !root["post_processor"].is_null()) {
    parse_post_processor(root["post_processor"], ctx, parts);
  }
  if (root.contains("decoder") && !root["decoder"].is_null())
    parts->decoder = parse_decoder(root["decoder"], ctx);
}

// special_tokens_map.json, then tokenizer_config.json over it, from beside the file.
json read_side_configs(const fs::path& path) {
  json config = json::object();
  for (const char* name : {"special_tokens_map.json", "tokenizer_config.json"}) {
    const fs::path p = path.parent_path() / name;
    if (fs::exists(p)) {
      const json c = read_json_file(p);
      if (c.is_object())
        for (const auto& [k, v] : c.items()) config[k] = v;
    }
  }
  return config;
}

// An added token's id, else the first vocabulary id with that piece.
std::optional<int32_t> find_piece(const Tokenizer::Parts& parts, const std::optional<std::string>& piece) {
  if (!piece) return std::nullopt;
  for (const auto& a : parts.added_tokens)
    if (a.content == *piece) return a.id;
  for (size_t id = 0; id < parts.pieces.size(); ++id)
    if (parts.pieces[id] == *piece) return static_cast<int32_t>(id);
  return std::nullopt;
}

// BOS / EOS / PAD: the tokenizer configs beside the file, else the template, else common names.
void set_special_ids(const json& root, const json& config, Tokenizer::Parts* parts) {
  parts->bos_id = find_piece(*parts, config_token(config, "bos_token"));
  parts->eos_id = find_piece(*parts, config_token(config, "eos_token"));
  parts->pad_id = find_piece(*parts, config_token(config, "pad_token"));
  if (!parts->bos_id && !parts->prefix_ids.empty()) parts->bos_id = parts->prefix_ids.front();
  if (!parts->eos_id && !parts->suffix_ids.empty()) parts->eos_id = parts->suffix_ids.back();
  for (const char* name : {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"})
    if (!parts->bos_id) parts->bos_id = find_piece(*parts, std::string(name));
  for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"})
    if (!parts->eos_id) parts->eos_id = find_piece(*parts, std::string(name));
  if (root.contains("padding") && root["padding"].is_object() && root["padding"].contains("pad_id")) {
    parts->pad_id = token_id(root["padding"]["pad_id"], Context{parts->source}, "padding.pad_id");
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load_tokenizer_json(const fs::path& path) {
  Context ctx{path.string()};
  const json root = read_json_file(path);
  Tokenizer::Parts parts;
  parts.source = ctx.source;
  try {
    if (!root.is_object() || !root.contains("model"))
      fail("{}: not a tokenizer.json (no \"model\")", ctx.source);
    const json& model = root["model"];
    const std::string model_type = model_type_of(model);
    int64_t max_id = -1;
    auto vocab = read_vocab(model, model_type, ctx, &max_id);
    parts.added_tokens = read_added_tokens(root, ctx, &max_id);
    fill_piece_table(vocab, max_id, ctx, &parts);
    set_unk_token(model, vocab, ctx, &parts);
    if (model_type == "BPE") {
      build_bpe(model, std::move(vocab), ctx, &parts);
    } else if (model_type == "WordPiece") {
      build_wordpiece(model, std::move(vocab), ctx, &parts);
    } else {
      fail("{}: model type '{}' is not supported (BPE and WordPiece are)", ctx.source, model_type);
    }
    parse_pipeline(root, ctx, &parts);
    set_special_ids(root, read_side_configs(path), &parts);
  } catch (const json::exception& e) {
    fail("{}: malformed tokenizer.json: {}", ctx.source, e.what());
  }
  return std::make_unique<Tokenizer>(std::move(parts));
}

}  // namespace flame::llm
