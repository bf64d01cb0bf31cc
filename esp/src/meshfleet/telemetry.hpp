// Telemetry frames (type 700), version 1, byte for byte as
// status/PROTOCOL.md §2.1 and status/telemetry/telemetry.go define them:
// a 9-byte header, then a keyframe (every field) or a delta against the
// last keyframe (a LEB128 presence bitmap, then the changed fields).
// Plain C++ without Arduino, so the host build and the chips share it.
#ifndef MESHFLEET_TELEMETRY_HPP_
#define MESHFLEET_TELEMETRY_HPP_

#include <stddef.h>
#include <stdint.h>

namespace meshfleet {

// Values is one frame's content, in the wire order of the field table.
struct Values {
  uint32_t uptime = 0;      // s
  uint32_t freeMemory = 0;  // bytes, 0 = unknown
  uint32_t messagesRx = 0;
  uint32_t messagesTx = 0;
  uint32_t messagesDropped = 0;
  uint32_t latency = 0;     // µs, 0 = unknown
  uint32_t throughput = 0;  // bytes/s
  uint16_t nodes = 0;       // known nodes, self excluded
  uint16_t lossPermille = 0;
  uint16_t interval = 0;    // s until the next regular frame
  uint8_t connections = 0;
  int8_t rssi = 0;          // dBm, 0 = unknown
  uint8_t wifi = 0;         // 0..100
  uint8_t alerts = 0;
  uint8_t deviceStatus = 0;
  uint8_t otaState = 0;
  uint8_t otaProgress = 0;
  uint32_t firmwareHash = 0;
};

enum : size_t { kMaxFrameSize = 64, kFrameHeaderSize = 9, kNumFields = 18 };
enum : uint8_t { kFrameVersion = 1, kFlagKeyframe = 1, kFlagPriority = 2, kFlagStart = 4 };

// Encoder writes one node's frames into a caller's buffer: no allocation.
// 32 bytes of state (keyframe values, counters).
class TelemetryEncoder {
 public:
  // keyframeEvery: a keyframe at least every K frames (PROTOCOL §2.2).
  // keyframeIntervalMs: and at least every T.
  explicit TelemetryEncoder(uint8_t keyframeEvery = 10, uint32_t keyframeIntervalMs = 300000)
      : intervalMs_(keyframeIntervalMs), every_(keyframeEvery ? keyframeEvery : 1) {}

  void requestKeyframe() { force_ = true; }

  // encode writes the next frame into out (kMaxFrameSize bytes) and
  // returns its length. nowMs paces keyframes; ts is the node time (µs).
  size_t encode(uint8_t* out, uint32_t nowMs, uint32_t ts, const Values& v, bool priority) {
    uint32_t x[kNumFields];
    vectorOf(v, x);
    bool key = !haveBase_ || force_ || sinceKey_ >= every_ || (uint32_t)(nowMs - keyAtMs_) >= intervalMs_;
    size_t n = 0;
    if (!key) {
      n = header(out, false, priority, kfid_, ts);
      size_t body = deltaBody(out + n, x);
      // A delta no smaller than a keyframe is replaced by the keyframe.
      if (body >= keyframeBody(nullptr, x)) key = true;
      else n += body;
    }
    if (key) {
      ++kfid_;
      n = header(out, true, priority, kfid_, ts);
      n += keyframeBody(out + n, x);
      for (size_t i = 0; i < kNumFields; ++i) base_[i] = x[i];
      haveBase_ = true;
      sinceKey_ = 0;
      keyAtMs_ = nowMs;
      force_ = false;
    }
    ++sinceKey_;
    ++seq_;
    return n;
  }

 private:
  enum Kind : uint8_t { kVarint, kFixed8, kFixed32 };
  static Kind kind(size_t i) { return i < 10 ? kVarint : (i < 17 ? kFixed8 : kFixed32); }

  static void vectorOf(const Values& v, uint32_t* x) {
    const uint32_t vals[kNumFields] = {v.uptime, v.freeMemory, v.messagesRx, v.messagesTx, v.messagesDropped,
                                       v.latency, v.throughput, v.nodes, v.lossPermille, v.interval,
                                       v.connections, (uint8_t)v.rssi, v.wifi, v.alerts, v.deviceStatus,
                                       v.otaState, v.otaProgress, v.firmwareHash};
    for (size_t i = 0; i < kNumFields; ++i) x[i] = vals[i];
  }

