// Byte-level text for the language models: documents joined by the end-of-text symbol and split
// into training and validation text deterministically.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kat {

struct TextCorpus {
  std::vector<int32_t> train, valid;  // tokens: bytes 0..255 and kEndOfText
  int64_t documents = 0, bytes = 0;
  std::string source;  // what it was read from, for messages
};

// Debian's fortunes package: the plain fortune files of /usr/share/games/fortunes (not the .dat
// indexes, links or subdirectories), one document per fortune (the text between "%" lines).
const char* default_text_dir();
std::vector<std::string> fortune_files(const std::string& dir);

// Reads text files (each one document; fortune files, when `fortunes`, one document per fortune).
// A file that is empty, unreadable, or not text (a NUL byte or invalid UTF-8) is an error naming
// it and the offset.
std::vector<std::string> read_documents(const std::vector<std::string>& paths, bool fortunes);

// Joins the documents with kEndOfText and cuts the stream into blocks of `block` tokens (at least
// context + 1); every tenth block (the 10th, 20th, ...) is validation text, the rest training
// text: 90/10 and spread over the whole corpus, the same split on every run.
TextCorpus split_corpus(const std::vector<std::string>& documents, int64_t context,
                        std::string source);

// UTF-8 check: the offset of the first byte that is not part of a valid sequence, or -1.
int64_t invalid_utf8_offset(const std::string& s);

}  // namespace kat
