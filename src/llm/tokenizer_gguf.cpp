// Builds a tokenizer from a GGUF file's tokenizer.ggml.* metadata, as
// llama.cpp does: "gpt2" = byte-level BPE split by the regexes that
// tokenizer.ggml.pre names, "llama" = SentencePiece BPE with scores and byte
// fallback, "bert" = WordPiece with llama.cpp's U+2581 word prefix.
#include "llm/bpe.h"
#include "llm/gguf.h"
#include "llm/spm.h"
#include "llm/tokenizer.h"
#include "llm/unicode_regex.h"
#include "llm/wpm.h"
#include "util/error.h"

namespace flame::llm {

namespace {

const char* const kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's space

// The regexes llama.cpp applies one after another for each tokenizer.ggml.pre
// value (each splits every current piece, keeping matches and gaps). Where
// llama.cpp rewrote a Hugging Face pattern only because its own regex engine
// lacks a feature, the original pattern is used: PCRE2 has it.
struct PreTokenizerSpec {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool add_bos = false;
};

const char* const kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const char* const kLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* const kQwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* const kCjk = "[一-龥ࠀ-一가-퟿]+";
const char* const kPoro = " ?[^(\\s|.,!?…。，、।۔،)]+";

bool is_one_of(const std::string& pre, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (pre == n) return true;
  return false;
}

// The table is split in three only to keep each part readable; the names are
// disjoint and are tried in llama.cpp's order.
std::optional<PreTokenizerSpec> llama3_deepseek_spec(const std::string& pre) {
  if (pre.empty() || pre == "default") {
    return PreTokenizerSpec{{"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"}};
  }
  if (is_one_of(pre,
                {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})) {
    return PreTokenizerSpec{{kLlama3}, true, true};
  }
  if (is_one_of(pre, {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"})) return PreTokenizerSpec{{kLlama3}};
  if (pre == "deepseek-llm") {
    // Code points whose NFC form differs (e.g. U+1F7D, U+2126) are escaped so
    // that no editor or tool can normalize them away.
    return PreTokenizerSpec{
        {"[\\r\\n]",
         "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆ"
         "Έ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷ"
         "ᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}"
         "ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ"
         "-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃ"
         "ↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ"
         "-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
         "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", kCjk, "\\p{N}+"}};
  }
  if (pre == "deepseek-coder")
    return PreTokenizerSpec{{"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjk, "\\p{N}"}};
  if (is_one_of(pre, {"deepseek-v3", "hunyuan-dense"})) {
    return PreTokenizerSpec{
        {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
         "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
         "?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}};
  }
  return std::nullopt;
}

std::optional<PreTokenizerSpec> gpt2_qwen2_poro_spec(const std::string& pre) {
  if (pre == "falcon") return PreTokenizerSpec{{"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"}};
  if (is_one_of(pre, {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"})) {
    return PreTokenizerSpec{{"\\p{N}", kGpt2}};
  }
  if (is_one_of(pre, {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                      "a.x-4.0", "mellum", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
                      "trillion", "granite-docling"})) {
    return PreTokenizerSpec{{kGpt2}};
  }
  if (is_one_of(pre, {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "grok-2"}))
    return PreTokenizerSpec{{kQwen2}};
  if (is_one_of(pre, {"poro-chat", "bloom", "gpt3-finnish"})) return PreTokenizerSpec{{kPoro}};
  if (pre == "viking") return PreTokenizerSpec{{kPoro, "\\p{N}"}};
  return std::nullopt;
}

std::optional<PreTokenizerSpec> tekken_gpt4o_other_spec(const std::string& pre) {
  if (pre == "tekken") {
    return PreTokenizerSpec{
        {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^"
         "\\r\\n\\p{L}\\p{N}]?"
         "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| "
         "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
         "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
        true,
        true};
  }
  if (is_one_of(pre, {"gpt-4o", "llama4", "minimax-m2"})) {
    return PreTokenizerSpec{
        {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|"
         "'re|'ve|'m|'ll|'d)?|"
         "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|"
         "'re|'ve|'m|'ll|'d)?|"
         "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}};
  }
  if (pre == "chameleon") {
    return PreTokenizerSpec{{"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
                             "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", kGpt2},
                            false,
                            true};
  }
  if (pre == "superbpe") return PreTokenizerSpec{{"\\p{N}+", "(?=(\\d{3})+(?!\\d))"}};
  if (is_one_of(pre, {"bailingmoe", "llada-moe"})) {
    return PreTokenizerSpec{
        {"'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}| "
         "?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|"
         "\\s+(?!\\S)|\\s+"}};
  }
  if (pre == "seed-coder") {
    return PreTokenizerSpec{
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| "
         "?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|"
         "\\s+(?!\\S)|\\s+"}};
  }
  return std::nullopt;
}

PreTokenizerSpec pre_tokenizer_spec(const std::string& pre, const std::string& source) {
  if (auto spec = llama3_deepseek_spec(pre)) return *spec;
  if (auto spec = gpt2_qwen2_poro_spec(pre)) return *spec;
  if (auto spec = tekken_gpt4o_other_spec(pre)) return *spec;
  fail("{}: unknown pre-tokenizer tokenizer.ggml.pre = '{}'", source, pre);
}

std::optional<int32_t> token_id(const GgufFile& f, const char* key, size_t n_tokens) {
  const auto v = f.get_integer(key);
  if (!v) return std::nullopt;
  if (*v < 0 || static_cast<uint64_t>(*v) >= n_tokens) {
    fail("{}: {} = {} is outside the vocabulary ({} tokens)", f.source, key, *v, n_tokens);
  }
  return static_cast<int32_t>(*v);
}

// The id under `key`, else llama.cpp's default for the model when it lies inside the vocabulary.
std::optional<int32_t> id_or(const GgufFile& f, const char* key, size_t n, std::optional<int32_t> fallback) {
  if (auto id = token_id(f, key, n)) return id;
  if (fallback && static_cast<size_t>(*fallback) < n) return fallback;
  return std::optional<int32_t>();
}

std::vector<TokenType> read_token_types(const GgufFile& f, size_t n) {
  std::vector<TokenType> result(n, TokenType::Normal);
  if (const auto* types = f.get_integers("tokenizer.ggml.token_type")) {
    if (types->size() != n)
      fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", f.source, types->size(), n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = (*types)[i];
      if (t < 0 || t > 6) fail("{}: tokenizer.ggml.token_type[{}] = {} is not a token type", f.source, i, t);
      result[i] = static_cast<TokenType>(t);
    }
  }
  return result;
}

std::vector<float> read_scores(const GgufFile& f, size_t n) {
  std::vector<float> scores;
  if (const auto* s = f.get_reals("tokenizer.ggml.scores")) {
    if (s->size() != n)
      fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", f.source, s->size(), n);
    scores.assign(s->begin(), s->end());
  }
  return scores;
}

// Control, unknown and user-defined tokens are matched in the raw text before the model.
std::vector<AddedToken> added_tokens_by_type(const std::vector<std::string>& pieces,
                                             const std::vector<TokenType>& types) {
  std::vector<AddedToken> added;
  for (size_t id = 0; id < pieces.size(); ++id) {
    const TokenType t = types[id];
    if (t == TokenType::Control || t == TokenType::Unknown || t == TokenType::UserDefined) {
      AddedToken a;
      a.id = static_cast<int32_t>(id);
      a.content = pieces[id];
      a.special = t != TokenType::UserDefined;
      added.push_back(std::move(a));
    }
  }
  return added;
}

std::vector<std::pair<std::string, std::string>> read_merges(const GgufFile& f) {
  const auto* merge_strings = f.get_strings("tokenizer.ggml.merges");
  if (merge_strings == nullptr) fail("{}: gpt2 vocabulary without tokenizer.ggml.merges", f.source);
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merge_strings->size());
  for (size_t i = 0; i < merge_strings->size(); ++i) {
    const std::string& m = (*merge_strings)[i];
    const size_t space = m.find(' ', 1);  // from 1, as llama.cpp: a part may begin with a space
    if (space == std::string::npos) fail("{}: tokenizer.ggml.merges[{}] '{}' has no space", f.source, i, m);
    merges.emplace_back(m.substr(0, space), m.substr(space + 1));
  }
  return merges;
}

// The spec's regex splits, then the byte-level alphabet (the regexes already split).
PreTokenizer byte_level_pre_tokenizer(const PreTokenizerSpec& spec) {
  PreTokenizer sequence;
  sequence.kind = PreTokenizer::Kind::Sequence;
  for (const auto& r : spec.regexes) {
    PreTokenizer split;
    split.kind = PreTokenizer::Kind::Split;
    split.regex = std::make_shared<UnicodeRegex>(r);
    split.behavior = SplitBehavior::Isolated;
    sequence.children.push_back(std::move(split));
  }
  PreTokenizer byte_level;
  byte_level.kind = PreTokenizer::Kind::ByteLevel;
  byte_level.use_regex = false;
  byte_level.add_prefix_space = false;
  sequence.children.push_back(byte_level);
  return sequence;
}

// What the model-specific builders share and what they decide about BOS/EOS.
struct GgufVocab {
  const GgufFile& f;
  size_t n;
  std::unordered_map<std::string, int32_t> vocab;
  std::optional<bool> add_bos_key, add_eos_key;
  bool add_bos = false, add_eos = false;
};

void build_gpt2(GgufVocab& v, Tokenizer::Parts& parts) {
  const GgufFile& f = v.f;
  const auto merges = read_merges(f);
  const std::string pre = f.get_string("tokenizer.ggml.pre").value_or("default");
  const PreTokenizerSpec spec = pre_tokenizer_spec(pre, f.source);
  parts.pre_tokenizer = byte_level_pre_tokenizer(spec);
  BpeOptions options;
  options.ignore_merges = spec.ignore_merges;
  parts.model = std::make_shared<BpeModel>(std::move(v.vocab), merges, options, false, f.source);
  Decoder decoder;
  decoder.kind = Decoder::Kind::ByteLevel;
  parts.decoder = decoder;
  parts.bos_id = id_or(f, "tokenizer.ggml.bos_token_id", v.n, std::nullopt);
  parts.eos_id = id_or(f, "tokenizer.ggml.eos_token_id", v.n, std::nullopt);
  parts.unk_id = id_or(f, "tokenizer.ggml.unknown_token_id", v.n, std::nullopt);
  v.add_bos = v.add_bos_key.value_or(spec.add_bos);
  v.add_eos = v.add_eos_key.value_or(false);
  parts.description =
      fmt::format("byte-level BPE (GGUF, pre '{}'), {} tokens, {} merges", pre, v.n, merges.size());
}

// Spaces become U+2581, with one in front unless add_space_prefix is false.
Normalizer spm_normalizer(bool add_space_prefix) {
  Normalizer replace;
  replace.kind = Normalizer::Kind::Replace;
  replace.pattern = " ";
  replace.content = kSpace;
  if (!add_space_prefix) return replace;
  Normalizer prepend;
  prepend.kind = Normalizer::Kind::Prepend;
  prepend.content = kSpace;
  Normalizer sequence;
  sequence.children = {prepend, replace};
  return sequence;
}

// U+2581 back into spaces (then, for SentencePiece, <0xNN> pieces into bytes),
// fused, and `strip_start` leading spaces removed, as llama.cpp decodes.
Decoder space_marker_decoder(bool byte_fallback, int strip_start) {
  Decoder replace;
  replace.kind = Decoder::Kind::Replace;
  replace.pattern = kSpace;
  replace.content = " ";
  Decoder fallback, fuse, strip;
  fallback.kind = Decoder::Kind::ByteFallback;
  fuse.kind = Decoder::Kind::Fuse;
  strip.kind = Decoder::Kind::Strip;
  strip.content = " ";
  strip.strip_start = strip_start;
  Decoder decoder;
  decoder.children = {replace};
  if (byte_fallback) decoder.children.push_back(fallback);
  decoder.children.push_back(fuse);
  decoder.children.push_back(strip);
  return decoder;
}

Decoder spm_decoder(bool add_space_prefix) {
  return space_marker_decoder(true, add_space_prefix ? 1 : 0);
}

void build_llama(GgufVocab& v, const std::vector<float>& scores, Tokenizer::Parts& parts) {
  const GgufFile& f = v.f;
  const bool add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  parts.normalizer = spm_normalizer(add_space_prefix);
  parts.bos_id = id_or(f, "tokenizer.ggml.bos_token_id", v.n, 1);
  parts.eos_id = id_or(f, "tokenizer.ggml.eos_token_id", v.n, 2);
  parts.unk_id = id_or(f, "tokenizer.ggml.unknown_token_id", v.n, 0);
  parts.model = std::make_shared<SpmModel>(parts.pieces, scores, parts.types, parts.unk_id);
  parts.decoder = spm_decoder(add_space_prefix);
  v.add_bos = v.add_bos_key.value_or(true);
  v.add_eos = v.add_eos_key.value_or(false);
  parts.description = fmt::format("SentencePiece BPE (GGUF), {} tokens", v.n);
}

// llama.cpp's WordPiece marks word starts with U+2581; decoding turns it back into spaces.
Decoder wordpiece_decoder() {
  return space_marker_decoder(false, 1);
}

void build_bert(GgufVocab& v, Tokenizer::Parts& parts) {
  const GgufFile& f = v.f;
  parts.bos_id =
      id_or(f, "tokenizer.ggml.bos_token_id", v.n, id_or(f, "tokenizer.ggml.cls_token_id", v.n, 101));
  parts.eos_id = id_or(f, "tokenizer.ggml.eos_token_id", v.n, std::nullopt);
  parts.unk_id = id_or(f, "tokenizer.ggml.unknown_token_id", v.n, 100);
  const auto sep_id = id_or(f, "tokenizer.ggml.seperator_token_id", v.n, 102);  // llama.cpp's spelling
  if (!parts.unk_id) fail("{}: bert vocabulary without an unknown token", f.source);
  Normalizer normalizer;
  normalizer.kind = Normalizer::Kind::Bert;
  parts.normalizer = normalizer;
  PreTokenizer pre;
  pre.kind = PreTokenizer::Kind::Bert;
  parts.pre_tokenizer = pre;
  parts.model = std::make_shared<WordPieceModel>(std::move(v.vocab), *parts.unk_id, kSpace, "");
  parts.decoder = wordpiece_decoder();
  v.add_bos = v.add_bos_key.value_or(true);
  v.add_eos = v.add_eos_key.value_or(false);
  if (sep_id) parts.suffix_ids.push_back(*sep_id);  // llama.cpp appends [SEP] (add_sep)
  parts.description = fmt::format("WordPiece (GGUF), {} tokens", v.n);
}

// The post-processor: BOS in front and EOS behind when the file (or the model's default) asks.
void add_bos_eos(const GgufVocab& v, Tokenizer::Parts& parts) {
  const std::string& src = v.f.source;
  if (v.add_bos) {
    if (!parts.bos_id) fail("{}: tokenizer.ggml.add_bos_token is set but there is no BOS token", src);
    parts.prefix_ids.insert(parts.prefix_ids.begin(), *parts.bos_id);
  }
  if (v.add_eos) {
    if (!parts.eos_id) fail("{}: tokenizer.ggml.add_eos_token is set but there is no EOS token", src);
    parts.suffix_ids.push_back(*parts.eos_id);
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load_gguf(const std::filesystem::path& path) {
  const GgufFile f = read_gguf(path);
  const std::string& src = f.source;
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) fail("{}: no tokenizer.ggml.model: not a GGUF file with a vocabulary", src);
  const auto* tokens = f.get_strings("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->empty()) fail("{}: no tokenizer.ggml.tokens", src);
  const size_t n = tokens->size();
  if (n > static_cast<size_t>(INT32_MAX)) fail("{}: {} tokens is too many", src, n);

  Parts parts;
  parts.source = src;
  parts.pieces = *tokens;
  parts.types = read_token_types(f, n);
  const std::vector<float> scores = read_scores(f, n);
  parts.added_tokens = added_tokens_by_type(parts.pieces, parts.types);
  GgufVocab v{
      f, n, {}, f.get_bool("tokenizer.ggml.add_bos_token"), f.get_bool("tokenizer.ggml.add_eos_token")};
  v.vocab.reserve(n);
  for (size_t id = 0; id < n; ++id) v.vocab.emplace(parts.pieces[id], static_cast<int32_t>(id));

  if (*model == "gpt2") {
    build_gpt2(v, parts);
  } else if (*model == "llama") {
    build_llama(v, scores, parts);
  } else if (*model == "bert") {
    build_bert(v, parts);
  } else {
    fail("{}: tokenizer.ggml.model '{}' is not supported (gpt2, llama and bert are)", src, *model);
  }
  parts.pad_id = id_or(f, "tokenizer.ggml.padding_token_id", n, std::nullopt);
  add_bos_eos(v, parts);
  return std::make_unique<Tokenizer>(std::move(parts));
}

}  // namespace flame::llm
