// Tokenizer core: added-token splitting, the normalizer / pre-tokenizer /
// decoder steps (Hugging Face tokenizers semantics), encode and decode.
// The loaders are in tokenizer_json.cpp and tokenizer_gguf.cpp.
#include "llm/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>

#include "llm/unicode.h"
#include "llm/unicode_regex.h"
#include "util/error.h"
#include "util/utf8.h"

namespace flame::llm {

namespace fs = std::filesystem;
using utf8::next_code_point;

const char* const kGpt2SplitPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

namespace {

// --- Splitting: Hugging Face's NormalizedString::split ---

struct Span {
  size_t begin;
  size_t end;
  bool is_match;
};

// Covers `text` with alternating gaps and matches.
std::vector<Span> cover(size_t size, const std::vector<std::pair<size_t, size_t>>& matches) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) spans.push_back({prev, b, false});
    spans.push_back({b, e, true});
    prev = e;
  }
  if (prev != size) spans.push_back({prev, size, false});
  return spans;
}

std::vector<std::pair<size_t, size_t>> literal_matches(std::string_view text, std::string_view literal) {
  std::vector<std::pair<size_t, size_t>> matches;
  if (literal.empty()) return matches;
  for (size_t pos = text.find(literal); pos != std::string_view::npos;
       pos = text.find(literal, pos + literal.size())) {
    matches.emplace_back(pos, pos + literal.size());
  }
  return matches;
}

// Each character for which `pred` holds is one match.
template <typename Pred>
std::vector<std::pair<size_t, size_t>> char_matches(std::string_view text, Pred pred) {
  std::vector<std::pair<size_t, size_t>> matches;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t begin = pos;
    if (pred(next_code_point(text, &pos))) matches.emplace_back(begin, pos);
  }
  return matches;
}

// Applies a split behavior; returns the kept [begin, end) ranges, empty ones dropped.
std::vector<std::pair<size_t, size_t>> split_spans(std::vector<Span> spans, SplitBehavior behavior,
                                                   bool invert) {
  if (invert)
    for (auto& s : spans) s.is_match = !s.is_match;
  std::vector<std::pair<size_t, size_t>> out;
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const auto& s : spans)
        if (!s.is_match) out.emplace_back(s.begin, s.end);
      break;
    case SplitBehavior::Isolated:
      for (const auto& s : spans) out.emplace_back(s.begin, s.end);
      break;
    case SplitBehavior::Contiguous: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().second = s.end;
        } else {
          out.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().second = s.end;
        } else {
          out.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().first = it->begin;
        } else {
          out.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  std::vector<std::pair<size_t, size_t>> kept;
  kept.reserve(out.size());
  for (const auto& r : out)
    if (r.second > r.first) kept.push_back(r);
  return kept;
}

// Rust's is_ascii_punctuation || Unicode punctuation, as BERT and the Punctuation pre-tokenizer use.
bool is_bert_punctuation(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
           (cp >= 123 && cp <= 126);
  return unicode::is_punctuation(cp);
}

bool is_chinese_char(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// BERT counts \t \n \r as whitespace, not control.
bool is_bert_whitespace(uint32_t cp) {
  return cp == '\t' || cp == '\n' || cp == '\r' || unicode::is_whitespace(cp);
}
bool is_bert_control(uint32_t cp) {
  return cp != '\t' && cp != '\n' && cp != '\r' && unicode::is_other(cp);
}

std::string replace_all(std::string_view text, std::string_view pattern, std::string_view replacement) {
  if (pattern.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit = text.find(pattern); hit != std::string_view::npos; hit = text.find(pattern, pos)) {
    out.append(text.substr(pos, hit - pos));
    out.append(replacement);
    pos = hit + pattern.size();
  }
  out.append(text.substr(pos));
  return out;
}

const std::shared_ptr<const UnicodeRegex>& gpt2_regex() {
  static const std::shared_ptr<const UnicodeRegex> regex = std::make_shared<UnicodeRegex>(kGpt2SplitPattern);
  return regex;
}

const std::shared_ptr<const UnicodeRegex>& whitespace_regex() {
  static const std::shared_ptr<const UnicodeRegex> regex = std::make_shared<UnicodeRegex>("\\w+|[^\\w\\s]+");
  return regex;
}

struct Piece {
  std::string text;
  bool at_start;  // begins the whole input (Metaspace's "first" scheme)
};

// Splits every piece by `find` (text -> matches) with a behavior.
template <typename Find>
void split_pieces(std::vector<Piece>& pieces, SplitBehavior behavior, bool invert, Find find) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (auto& piece : pieces) {
    const auto ranges = split_spans(cover(piece.text.size(), find(piece.text)), behavior, invert);
    if (ranges.size() == 1 && ranges[0].first == 0 && ranges[0].second == piece.text.size()) {
      out.push_back(std::move(piece));
      continue;
    }
    for (const auto& [b, e] : ranges) out.push_back({piece.text.substr(b, e - b), piece.at_start && b == 0});
  }
  pieces.swap(out);
}