  size_t header(uint8_t* out, bool keyframe, bool priority, uint8_t kfid, uint32_t ts) {
    uint8_t fl = 0;
    if (keyframe) fl |= kFlagKeyframe;
    if (priority) fl |= kFlagPriority;
    if (!haveBase_) fl |= kFlagStart;
    out[0] = kFrameVersion;
    out[1] = fl;
    out[2] = (uint8_t)seq_;
    out[3] = (uint8_t)(seq_ >> 8);
    out[4] = kfid;
    for (int i = 0; i < 4; ++i) out[5 + i] = (uint8_t)(ts >> (8 * i));
    return kFrameHeaderSize;
  }

  // uvarint writes u as LEB128 (out may be null: length only).
  static size_t uvarint(uint8_t* out, uint64_t u) {
    size_t n = 0;
    do {
      uint8_t b = u & 0x7f;
      u >>= 7;
      if (u) b |= 0x80;
      if (out) out[n] = b;
      ++n;
    } while (u);
    return n;
  }

  static size_t field(uint8_t* out, size_t i, uint32_t u) {
    switch (kind(i)) {
      case kFixed8:
        if (out) out[0] = (uint8_t)u;
        return 1;
      case kFixed32:
        if (out)
          for (int k = 0; k < 4; ++k) out[k] = (uint8_t)(u >> (8 * k));
        return 4;
      default:
        return uvarint(out, u);
    }
  }

  static size_t keyframeBody(uint8_t* out, const uint32_t* x) {
    size_t n = 0;
    for (size_t i = 0; i < kNumFields; ++i) n += field(out ? out + n : nullptr, i, x[i]);
    return n;
  }

  size_t deltaBody(uint8_t* out, const uint32_t* x) const {
    uint32_t present = 0;
    for (size_t i = 0; i < kNumFields; ++i)
      if (x[i] != base_[i]) present |= 1u << i;
    size_t n = uvarint(out, present);
    for (size_t i = 0; i < kNumFields; ++i) {
      if (!(present & (1u << i))) continue;
      if (kind(i) == kVarint) {
        int64_t d = (int64_t)x[i] - (int64_t)base_[i];
        n += uvarint(out + n, ((uint64_t)d << 1) ^ (uint64_t)(d >> 63));
      } else {
        n += field(out + n, i, x[i]);
      }
    }
    return n;
  }

  uint32_t base_[kNumFields] = {};
  uint32_t keyAtMs_ = 0;
  uint32_t intervalMs_;
  uint16_t seq_ = 0;
  uint8_t kfid_ = 0;
  uint8_t every_;
  uint8_t sinceKey_ = 0;
  bool haveBase_ = false;
  bool force_ = false;
};

// firmwareHash is FNV-1a 32 over version, a NUL and md5 (0 when both are
// empty), as status.FirmwareHash.
inline uint32_t firmwareHash(const char* version, const char* md5) {
  if (!*version && !*md5) return 0;
  uint32_t h = 2166136261u;
  for (const char* p = version; *p; ++p) h = (h ^ (uint8_t)*p) * 16777619u;
  h = (h ^ 0) * 16777619u;
  for (const char* p = md5; *p; ++p) h = (h ^ (uint8_t)*p) * 16777619u;
  return h;
}

// queryDelayMs is when a node answers broadcast query qid: FNV-1a 64 of
// (node id LE32, qid LE32) mod spread (PROTOCOL §3), taken in nanoseconds
// as the Go reporter does, so both kinds of node wait the same.
inline uint32_t queryDelayMs(uint32_t node, uint32_t qid, uint32_t spreadMs) {
  if (spreadMs == 0) return 0;
  uint64_t h = 14695981039346656037ull;
  uint8_t b[8];
  for (int i = 0; i < 4; ++i) b[i] = (uint8_t)(node >> (8 * i)), b[4 + i] = (uint8_t)(qid >> (8 * i));
  for (int i = 0; i < 8; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return (uint32_t)(h % ((uint64_t)spreadMs * 1000000u) / 1000000u);
}

// base64 writes n bytes of in as standard base64 with padding and a NUL
// into out (4 * ((n + 2) / 3) + 1 bytes).
inline size_t base64(char* out, const uint8_t* in, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? tbl[v & 63] : '=';
  }
  out[o] = 0;
  return o;
}

}  // namespace meshfleet

#endif
