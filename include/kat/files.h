// Whole-file reads and atomic writes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kat {

// Reads a whole file; a kat::Error names the path and the OS reason when it cannot.
std::vector<uint8_t> read_file(const std::string& path);
std::string read_text_file(const std::string& path);

// Writes `data` to a temporary file beside `path`, flushes it, then renames it over `path`, so a
// reader never sees a half-written file and a crash leaves the old one intact.
void write_file_atomic(const std::string& path, std::string_view data);

bool file_exists(const std::string& path);

}  // namespace kat
