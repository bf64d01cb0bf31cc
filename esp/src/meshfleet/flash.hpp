// What the OTA receiver keeps across a restart: a small file (LittleFS on
// the chips, a file in the node's state directory on the host) holding
// the transfer's key, the bitmap of the chunks written to the update
// partition, and for compressed transfers the decoder's state at that
// point. See MeshFleetOTA.h for when it is written and how it is used.
#ifndef MESHFLEET_FLASH_HPP_
#define MESHFLEET_FLASH_HPP_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(PAINLESSMESH_BOOST)
#include <string>
#elif defined(ESP32) || defined(ESP8266)
#include <LittleFS.h>
#endif

namespace meshfleet {

// FlashFile is one small file written whole and read whole, in pieces:
// beginWrite, write..., commit (which replaces the old content at once,
// so a power cut leaves the old file or the new one, never half of
// each); beginRead, read..., endRead.
class FlashFile {
 public:
  virtual ~FlashFile() {}
  virtual bool beginWrite() = 0;
  virtual bool write(const void* data, size_t n) = 0;
  virtual bool commit() = 0;
  virtual bool beginRead() = 0;
  virtual bool read(void* data, size_t n) = 0;
  virtual void endRead() = 0;
  virtual void remove() = 0;
};

#if defined(PAINLESSMESH_BOOST)
// HostFlashFile is a file in a host directory (the node's state
// directory): written to a temporary file and renamed over the old one.
class HostFlashFile : public FlashFile {
 public:
  explicit HostFlashFile(std::string path) : path_(path) {}
  ~HostFlashFile() { close(); }
  bool beginWrite() override {
    close();
    f_ = fopen((path_ + ".tmp").c_str(), "wb");
    return f_ != nullptr;
  }
  bool write(const void* data, size_t n) override { return f_ && fwrite(data, 1, n, f_) == n; }
  bool commit() override {
    if (!f_) return false;
    bool ok = fflush(f_) == 0;
    fclose(f_);
    f_ = nullptr;
    return ok && rename((path_ + ".tmp").c_str(), path_.c_str()) == 0;
  }
  bool beginRead() override {
    close();
    f_ = fopen(path_.c_str(), "rb");
    return f_ != nullptr;
  }
  bool read(void* data, size_t n) override { return f_ && fread(data, 1, n, f_) == n; }
  void endRead() override { close(); }
  void remove() override {
    close();
    ::remove(path_.c_str());
  }

 private:
  void close() {
    if (f_) fclose(f_);
    f_ = nullptr;
  }
  std::string path_;
  FILE* f_ = nullptr;
};
#elif defined(ESP32) || defined(ESP8266)
// LittleFSFile is a file on the chip's LittleFS (LittleFS.begin() is the
// firmware's, as for painlessMesh's own OTA file). LittleFS writes a file
// copy-on-write, and rename replaces atomically.
class LittleFSFile : public FlashFile {
 public:
  explicit LittleFSFile(const char* path) : path_(path) {}
  bool beginWrite() override {
    tmp_ = String(path_) + ".tmp";
    f_ = LittleFS.open(tmp_, "w");
    return (bool)f_;
  }
  bool write(const void* data, size_t n) override { return f_ && f_.write((const uint8_t*)data, n) == n; }
  bool commit() override {
    if (!f_) return false;
    f_.close();
    LittleFS.remove(path_);
    return LittleFS.rename(tmp_, path_);
  }
  bool beginRead() override {
    f_ = LittleFS.open(path_, "r");
    return (bool)f_;
  }
  bool read(void* data, size_t n) override { return f_ && f_.read((uint8_t*)data, n) == n; }
  void endRead() override { f_.close(); }
  void remove() override { LittleFS.remove(path_); }

 private:
  const char* path_;
  String tmp_;
  File f_;
};
#endif

// ChunkBitmap says which of a transfer's chunks are written, for up to
// N chunks (N/8 bytes: 32 bytes for a 1 MiB image in 4 KiB chunks).
template <uint32_t N>
class ChunkBitmap {
 public:
  enum : uint32_t { kMax = N, kBytes = (N + 7) / 8 };
  void clear(uint32_t n) {
    n_ = n;
    count_ = 0;
    memset(bits_, 0, sizeof bits_);
  }
  bool has(uint32_t i) const { return i < n_ && (bits_[i >> 3] >> (i & 7) & 1); }
  void set(uint32_t i) {
    if (i >= n_ || has(i)) return;
    bits_[i >> 3] |= (uint8_t)(1u << (i & 7));
    ++count_;
  }
  // nextMissing is the first chunk from i on not held, or n.
  uint32_t nextMissing(uint32_t i) const {
    while (i < n_ && has(i)) ++i;
    return i;
  }
  uint32_t count() const { return count_; }
  uint32_t size() const { return n_; }
  bool full() const { return count_ == n_; }
  const uint8_t* bytes() const { return bits_; }
  uint32_t usedBytes() const { return (n_ + 7) / 8; }
  // load takes bits from a file (usedBytes of them).
  uint8_t* load() { return bits_; }
  void recount() {
    count_ = 0;
    for (uint32_t i = 0; i < n_; ++i) count_ += has(i) ? 1 : 0;
  }

 private:
  uint8_t bits_[kBytes];
  uint32_t n_ = 0, count_ = 0;
};

}  // namespace meshfleet

#endif
