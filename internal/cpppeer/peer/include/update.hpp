// The ESP8266 Update object for meshfleet's C++ test peer: the stock OTA
// receiver writes the image through it, and it writes the image to a file
// on the host, checks the MD5 as Updater::end(true) does on the ESP, and
// reports each step as a JSON line on stdout (events.hpp).
#ifndef MESHFLEET_PEER_UPDATE_HPP_
#define MESHFLEET_PEER_UPDATE_HPP_

#include <boost/uuid/detail/md5.hpp>
#include <cstdint>
#include <cstdio>
#include <string>

#include "events.hpp"

class FakeSerial;

class UpdateClass {
 public:
  std::string imagePath;   // where the image is written (--image)
  int progressEvery = 1;   // a "part" event every N parts (--progress-every)
  int expectedParts = 0;   // noPart of the transfer, for the events

  bool begin(uint32_t maxSize) {
    if (file) std::fclose(file);
    file = imagePath.empty() ? nullptr : std::fopen(imagePath.c_str(), "wb");
    md5 = boost::uuids::detail::md5();
    written = 0;
    parts = 0;
    expectedMD5.clear();
    error = file ? "" : "cannot open " + imagePath;
    peer::emit("started", "\"max\":" + std::to_string(maxSize));
    return file != nullptr;
  }

  void setMD5(const char* hex) { expectedMD5 = hex; }

  size_t write(const uint8_t* data, size_t len) {
    if (!file || std::fwrite(data, 1, len, file) != len) {
      error = "write failed";
      return 0;
    }
    std::fflush(file);  // a killed peer leaves what it wrote
    md5.process_bytes(data, len);
    written += len;
    ++parts;
    if (progressEvery > 0 &&
        (parts % progressEvery == 0 || parts == expectedParts)) {
      peer::emit("part", "\"part\":" + std::to_string(parts - 1) +
                             ",\"of\":" + std::to_string(expectedParts) +
                             ",\"bytes\":" + std::to_string(written));
    }
    return len;
  }

  // end(true) finishes the update if the MD5 of what was written is the
  // one announced; end(false) abandons it.
  bool end(bool evenIfRemaining = false) {
    if (!file) return false;
    std::fclose(file);
    file = nullptr;
    if (!evenIfRemaining) {
      error = "aborted";
      peer::emit("aborted", "\"bytes\":" + std::to_string(written));
      return false;
    }
    auto got = digestHex();
    bool ok = got == expectedMD5;
    error = ok ? "" : "md5 mismatch";
    peer::emit("md5", std::string("\"ok\":") + (ok ? "true" : "false") +
                          ",\"md5\":\"" + got + "\",\"want\":\"" +
                          peer::jsonEscape(expectedMD5) +
                          "\",\"bytes\":" + std::to_string(written));
    return ok;
  }

  bool isRunning() { return file != nullptr; }
  void printError(FakeSerial&) {
    if (!error.empty()) peer::emit("update_error", "\"error\":\"" + peer::jsonEscape(error) + "\"");
  }

 private:
  std::string digestHex() {
    boost::uuids::detail::md5::digest_type d;
    md5.get_digest(d);
    return hexOf(d, sizeof(d[0]));
  }
  // Boost up to 1.85 keeps the digest as four 32-bit words, later ones as
  // 16 bytes.
  template <class D>
  static std::string hexOf(const D& d, size_t elemSize) {
    std::string s;
    char buf[9];
    for (size_t i = 0; i < sizeof(d) / elemSize; ++i) {
      std::snprintf(buf, sizeof buf, elemSize == 1 ? "%02x" : "%08x",
                    (unsigned)d[i]);
      s += buf;
    }
    return s;
  }

  FILE* file = nullptr;
  boost::uuids::detail::md5 md5;
  size_t written = 0;
  int parts = 0;
  std::string expectedMD5;
  std::string error;
};

extern UpdateClass Update;

#endif
