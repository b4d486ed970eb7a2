// Errors: one exception type whose message tells the user what went wrong and what to do.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace kat {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// fail("cannot open ", path, ": ", reason) throws kat::Error with the parts concatenated.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  throw Error(s.str());
}

// check(cond, parts...) fails with the message when cond is false.
template <class... Parts>
void check(bool cond, const Parts&... parts) {
  if (!cond) fail(parts...);
}

}  // namespace kat
