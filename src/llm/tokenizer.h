// The frozen LLM's tokenizer, exact to the reference implementations:
// Hugging Face tokenizer.json (byte-level BPE as GPT-2/Llama-3/Qwen2/SmolLM,
// SentencePiece-style BPE with metaspace and byte fallback as Llama-2/Mistral,
// WordPiece) and GGUF vocabularies as llama.cpp reads them (gpt2 = byte-level
// BPE with the pre-tokenizer regexes named by tokenizer.ggml.pre, llama =
// SentencePiece BPE with scores, bert = WordPiece). Torch-free.
//
// The pipeline is Hugging Face's: added tokens are split out of the raw text
// first, each remaining segment is normalized, pre-tokenized into pieces, and
// each piece is encoded by the model; the post-processor adds BOS/EOS; the
// decoder turns pieces back into text. The building blocks are public (below
// the class) so the loaders and tests can assemble tokenizers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace flame::llm {

class UnicodeRegex;
struct AddedTokenMatcher;

// A tokenization model: turns one pre-tokenized piece into ids.
class TokenizerModel {
 public:
  virtual ~TokenizerModel() = default;
  // Appends the ids of `piece` (valid UTF-8). Must be safe to call from several threads.
  virtual void encode(std::string_view piece, std::vector<int32_t>& ids) const = 0;
};

// Token kinds, numbered as GGUF's tokenizer.ggml.token_type.
enum class TokenType : uint8_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

// A token matched in the text before the model runs (HF added_tokens; GGUF
// control and user-defined tokens).
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;      // dropped by decode(skip_special_tokens)
  bool lstrip = false;       // swallows whitespace on its left
  bool rstrip = false;       // swallows whitespace on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched in the normalized text instead of the raw text
};

struct Normalizer {
  enum class Kind { Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Bert };
  Kind kind = Kind::Sequence;
  std::string pattern;                         // Replace: literal pattern (when `regex` is null)
  std::string content;                         // Prepend: prefix; Replace: replacement
  std::shared_ptr<const UnicodeRegex> regex;   // Replace with a regex pattern
  bool strip_left = true, strip_right = true;  // Strip
  // Bert
  bool clean_text = true, handle_chinese_chars = true, strip_accents = true, lowercase = true;
  std::vector<Normalizer> children;  // Sequence
};

// How a split treats the matched delimiters (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
// When Metaspace adds its replacement character in front.
enum class PrependScheme { Always, First, Never };

struct PreTokenizer {
  enum class Kind {
    Sequence,
    ByteLevel,        // optional prefix space, optional GPT-2 regex split, then bytes -> byte-level alphabet
    Split,            // regex or literal pattern with a behavior, optionally inverted
    Digits,           // numeric characters, each alone (individual_digits) or in runs
    Metaspace,        // spaces -> replacement, prefix per prepend_scheme, split before each replacement
    Whitespace,       // \w+|[^\w\s]+
    WhitespaceSplit,  // split on whitespace, drop it
    Bert,             // split on whitespace (dropped) and punctuation (isolated)
    Punctuation,      // punctuation characters with a behavior
    CharDelimiterSplit,
  };
  Kind kind = Kind::Sequence;
  bool add_prefix_space = false;              // ByteLevel
  bool use_regex = true;                      // ByteLevel
  std::shared_ptr<const UnicodeRegex> regex;  // Split (or null for a literal)
  std::string literal;                        // Split literal; CharDelimiterSplit delimiter
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool individual_digits = false;            // Digits
  std::string replacement = "\xe2\x96\x81";  // Metaspace: U+2581
  PrependScheme prepend_scheme = PrependScheme::Always;
  bool split = true;                   // Metaspace
  std::vector<PreTokenizer> children;  // Sequence
};

struct Decoder {
  enum class Kind {
    Sequence,
    ByteLevel,
    Metaspace,
    Replace,
    ByteFallback,
    Fuse,
    Strip,
    WordPiece,
    BpeSuffix
  };
  Kind kind = Kind::Sequence;
  std::string pattern;  // Replace: literal pattern
  std::string content;  // Replace: replacement; Strip: the character; Metaspace: replacement;
                        // WordPiece: continuing prefix; BpeSuffix: the suffix
  size_t strip_start = 0, strip_stop = 0;                // Strip
  PrependScheme prepend_scheme = PrependScheme::Always;  // Metaspace
  bool cleanup = false;                                  // WordPiece
  std::vector<Decoder> children;                         // Sequence
};