void pre_tokenize(const PreTokenizer& p, std::vector<Piece>& pieces) {
  using Kind = PreTokenizer::Kind;
  switch (p.kind) {
    case Kind::Sequence:
      for (const auto& child : p.children) pre_tokenize(child, pieces);
      break;
    case Kind::ByteLevel:
      if (p.add_prefix_space) {
        for (auto& piece : pieces)
          if (piece.text.empty() || piece.text[0] != ' ') piece.text.insert(0, 1, ' ');
      }
      if (p.use_regex) {
        split_pieces(pieces, SplitBehavior::Isolated, false,
                     [](const std::string& t) { return gpt2_regex()->find_all(t); });
      }
      for (auto& piece : pieces) piece.text = unicode::bytes_to_byte_level(piece.text);
      break;
    case Kind::Split:
      if (p.regex) {
        split_pieces(pieces, p.behavior, p.invert,
                     [&](const std::string& t) { return p.regex->find_all(t); });
      } else {
        split_pieces(pieces, p.behavior, p.invert,
                     [&](const std::string& t) { return literal_matches(t, p.literal); });
      }
      break;
    case Kind::Digits:
      split_pieces(pieces, p.individual_digits ? SplitBehavior::Isolated : SplitBehavior::Contiguous, false,
                   [](const std::string& t) { return char_matches(t, unicode::is_number); });
      break;
    case Kind::Metaspace:
      for (auto& piece : pieces) {
        piece.text = replace_all(piece.text, " ", p.replacement);
        const bool starts = piece.text.compare(0, p.replacement.size(), p.replacement) == 0;
        if (!starts && (p.prepend_scheme == PrependScheme::Always ||
                        (p.prepend_scheme == PrependScheme::First && piece.at_start))) {
          piece.text.insert(0, p.replacement);
        }
      }
      if (p.split) {
        split_pieces(pieces, SplitBehavior::MergedWithNext, false,
                     [&](const std::string& t) { return literal_matches(t, p.replacement); });
      }
      break;
    case Kind::Whitespace:
      split_pieces(pieces, SplitBehavior::Removed, true,
                   [](const std::string& t) { return whitespace_regex()->find_all(t); });
      break;
    case Kind::WhitespaceSplit:
      split_pieces(pieces, SplitBehavior::Removed, false,
                   [](const std::string& t) { return char_matches(t, unicode::is_whitespace); });
      break;
    case Kind::Bert:
      split_pieces(pieces, SplitBehavior::Removed, false,
                   [](const std::string& t) { return char_matches(t, unicode::is_whitespace); });
      split_pieces(pieces, SplitBehavior::Isolated, false,
                   [](const std::string& t) { return char_matches(t, is_bert_punctuation); });
      break;
    case Kind::Punctuation:
      split_pieces(pieces, p.behavior, false,
                   [](const std::string& t) { return char_matches(t, is_bert_punctuation); });
      break;
    case Kind::CharDelimiterSplit:
      split_pieces(pieces, SplitBehavior::Removed, false,
                   [&](const std::string& t) { return literal_matches(t, p.literal); });
      break;
  }
}

