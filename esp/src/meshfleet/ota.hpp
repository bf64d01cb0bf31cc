// The first layer of meshfleet's OTA receiver (ota/PROTOCOL.md, types
// 720-725): Offer, Need, Chunk, Report and End for the pipelined and
// broadcast modes, uncompressed or heatshrink (decompressed as chunks
// come, heatshrink.hpp), written through an Update-like interface that
// verifies the image's MD5 before the switch. Chunks are written in order
// (asked for a window at a time; in broadcast mode taken from the push,
// and after a gap asked from the distributor), so the receiver holds one
// chunk (kMaxChunk bytes), the heatshrink window and no bitmap. Not yet:
// asking the parent for repairs, deflate, resume after a reboot
// from flash, serving children's repairs, signed manifests, the ESP32
// trial boot. An Offer the receiver cannot take is left to the stock
// receiver, which the distributor also serves.
#ifndef MESHFLEET_OTA_HPP_
#define MESHFLEET_OTA_HPP_

#include <stdint.h>
#include <string.h>

#include "meshfleet/heatshrink.hpp"
#include "painlessmesh/protocol.hpp"

namespace meshfleet {

enum : int { kTypeOffer = 720, kTypeNeed = 721, kTypeChunk = 722, kTypeReport = 723, kTypeRefuse = 724, kTypeEnd = 725 };
enum : size_t { kMaxChunk = 4096, kOTAWindow = 4 };
// The transfer's compression (the Offer's method).
enum : uint8_t { kCodecNone, kCodecHeatshrink, kCodecDeflate, kCodecUnknown };

// ImageWriter is where an image goes: Update on the chips (begin, write,
// setMD5 + end(true) verifying), a file on the host.
class ImageWriter {
 public:
  virtual ~ImageWriter() {}
  virtual bool begin(uint32_t size) = 0;
  virtual bool write(const uint8_t* data, size_t n) = 0;
  // end checks the whole image's MD5 (lowercase hex) and, if it matches,
  // makes it the next boot's image; false otherwise.
  virtual bool end(const char* md5) = 0;
  virtual void abort() = 0;
};

// decodeDense decodes basE91 with '-' for '"' (ota/PROTOCOL.md, "Payload
// encodings") into out (at most max bytes); -1 on a byte outside the
// alphabet or an overlong payload.
inline long decodeDense(const char* s, uint8_t* out, size_t max) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,./:;<=>?@[]^_`{|}~-";
  uint32_t b = 0;
  unsigned n = 0;
  int v = -1;
  size_t o = 0;
  for (const char* p = s; *p; ++p) {
    const char* at = strchr(alphabet, *p);
    if (!at) return -1;
    int d = (int)(at - alphabet);
    if (v < 0) {
      v = d;
      continue;
    }
    v += d * 91;
    b |= (uint32_t)v << n;
    n += (v & 8191) > 88 ? 13 : 14;
    while (n > 7) {
      if (o >= max) return -1;
      out[o++] = (uint8_t)b;
      b >>= 8;
      n -= 8;
    }
    v = -1;
  }
  if (v >= 0) {
    if (o >= max) return -1;
    out[o++] = (uint8_t)(b | (uint32_t)v << n);
  }
  return (long)o;
}

// NeedPackage (721) asks the distributor for chunks "a-b".
class NeedPackage : public painlessmesh::protocol::PackageInterface {
 public:
  uint32_t from = 0, dest = 0;
  const char* id = "";
  const char* parts = "";
  JsonObject addTo(JsonObject&& o) const override {
    o["from"] = from;
    o["dest"] = dest;
    o["routing"] = 1;
    o["type"] = kTypeNeed;
    o["id"] = id;
    o["parts"] = parts;
    return o;
  }
#if ARDUINOJSON_VERSION_MAJOR < 7
  size_t jsonObjectSize() const override { return JSON_OBJECT_SIZE(6); }
#endif
};

// ReportPackage (723) tells the distributor the receiver's state.
class ReportPackage : public painlessmesh::protocol::PackageInterface {
 public:
  uint32_t from = 0, dest = 0;
  const char* id = "";
  const char* state = "";
  uint32_t have = 0, total = 0, hi = 0, lost = 0;
  const char* active = "";
  const char* err = "";
  JsonObject addTo(JsonObject&& o) const override {
    o["from"] = from;
    o["dest"] = dest;
    o["routing"] = 1;
    o["type"] = kTypeReport;
    o["id"] = id;
    o["state"] = state;
    o["have"] = have;
    o["total"] = total;
    o["hi"] = hi;
    o["lost"] = lost;
    o["active"] = active;
    if (*err) o["err"] = err;
    return o;
  }
#if ARDUINOJSON_VERSION_MAJOR < 7
  size_t jsonObjectSize() const override { return JSON_OBJECT_SIZE(12); }
#endif
};

}  // namespace meshfleet

#endif
