// flame llm tokenize: show how the LLM's tokenizer splits a text.
#include <fmt/format.h>

#include "cli/commands.h"
#include "llm/tokenizer.h"

namespace flame::cli {

namespace {

// Control characters and backslashes escaped, so each piece stays on one line.
std::string printable(const std::string& piece) {
  std::string out;
  for (char c : piece) {
    const auto b = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (b < 0x20 || b == 0x7F) {
      out += fmt::format("\\x{:02x}", b);
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

void add_llm_tokenize_command(CLI::App& llm) {
  struct Options {
    std::string path;
    std::string text;
    bool no_special = false;
    bool ids_only = false;
  };
  auto opts = std::make_shared<Options>();
  auto* cmd =
      llm.add_subcommand("tokenize", "Tokenize a text: print the ids, then one line per token: id<TAB>piece");
  cmd->add_option("PATH", opts->path,
                  "checkpoint directory with tokenizer.json, a tokenizer.json, or a .gguf vocabulary")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("TEXT", opts->text, "text to tokenize")->required();
  cmd->add_flag("--no-special", opts->no_special, "do not add special tokens (BOS, EOS, CLS/SEP)");
  cmd->add_flag("--ids-only", opts->ids_only, "print only the line of ids");
  cmd->callback([opts] {
    const auto tokenizer = llm::Tokenizer::load(opts->path);
    const auto ids = tokenizer->encode(opts->text, !opts->no_special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += fmt::format("{}{}", i == 0 ? "" : " ", ids[i]);
    fmt::print("{}\n", line);
    if (opts->ids_only) return;
    for (int32_t id : ids) fmt::print("{}\t{}\n", id, printable(tokenizer->id_to_piece(id)));
    fmt::print("# {} tokens; {}\n", ids.size(), tokenizer->description());
  });
}

}  // namespace flame::cli