std::string bert_normalize(const Normalizer& n, std::string_view text) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const uint32_t cp = next_code_point(text, &pos);
    if (n.clean_text) {
      if (cp == 0 || cp == utf8::kReplacementCharacter || is_bert_control(cp)) continue;
      if (is_bert_whitespace(cp)) {
        cps.push_back(' ');
        continue;
      }
    }
    if (n.handle_chinese_chars && is_chinese_char(cp)) {
      cps.push_back(' ');
      cps.push_back(cp);
      cps.push_back(' ');
      continue;
    }
    cps.push_back(cp);
  }
  if (n.strip_accents) {
    cps = unicode::normalize(cps, unicode::NormalForm::NFD);
    std::vector<uint32_t> kept;
    kept.reserve(cps.size());
    for (uint32_t cp : cps)
      if (unicode::category(cp) != unicode::Category::Mn) kept.push_back(cp);
    cps.swap(kept);
  }
  if (n.lowercase) {
    std::vector<uint32_t> lower;
    lower.reserve(cps.size());
    for (uint32_t cp : cps) unicode::append_lowercase(cp, lower);
    cps.swap(lower);
  }
  return utf8::encode(cps);
}

bool is_word_char(uint32_t cp) {
  return cp == '_' || unicode::is_alphanumeric(cp);
}

// The code point ending just before byte `pos` of valid UTF-8.
uint32_t code_point_before(std::string_view text, size_t pos) {
  size_t begin = utf8::char_start(text, pos - 1);
  return next_code_point(text, &begin);
}

}  // namespace

// --- Added tokens: a byte trie, leftmost-longest matching as Hugging Face's AddedVocabulary ---

struct AddedTokenMatcher {
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // byte -> node
    int32_t token = -1;                                 // index into tokens
  };
  std::vector<Node> nodes{1};
  std::vector<AddedToken> tokens;
  std::array<bool, 256> first_byte{};

  struct Segment {
    size_t begin, end;
    int32_t id;  // -1: text
  };

  bool empty() const { return tokens.empty(); }

  void add(const AddedToken& token) {
    if (token.content.empty()) return;
    int32_t node = 0;
    for (char c : token.content) {
      const auto byte = static_cast<uint8_t>(c);
      int32_t next = child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes.size());
        nodes[node].children.emplace_back(byte, next);
        nodes.emplace_back();
      }
      node = next;
    }
    if (nodes[node].token < 0) {  // the first token with some content wins
      nodes[node].token = static_cast<int32_t>(tokens.size());
      tokens.push_back(token);
    }
    first_byte[static_cast<uint8_t>(token.content[0])] = true;
  }

  int32_t child(int32_t node, uint8_t byte) const {
    for (const auto& [b, n] : nodes[node].children)
      if (b == byte) return n;
    return -1;
  }

  std::vector<Segment> split(std::string_view text) const {
    std::vector<Segment> out;
    size_t text_start = 0;  // start of the pending text segment
    size_t pos = 0;
    while (pos < text.size()) {
      if (!first_byte[static_cast<uint8_t>(text[pos])]) {
        ++pos;
        continue;
      }
      int32_t best = -1;
      size_t best_end = 0;
      int32_t node = 0;
      for (size_t k = pos; k < text.size(); ++k) {
        node = child(node, static_cast<uint8_t>(text[k]));
        if (node < 0) break;
        if (nodes[node].token >= 0) {
          best = nodes[node].token;
          best_end = k + 1;
        }
      }
      if (best < 0) {
        ++pos;
        continue;
      }
      const AddedToken& token = tokens[best];
      size_t start = pos;
      size_t stop = best_end;
      if (token.single_word) {
        const bool word_before = start > 0 && is_word_char(code_point_before(text, start));
        size_t after = stop;
        const bool word_after = stop < text.size() && is_word_char(next_code_point(text, &after));
        if (word_before || word_after) {
          pos = stop;  // as a non-overlapping match iterator: scanning resumes after it
          continue;
        }
      }
      if (token.lstrip) {
        while (start > text_start && unicode::is_whitespace(code_point_before(text, start))) {
          start = utf8::char_start(text, start - 1);
        }
      }
      if (token.rstrip) {
        while (stop < text.size()) {
          size_t next = stop;
          if (!unicode::is_whitespace(next_code_point(text, &next))) break;
          stop = next;
        }
      }
      if (start > text_start) out.push_back({text_start, start, -1});
      out.push_back({start, stop, token.id});
      text_start = pos = stop;
    }
    if (text_start < text.size()) out.push_back({text_start, text.size(), -1});
    return out;
  }
};

