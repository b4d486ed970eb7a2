#include "kat/text.h"

#include <algorithm>
#include <filesystem>
#include <string_view>

#include "kat/error.h"
#include "kat/files.h"
#include "kat/lm.h"

namespace fs = std::filesystem;

namespace kat {

const char* default_text_dir() { return "/usr/share/games/fortunes"; }

std::vector<std::string> fortune_files(const std::string& dir) {
  std::error_code ec;
  check(fs::is_directory(dir, ec), dir,
        ": no such directory; the default text is Debian's fortunes package (apt-get install "
        "fortunes), or give --text FILE...");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const fs::path& p = e.path();
    if (e.is_symlink() || !e.is_regular_file() || p.has_extension()) continue;  // .dat, .u8
    files.push_back(p.string());
  }
  std::sort(files.begin(), files.end());
  check(!files.empty(), dir, ": no fortune files in it");
  return files;
}

int64_t invalid_utf8_offset(const std::string& s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const int64_t n = static_cast<int64_t>(s.size());
  for (int64_t i = 0; i < n;) {
    const unsigned char c = b[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > n || (len == 2 && c < 0xC2)) return i;
    for (int k = 1; k < len; k++)
      if ((b[i + k] >> 6) != 2) return i;
    if ((len == 3 && c == 0xE0 && b[i + 1] < 0xA0) || (len == 4 && c == 0xF0 && b[i + 1] < 0x90))
      return i;  // overlong
    if ((len == 3 && c == 0xED && b[i + 1] >= 0xA0) ||
        (len == 4 && c == 0xF4 && b[i + 1] >= 0x90) || (len == 4 && c > 0xF4))
      return i;  // a UTF-16 surrogate, or beyond U+10FFFF
    i += len;
  }
  return -1;
}

std::vector<std::string> read_documents(const std::vector<std::string>& paths, bool fortunes) {
  std::vector<std::string> docs;
  for (const std::string& path : paths) {
    const std::string text = read_text_file(path);
    check(!text.empty(), path, ": the file is empty");
    const size_t nul = text.find('\0');
    check(nul == std::string::npos, path, ": not text (a NUL byte at offset ", nul,
          "); kat trains on text files");
    const int64_t bad = invalid_utf8_offset(text);
    check(bad < 0, path, ": not UTF-8 text (an invalid byte sequence at offset ", bad, ")");
    if (!fortunes) {
      docs.push_back(text);
      continue;
    }
    std::string doc;  // fortunes are separated by lines holding only "%"
    auto finish = [&] {
      if (doc.find_first_not_of(" \t\r\n") != std::string::npos) docs.push_back(doc);
      doc.clear();
    };
    for (size_t at = 0; at < text.size();) {
      const size_t nl = text.find('\n', at);
      const size_t end = nl == std::string::npos ? text.size() : nl + 1;
      const std::string_view line(text.data() + at, end - at);
      if (line == "%\n" || line == "%")
        finish();
      else
        doc.append(line);
      at = end;
    }
    finish();
  }
  return docs;
}

TextCorpus split_corpus(const std::vector<std::string>& documents, int64_t context,
                        std::string source) {
  std::vector<int32_t> stream;
  int64_t bytes = 0;
  for (size_t i = 0; i < documents.size(); i++) {
    if (i > 0) stream.push_back(kEndOfText);
    for (unsigned char ch : documents[i]) stream.push_back(ch);
    bytes += static_cast<int64_t>(documents[i].size());
  }
  const int64_t n = static_cast<int64_t>(stream.size());
  const int64_t block = std::max<int64_t>(context + 1, std::min<int64_t>(4096, n / 10));
  check(n >= 10 * block, source, ": ", bytes, " bytes of text are too few for a context of ",
        context, " (need at least ", 10 * (context + 1), " for a 90/10 split)");
  TextCorpus c;
  for (int64_t at = 0, index = 0; at < n; at += block, index++) {
    std::vector<int32_t>& dst = index % 10 == 9 ? c.valid : c.train;
    dst.insert(dst.end(), stream.begin() + at, stream.begin() + std::min(n, at + block));
  }
  c.documents = static_cast<int64_t>(documents.size());
  c.bytes = bytes;
  c.source = std::move(source);
  return c;
}

}  // namespace kat
