// Command-line flags of the benchmark programs, declared once:
//   bench::Flags f("train_throughput");
//   f.add("--batch", o.batch).add("--no-torch", o.torch, false);
//   f.parse(argc, argv, 1);
// "--name value" sets a string, integer or number (a comma list for vectors); a switch stores the
// value given to add(). Unknown flags and malformed values are errors that name the program.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kat/error.h"

namespace kat::bench {

class Flags {
 public:
  explicit Flags(std::string program) : program_(std::move(program)) {}

  Flags& add(const std::string& name, std::string& dst) {
    return valued(name, [&dst](const std::string& v) { dst = v; });
  }
  Flags& add(const std::string& name, int& dst) {
    return valued(name,
                  [&dst, name](const std::string& v) { dst = static_cast<int>(whole(name, v)); });
  }
  Flags& add(const std::string& name, int64_t& dst) {
    return valued(name, [&dst, name](const std::string& v) { dst = whole(name, v); });
  }
  template <class T>
  Flags& add(const std::string& name, std::vector<T>& dst) {
    return valued(name, [&dst, name](const std::string& v) {
      dst.clear();
      std::stringstream s(v);
      for (std::string item; std::getline(s, item, ',');)
        dst.push_back(static_cast<T>(whole(name, item)));
    });
  }
  Flags& add(const std::string& name, std::vector<std::string>& dst) {
    return valued(name, [&dst](const std::string& v) {
      dst.clear();
      std::stringstream s(v);
      for (std::string item; std::getline(s, item, ',');) dst.push_back(item);
    });
  }
  // A switch: `--name` stores `value`.
  Flags& add(const std::string& name, bool& dst, bool value) {
    switches_[name] = [&dst, value] { dst = value; };
    return *this;
  }

  void parse(int argc, char** argv, int first) const {
    for (int i = first; i < argc; i++) {
      const std::string a = argv[i];
      if (const auto s = switches_.find(a); s != switches_.end()) {
        s->second();
      } else if (const auto v = valued_.find(a); v != valued_.end()) {
        check(i + 1 < argc, a, " needs a value");
        v->second(argv[++i]);
      } else {
        fail("unknown option ", a, " (see the comment at the top of bench/", program_, ".cpp)");
      }
    }
  }

 private:
  static int64_t whole(const std::string& name, const std::string& v) {
    try {
      size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used == v.size()) return x;
    } catch (const std::exception&) {
    }
    fail(name, " expects a whole number, not '", v, "'");
  }
  Flags& valued(const std::string& name, std::function<void(const std::string&)> set) {
    valued_[name] = std::move(set);
    return *this;
  }

  std::string program_;
  std::map<std::string, std::function<void(const std::string&)>> valued_;
  std::map<std::string, std::function<void()>> switches_;
};

}  // namespace kat::bench
