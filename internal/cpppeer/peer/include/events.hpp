// Events of meshfleet's C++ test peer: one JSON object a line on stdout,
// {"event":NAME,"node":ID,...}, read by package internal/cpppeer.
#ifndef MESHFLEET_PEER_EVENTS_HPP_
#define MESHFLEET_PEER_EVENTS_HPP_

#include <cstdint>
#include <cstdio>
#include <string>

namespace peer {

extern uint32_t nodeId;

inline std::string jsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if ((unsigned char)c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// emit writes one event; fields is the rest of the object ("k":v,...).
inline void emit(const std::string& name, const std::string& fields = "") {
  std::printf("{\"event\":\"%s\",\"node\":%u%s%s}\n", name.c_str(),
              (unsigned)nodeId, fields.empty() ? "" : ",", fields.c_str());
  std::fflush(stdout);
}

}  // namespace peer

#endif