// --- Pipeline steps ---

std::string apply_normalizer(const Normalizer& n, std::string_view text) {
  using Kind = Normalizer::Kind;
  switch (n.kind) {
    case Kind::Sequence: {
      std::string s(text);
      for (const auto& child : n.children) s = apply_normalizer(child, s);
      return s;
    }
    case Kind::Prepend: return text.empty() ? std::string() : n.content + std::string(text);
    case Kind::Replace: {
      if (!n.regex) return replace_all(text, n.pattern, n.content);
      std::string out;
      size_t prev = 0;
      for (const auto& [b, e] : n.regex->find_all(text)) {
        out.append(text.substr(prev, b - prev));
        out.append(n.content);
        prev = e;
      }
      out.append(text.substr(prev));
      return out;
    }
    case Kind::NFC: return unicode::normalize(text, unicode::NormalForm::NFC);
    case Kind::NFD: return unicode::normalize(text, unicode::NormalForm::NFD);
    case Kind::NFKC: return unicode::normalize(text, unicode::NormalForm::NFKC);
    case Kind::NFKD: return unicode::normalize(text, unicode::NormalForm::NFKD);
    case Kind::Lowercase: return unicode::lowercase(text);
    case Kind::Strip: {
      size_t begin = 0, end = text.size();
      if (n.strip_left) {
        while (begin < end) {
          size_t next = begin;
          if (!unicode::is_whitespace(next_code_point(text, &next))) break;
          begin = next;
        }
      }
      if (n.strip_right) {
        while (end > begin && unicode::is_whitespace(code_point_before(text, end))) {
          end = utf8::char_start(text, end - 1, begin);
        }
      }
      return std::string(text.substr(begin, end - begin));
    }
    case Kind::StripAccents: {
      std::string out;
      size_t pos = 0;
      while (pos < text.size()) {
        const uint32_t cp = next_code_point(text, &pos);
        if (!unicode::is_mark(cp)) utf8::append(out, cp);
      }
      return out;
    }
    case Kind::Bert: return bert_normalize(n, text);
  }
  return std::string(text);
}

std::vector<std::string> apply_pre_tokenizer(const PreTokenizer& pre_tokenizer, std::string_view text,
                                             bool at_start) {
  std::vector<Piece> pieces{{std::string(text), at_start}};
  pre_tokenize(pre_tokenizer, pieces);
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (auto& p : pieces) out.push_back(std::move(p.text));
  return out;
}

namespace {

// "<0xAB>": a byte-fallback token.
bool is_byte_token(const std::string& t) {
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]));
}

// Runs of byte tokens become their bytes when those are valid UTF-8, else one U+FFFD per byte (as HF).
void decode_byte_fallback(std::vector<std::string>& tokens) {
  std::vector<std::string> out;
  std::string bytes;
  const auto flush = [&] {
    if (bytes.empty()) return;
    if (utf8::find_invalid(bytes) == utf8::kValid) {
      out.push_back(bytes);
    } else {
      for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
    }
    bytes.clear();
  };
  for (auto& t : tokens) {
    if (is_byte_token(t)) {
      bytes += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
      continue;
    }
    flush();
    out.push_back(std::move(t));
  }
  flush();
  tokens.swap(out);
}

// Removes up to strip_start / strip_stop copies of the one-character `content` from each end.
void decode_strip(const Decoder& d, std::vector<std::string>& tokens) {
  const auto content = utf8::code_points(d.content);
  if (content.size() != 1) return;
  for (auto& t : tokens) {
    auto cps = utf8::code_points(t);
    size_t begin = 0, end = cps.size();
    while (begin < d.strip_start && begin < end && cps[begin] == content[0]) ++begin;
    size_t stripped = 0;
    while (stripped < d.strip_stop && end > begin && cps[end - 1] == content[0]) {
      --end;
      ++stripped;
    }
    t = utf8::encode(std::vector<uint32_t>(cps.begin() + begin, cps.begin() + end));
  }
}

