// The packages of meshfleet's OTA receiver (ota/PROTOCOL.md, types
// 720-725) as the ESP library sends and reads them, the basE91 payload
// codec, and the ImageWriter interface the receiver writes the update
// partition through. The receiver itself is MeshFleetOTA.h.
#ifndef MESHFLEET_OTA_HPP_
#define MESHFLEET_OTA_HPP_

#include <stdint.h>
#include <string.h>

#include "meshfleet/dense.hpp"
#include "meshfleet/heatshrink.hpp"
#include "painlessmesh/protocol.hpp"

namespace meshfleet {

enum : int { kTypeOffer = 720, kTypeNeed = 721, kTypeChunk = 722, kTypeReport = 723, kTypeRefuse = 724, kTypeEnd = 725 };
enum : size_t { kMaxChunk = 4096, kOTAWindow = 4 };
// The transfer's compression (the Offer's method).
enum : uint8_t { kCodecNone, kCodecHeatshrink, kCodecDeflate, kCodecUnknown };

// ImageWriter is the update partition: a file on the host, the flash
// partition on the chips (partition.hpp). Chunks of an uncompressed
// transfer are written where they belong, in any order; compressed
// transfers are written in order as they are decoded.
class ImageWriter {
 public:
  virtual ~ImageWriter() {}
  // capacity is the largest image the partition takes.
  virtual uint32_t capacity() = 0;
  // begin opens the partition for an image of size bytes; resume keeps
  // what an interrupted transfer of the same image wrote (holds names it).
  virtual bool begin(uint32_t size, bool resume) = 0;
  // holds says that offset..offset+n was written before a restart.
  virtual void holds(uint32_t offset, uint32_t n) { (void)offset, (void)n; }
  virtual bool write(uint32_t offset, const uint8_t* data, size_t n) = 0;
  virtual bool read(uint32_t offset, uint8_t* data, size_t n) = 0;
  // sync makes what was written durable before a checkpoint says so.
  virtual bool sync() = 0;
  // end checks the whole image's MD5 (lowercase hex), read back, and if
  // it matches makes it the next boot's image; false otherwise.
  virtual bool end(const char* md5) = 0;
  virtual void abort() = 0;
};

// NeedPackage (721) asks the distributor (routing 1) or the parent
// (routing 0) for chunks "a-b,c".
class NeedPackage : public painlessmesh::protocol::PackageInterface {
 public:
  uint32_t from = 0, dest = 0;
  int routing = 1;
  const char* id = "";
  const char* parts = "";
  JsonObject addTo(JsonObject&& o) const override {
    o["from"] = from;
    o["dest"] = dest;
    o["routing"] = routing;
    o["type"] = kTypeNeed;
    o["id"] = id;
    o["parts"] = parts;
    return o;
  }
#if ARDUINOJSON_VERSION_MAJOR < 7
  size_t jsonObjectSize() const override { return JSON_OBJECT_SIZE(6); }
#endif
};

// ChunkPackage (722) answers a Need with a chunk this node holds: a
// neighbour's hop by hop (routing 0), another node's routed (1).
class ChunkPackage : public painlessmesh::protocol::PackageInterface {
 public:
  uint32_t from = 0, dest = 0, index = 0;
  int routing = 0;
  const char* id = "";
  const char* data = "";
  JsonObject addTo(JsonObject&& o) const override {
    o["from"] = from;
    o["dest"] = dest;
    o["routing"] = routing;
    o["type"] = kTypeChunk;
    o["id"] = id;
    o["i"] = index;
    o["d"] = data;
    return o;
  }
#if ARDUINOJSON_VERSION_MAJOR < 7
  size_t jsonObjectSize() const override { return JSON_OBJECT_SIZE(7); }
#endif
};

// RefusePackage (724) tells a node that asked this one does not hold
// what it asked for: it asks the next node up, or the distributor.
class RefusePackage : public painlessmesh::protocol::PackageInterface {
 public:
  uint32_t from = 0, dest = 0;
  int routing = 0;
  const char* id = "";
  JsonObject addTo(JsonObject&& o) const override {
    o["from"] = from;
    o["dest"] = dest;
    o["routing"] = routing;
    o["type"] = kTypeRefuse;
    o["id"] = id;
    return o;
  }
#if ARDUINOJSON_VERSION_MAJOR < 7
  size_t jsonObjectSize() const override { return JSON_OBJECT_SIZE(5); }
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
