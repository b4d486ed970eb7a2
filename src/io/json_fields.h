// Strict reading of JSON config objects: unknown keys and wrong types are errors naming the file.
#pragma once

#include <charconv>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "kat/config.h"
#include "kat/error.h"

namespace kat::json_fields {

using json = nlohmann::json;

inline void check_keys(const json& j, const std::set<std::string>& allowed,
                       const std::string& where, const std::string& origin) {
  check(j.is_object(), origin, ": ", where, " must be a JSON object");
  for (const auto& [key, value] : j.items())
    check(allowed.count(key) > 0, origin, ": unknown key '", key, "' in ", where);
}

template <class T>
T get(const json& j, const char* key, const std::string& origin) {
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    fail(origin, ": '", key, "' has the wrong type");
  }
}

// A float as the double of its shortest decimal form, so 1e-6f is written 1e-06, not
// 9.999999974752427e-07; reading it back as a float gives the same float.
inline double float_for_json(float x) {
  char text[32];
  const auto end = std::to_chars(text, text + sizeof(text) - 1, x).ptr;
  *end = '\0';
  return std::strtod(text, nullptr);
}

// The "kat" keys every model config shares: ffn ("kan" or "mlp"), mixer and window.
inline void read_ffn_and_mixer(const json& k, Ffn& ffn, Mixer& mixer, int& window,
                               const std::string& origin) {
  if (k.contains("ffn")) {
    const auto f = get<std::string>(k, "ffn", origin);
    check(f == "kan" || f == "mlp", origin, ": kat.ffn must be \"kan\" or \"mlp\", not \"", f,
          "\"");
    ffn = f == "kan" ? Ffn::Kan : Ffn::Mlp;
  }
  if (k.contains("mixer")) mixer = parse_mixer(get<std::string>(k, "mixer", origin));
  if (k.contains("window")) window = get<int>(k, "window", origin);
}

// "--config X": a path when it has a '/' or ends in .json, else a name.
inline bool names_a_file(const std::string& s) {
  return s.find('/') != std::string::npos || s.find(".json") != std::string::npos;
}

inline json parse(const std::string& text, const std::string& origin) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(origin, ": not valid JSON (", e.what(), ")");
  }
}

}  // namespace kat::json_fields