// HF's clean_up_tokenization: drops the spaces the decoder put before punctuation and contractions.
std::string clean_up_tokenization(std::string t) {
  static const std::pair<const char*, const char*> kReplacements[] = {
      {" .", "."},   {" ?", "?"},           {" !", "!"},   {" ,", ","},     {" ' ", "'"},   {" n't", "n't"},
      {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kReplacements) t = replace_all(t, from, to);
  return t;
}

// Continuation tokens lose their prefix; other tokens after the first get a space in front.
void decode_wordpiece(const Decoder& d, std::vector<std::string>& tokens) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    auto& t = tokens[i];
    if (i != 0) {
      if (t.compare(0, d.content.size(), d.content) == 0) {
        t.erase(0, d.content.size());
      } else {
        t.insert(0, 1, ' ');
      }
    }
    if (d.cleanup) t = clean_up_tokenization(std::move(t));
  }
}

void decode_chain(const Decoder& d, std::vector<std::string>& tokens) {
  using Kind = Decoder::Kind;
  switch (d.kind) {
    case Kind::Sequence:
      for (const auto& child : d.children) decode_chain(child, tokens);
      break;
    case Kind::ByteLevel: {
      std::string bytes;
      for (const auto& t : tokens)
        if (!unicode::byte_level_to_bytes(t, &bytes)) bytes += t;  // not byte-level text: taken as is
      tokens.assign(1, utf8::sanitize(bytes));
      break;
    }
    case Kind::Metaspace:
      for (size_t i = 0; i < tokens.size(); ++i) {
        const bool drop = i == 0 && d.prepend_scheme != PrependScheme::Never;
        tokens[i] = replace_all(tokens[i], d.content, drop ? "" : " ");
      }
      break;
    case Kind::Replace:
      for (auto& t : tokens) t = replace_all(t, d.pattern, d.content);
      break;
    case Kind::ByteFallback: decode_byte_fallback(tokens); break;
    case Kind::Fuse: {
      std::string all;
      for (const auto& t : tokens) all += t;
      tokens.assign(1, all);
      break;
    }
    case Kind::Strip: decode_strip(d, tokens); break;
    case Kind::WordPiece: decode_wordpiece(d, tokens); break;
    case Kind::BpeSuffix:
      for (size_t i = 0; i < tokens.size(); ++i)
        tokens[i] = replace_all(tokens[i], d.content, i + 1 == tokens.size() ? "" : " ");
      break;
  }
}

}  // namespace

