// The ESP8266 LittleFS file API for meshfleet's C++ test peer: the stock
// OTA receiver keeps /ota_fw.json (the md5 of the installed image) there.
// Files live in a host directory (--fs), so they outlast a restart.
#ifndef MESHFLEET_PEER_LITTLEFS_H_
#define MESHFLEET_PEER_LITTLEFS_H_

#include <cstdio>
#include <string>
#include <sys/stat.h>

class File {
 public:
  File() {}
  explicit File(FILE* f) : f(f) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  File(File&& o) : f(o.f) { o.f = nullptr; }
  ~File() { close(); }

  explicit operator bool() const { return f != nullptr; }
  int available() {
    if (!f) return 0;
    int c = std::fgetc(f);
    if (c == EOF) return 0;
    std::ungetc(c, f);
    return 1;
  }
  int read() { return f ? std::fgetc(f) : -1; }
  size_t print(const std::string& s) {
    return f ? std::fwrite(s.data(), 1, s.size(), f) : 0;
  }
  void close() {
    if (f) std::fclose(f);
    f = nullptr;
  }

 private:
  FILE* f = nullptr;
};

class LittleFSClass {
 public:
  std::string root = ".";  // the host directory (--fs)

  bool begin() { return true; }
  bool exists(const std::string& path) {
    struct stat st;
    return ::stat(hostPath(path).c_str(), &st) == 0;
  }
  File open(const std::string& path, const char* mode) {
    return File(std::fopen(hostPath(path).c_str(), mode[0] == 'w' ? "wb" : "rb"));
  }

 private:
  std::string hostPath(const std::string& path) { return root + "/" + path; }
};

extern LittleFSClass LittleFS;

#endif
