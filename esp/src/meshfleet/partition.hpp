// PartitionWriter: the chips' ImageWriter, writing the update partition
// directly rather than through the cores' Update object, because Update
// writes strictly in order, cannot read back, and forgets everything in
// a reboot, while the receiver writes uncompressed chunks where they
// belong in any order, resumes a transfer after a restart, reads its
// window back (compressed resume) and serves children's repairs from the
// partition. The MD5 is computed by reading the image back at the end;
// only a matching image is made the next boot's.
//
// A 4 KiB flash sector is erased before its first write, unless it holds
// bytes written before a restart (holds): rewriting the same bytes into
// NOR flash leaves them as they are, so chunks written again after a
// resume need no erase.
//
// ESP32: the next OTA app partition (esp_partition_*), switched with
// esp_ota_set_boot_partition. ESP8266: the free space below the file
// system that Updater uses (the same address for the same size),
// switched with the eboot copy command, as Updater::end does.
//
// Not compiled here (no ESP toolchain on the build machine): written
// against the Arduino cores' APIs (ESP32 core 2.x/3.x, ESP8266 core 3.x).
#ifndef MESHFLEET_PARTITION_HPP_
#define MESHFLEET_PARTITION_HPP_

#if !defined(PAINLESSMESH_BOOST)

#include <Arduino.h>
#include <MD5Builder.h>

#include "meshfleet/ota.hpp"

#if defined(ESP32)
#include <esp_ota_ops.h>
#include <esp_partition.h>
#else
#include <flash_hal.h>
extern "C" {
#include "eboot_command.h"
}
#endif

namespace meshfleet {

class PartitionWriter : public ImageWriter {
 public:
  enum : uint32_t { kSector = 4096, kMaxSectors = 1024 };  // 4 MiB

  uint32_t capacity() override {
#if defined(ESP32)
    const esp_partition_t* p = esp_ota_get_next_update_partition(nullptr);
    return p ? p->size : 0;
#else
    return ESP.getFreeSketchSpace();
#endif
  }

  bool begin(uint32_t size, bool resume) override {
    (void)resume;
    if (size == 0 || size > capacity() || (size + kSector - 1) / kSector > kMaxSectors) return false;
    size_ = size;
    memset(erased_, 0, sizeof erased_);
#if defined(ESP32)
    part_ = esp_ota_get_next_update_partition(nullptr);
    return part_ != nullptr;
#else
    // Updater::begin's address: the end of the space below the file
    // system, less the image rounded up to sectors.
    uint32_t rounded = (size + kSector - 1) & ~(kSector - 1);
    uint32_t end = FS_PHYS_ADDR;
    if (end <= rounded) return false;
    start_ = end - rounded;
    return true;
#endif
  }

  void holds(uint32_t offset, uint32_t n) override {
    for (uint32_t s = offset / kSector; n && s <= (offset + n - 1) / kSector && s < kMaxSectors; ++s) mark(s);
  }

  bool write(uint32_t offset, const uint8_t* data, size_t n) override {
    if (offset + n > size_) return false;
    for (uint32_t s = offset / kSector; n && s <= (offset + n - 1) / kSector; ++s) {
      if (!erasedAt(s) && !erase(s)) return false;
      mark(s);
    }
#if defined(ESP32)
    return esp_partition_write(part_, offset, data, n) == ESP_OK;
#else
    return ESP.flashWrite(start_ + offset, data, n);  // core 3.x: any alignment
#endif
  }

  bool read(uint32_t offset, uint8_t* data, size_t n) override {
    if (offset + n > size_) return false;
#if defined(ESP32)
    return esp_partition_read(part_, offset, data, n) == ESP_OK;
#else
    return ESP.flashRead(start_ + offset, data, n);
#endif
  }

  bool sync() override { return true; }  // flash writes are done when they return

  bool end(const char* md5) override {
    MD5Builder h;
    h.begin();
    uint8_t buf[256];
    for (uint32_t at = 0; at < size_; at += sizeof buf) {
      size_t k = size_ - at < sizeof buf ? size_ - at : sizeof buf;
      if (!read(at, buf, k)) return false;
      h.add(buf, k);
      if ((at & 0xffff) == 0) yield();
    }
    h.calculate();
    if (!h.toString().equalsIgnoreCase(md5)) return false;
#if defined(ESP32)
    return esp_ota_set_boot_partition(part_) == ESP_OK;
#else
    eboot_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.action = ACTION_COPY_RAW;
    cmd.args[0] = start_;
    cmd.args[1] = 0x00000;
    cmd.args[2] = size_;
    eboot_command_write(&cmd);
    return true;
#endif
  }

  void abort() override { size_ = 0; }

 private:
  bool erasedAt(uint32_t s) const { return erased_[s >> 3] >> (s & 7) & 1; }
  void mark(uint32_t s) { erased_[s >> 3] |= (uint8_t)(1u << (s & 7)); }
  bool erase(uint32_t s) {
#if defined(ESP32)
    return esp_partition_erase_range(part_, s * kSector, kSector) == ESP_OK;
#else
    return ESP.flashEraseSector((start_ + s * kSector) / kSector);
#endif
  }

  uint32_t size_ = 0;
  uint8_t erased_[kMaxSectors / 8];
#if defined(ESP32)
  const esp_partition_t* part_ = nullptr;
#else
  uint32_t start_ = 0;
#endif
};

// The name the first layer used.
using UpdateWriter = PartitionWriter;

}  // namespace meshfleet

#endif
#endif