std::string apply_decoder(const Decoder& decoder, std::vector<std::string> tokens) {
  decode_chain(decoder, tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

// --- Tokenizer ---

Tokenizer::Tokenizer(Parts parts)
    : source_(std::move(parts.source)),
      description_(std::move(parts.description)),
      pieces_(std::move(parts.pieces)),
      types_(std::move(parts.types)),
      added_tokens_(std::move(parts.added_tokens)),
      raw_matcher_(std::make_unique<AddedTokenMatcher>()),
      normalized_matcher_(std::make_unique<AddedTokenMatcher>()),
      normalizer_(std::move(parts.normalizer)),
      pre_tokenizer_(std::move(parts.pre_tokenizer)),
      model_(std::move(parts.model)),
      decoder_(std::move(parts.decoder)),
      prefix_ids_(std::move(parts.prefix_ids)),
      suffix_ids_(std::move(parts.suffix_ids)),
      bos_id_(parts.bos_id),
      eos_id_(parts.eos_id),
      pad_id_(parts.pad_id),
      unk_id_(parts.unk_id) {
  if (!model_) fail("{}: tokenizer has no model", source_);
  const auto size = static_cast<int64_t>(pieces_.size());
  const auto check = [&](int32_t id, const char* what) {
    if (id < 0 || id >= size)
      fail("{}: {} id {} is outside the vocabulary (size {})", source_, what, id, size);
  };
  types_.resize(pieces_.size(), TokenType::Normal);
  special_.assign(pieces_.size(), false);
  added_.assign(pieces_.size(), false);
  for (const auto& t : added_tokens_) {
    check(t.id, "added token");
    added_[t.id] = true;
    if (t.special) special_[t.id] = true;
    (t.normalized ? normalized_matcher_ : raw_matcher_)->add(t);
  }
  for (int32_t id : prefix_ids_) check(id, "post-processor");
  for (int32_t id : suffix_ids_) check(id, "post-processor");
  for (const auto& id : {bos_id_, eos_id_, pad_id_, unk_id_})
    if (id) check(*id, "special token");
  piece_ids_.reserve(pieces_.size());
  for (size_t id = 0; id < pieces_.size(); ++id) {
    if (!pieces_[id].empty() || types_[id] != TokenType::Undefined)
      piece_ids_.emplace(pieces_[id], static_cast<int32_t>(id));
  }
  // Added tokens win over model pieces with the same text (as HF's token_to_id).
  for (const auto& t : added_tokens_) piece_ids_[t.content] = t.id;
}

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path json = path / "tokenizer.json";
    if (!fs::exists(json)) fail("{}: no tokenizer.json in this directory", path.string());
    return load_tokenizer_json(json);
  }
  if (!fs::exists(path, ec)) fail("{}: no such tokenizer file or directory", path.string());
  if (path.extension() == ".gguf") return load_gguf(path);
  if (path.extension() == ".json") return load_tokenizer_json(path);
  // Otherwise sniff the magic bytes.
  FILE* f = std::fopen(path.c_str(), "rb");
  char magic[4] = {};
  const size_t n = f != nullptr ? std::fread(magic, 1, 4, f) : 0;
  if (f != nullptr) std::fclose(f);
  if (n == 4 && std::string_view(magic, 4) == "GGUF") return load_gguf(path);
  return load_tokenizer_json(path);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const size_t bad = utf8::find_invalid(text);
  if (bad != utf8::kValid) {
    fail("{}: cannot tokenize text that is not valid UTF-8: byte {:#04x} at offset {}", source_,
         static_cast<uint8_t>(text[bad]), bad);
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + prefix_ids_.size() + suffix_ids_.size() + 4);
  if (add_special_tokens) ids = prefix_ids_;
  if (raw_matcher_->empty()) {
    encode_segment(text, true, ids);
  } else {
    for (const auto& s : raw_matcher_->split(text)) {
      if (s.id >= 0) {
        ids.push_back(s.id);
      } else {
        encode_segment(text.substr(s.begin, s.end - s.begin), s.begin == 0, ids);
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

void Tokenizer::encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& ids) const {
  if (!normalizer_) {
    encode_normalized(text, at_start, ids);
    return;
  }
  const std::string normalized = apply_normalizer(*normalizer_, text);
  if (normalized_matcher_->empty()) {
    encode_normalized(normalized, at_start, ids);
    return;
  }
  for (const auto& s : normalized_matcher_->split(normalized)) {
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else {
      encode_normalized(std::string_view(normalized).substr(s.begin, s.end - s.begin),
                        at_start && s.begin == 0, ids);
    }
  }
}

void Tokenizer::encode_normalized(std::string_view text, bool at_start, std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  if (!pre_tokenizer_) {
    model_->encode(text, ids);
    return;
  }
  std::vector<Piece> pieces{{std::string(text), at_start}};
  pre_tokenize(*pre_tokenizer_, pieces);
  for (const auto& p : pieces) model_->encode(p.text, ids);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  // As Hugging Face (and llama.cpp for user-defined tokens): added tokens are
  // copied as they are; the runs of model tokens between them go through the decoder.
  std::string out;
  std::vector<std::string> chunk;
  const auto flush = [&] {
    if (chunk.empty()) return;
    if (decoder_) {
      out += apply_decoder(*decoder_, std::move(chunk));
    } else {
      for (size_t i = 0; i < chunk.size(); ++i)
        out += (i == 0 ? "" : " ") + chunk[i];  // HF joins with spaces
    }
    chunk.clear();
  };
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      fail("{}: cannot decode id {}: outside the vocabulary (size {})", source_, id, vocab_size());
    }
    if (added_[id]) {
      if (skip_special_tokens && special_[id]) continue;
      flush();
      if (!decoder_ && !out.empty()) out += ' ';
      out += pieces_[id];
      continue;
    }
    chunk.push_back(pieces_[id]);
  }
  flush();
  return utf8::sanitize(out);
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    fail("{}: id {} is outside the vocabulary (size {})", source_, id, vocab_size());
  return pieces_[id];
}

std::optional<int32_t> Tokenizer::piece_to_id(std::string_view piece) const {
  const auto it = piece_ids_.find(std::string(piece));
  if (it == piece_ids_.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::Undefined;
  return types_[id];
}

}  // namespace flame::llm