class Tokenizer {
 public:
  // tokenizer.json (Hugging Face tokenizers) or a .gguf vocab file; a directory means DIR/tokenizer.json.
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& path);
  static std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& path);
  static std::unique_ptr<Tokenizer> load_gguf(const std::filesystem::path& path);

  // add_special_tokens = Hugging Face's add_special_tokens (post-processor: e.g. BOS for Llama-2/3).
  // Added/special tokens appearing in the text are matched as in HF (added_tokens split).
  // Thread-safe. Throws flame::Error if `text` is not valid UTF-8 (naming the byte offset).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Added tokens are copied as they are, the model tokens between them go
  // through the decoder (as Hugging Face). Ids out of range throw flame::Error;
  // invalid UTF-8 produced by byte tokens becomes U+FFFD.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  std::string id_to_piece(int32_t id) const;  // the raw vocabulary string; throws if out of range
  std::optional<int32_t> piece_to_id(std::string_view piece) const;
  int64_t vocab_size() const {
    return static_cast<int64_t>(pieces_.size());
  }  // max id + 1 incl. added tokens
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  std::optional<int32_t> pad_id() const { return pad_id_; }
  std::optional<int32_t> unk_id() const { return unk_id_; }
  bool is_special(int32_t id) const;
  TokenType token_type(int32_t id) const;
  // Where it was loaded from and a one-line summary ("byte-level BPE, 49153 tokens").
  const std::string& source() const { return source_; }
  const std::string& description() const { return description_; }

  // --- Assembly (loaders, tests) ---
  struct Parts {
    std::string source;
    std::string description;
    std::vector<std::string> pieces;  // by id; ids without a token hold ""
    std::vector<TokenType> types;     // by id (empty: all Normal)
    std::vector<AddedToken> added_tokens;
    std::optional<Normalizer> normalizer;
    std::optional<PreTokenizer> pre_tokenizer;
    std::shared_ptr<const TokenizerModel> model;
    std::optional<Decoder> decoder;
    std::vector<int32_t> prefix_ids;  // post-processor, single sequence: prefix + ids + suffix
    std::vector<int32_t> suffix_ids;
    std::optional<int32_t> bos_id, eos_id, pad_id, unk_id;
  };
  explicit Tokenizer(Parts parts);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

 private:
  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& ids) const;
  void encode_normalized(std::string_view text, bool at_start, std::vector<int32_t>& ids) const;

  std::string source_;
  std::string description_;
  std::vector<std::string> pieces_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t> piece_ids_;
  std::vector<AddedToken> added_tokens_;
  std::vector<bool> special_;                       // by id
  std::vector<bool> added_;                         // by id: decoded as their text, not through the decoder
  std::unique_ptr<AddedTokenMatcher> raw_matcher_;  // added tokens with normalized = false
  std::unique_ptr<AddedTokenMatcher> normalized_matcher_;  // with normalized = true
  std::optional<Normalizer> normalizer_;
  std::optional<PreTokenizer> pre_tokenizer_;
  std::shared_ptr<const TokenizerModel> model_;
  std::optional<Decoder> decoder_;
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  std::optional<int32_t> bos_id_, eos_id_, pad_id_, unk_id_;
};

// --- Pipeline steps, exposed for tests ---
// Applies a normalizer to valid UTF-8.
std::string apply_normalizer(const Normalizer& normalizer, std::string_view text);
// Splits `text` into pieces. `at_start`: the text begins the input (Metaspace "first").
std::vector<std::string> apply_pre_tokenizer(const PreTokenizer& pre_tokenizer, std::string_view text,
                                             bool at_start);
// Decodes token strings to text.
std::string apply_decoder(const Decoder& decoder, std::vector<std::string> tokens);

// The GPT-2 regex used by Hugging Face's ByteLevel pre-tokenizer.
extern const char* const kGpt2SplitPattern;

}  // namespace flame::llm
