// Streaming inflate (method "deflate": a zlib stream, ota/PROTOCOL.md)
// behind a small interface, so the receiver does not care which inflater
// a target has:
//
// - ESP32: the ROM's miniz inflater (tinfl_decompress from rom/miniz.h),
//   whose output buffer is its 32 KiB dictionary, a member: nothing is
//   allocated, ever. RomInflater is about 11 KB of decoder tables and
//   state plus the 32 KiB dictionary; declare it once (a global), not on
//   the stack.
// - host (painlessMesh's Linux build): zlib's inflate, given a fixed arena
//   for its state and window, so it allocates nothing either.
// - ESP8266: none. A 32 KiB window does not fit beside the mesh in the
//   ~40 KB of heap an ESP8266 mesh node has; the receiver refuses deflate
//   Offers when it has no inflater (use heatshrink there).
//
// Resume after a restart: an inflater can say where a stream that was
// cut off may be taken up again (resumePoint) and restore itself there
// from a few persisted bytes plus the last 32 KiB of output, which the
// receiver reads back from the update partition (the window is the
// output already written, so it is never persisted twice).
#ifndef MESHFLEET_INFLATE_HPP_
#define MESHFLEET_INFLATE_HPP_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(PAINLESSMESH_BOOST)
#include <zlib.h>
#elif defined(ESP32)
#include "rom/miniz.h"
#endif

namespace meshfleet {

// InflatePoint is where an interrupted stream can go on: after in bytes
// of the compressed stream, with out bytes of output written. state (n
// bytes, at most kMaxState) is what the inflater needs besides the
// window; the receiver persists it with its checkpoint.
struct InflatePoint {
  uint32_t in = 0, out = 0;
  uint32_t n = 0;
  const void* state = nullptr;
};

class Inflater {
 public:
  enum : uint32_t { kWindow = 32768 };
  // A sink takes decoded bytes in order; false stops the stream (a write
  // failed or the image grew past its size).
  typedef bool (*Sink)(void* ctx, const uint8_t* data, size_t n);
  // A reader fills data with n bytes of output from offset (read back
  // from the update partition).
  typedef bool (*Reader)(void* ctx, uint32_t offset, uint8_t* data, size_t n);

  virtual ~Inflater() {}
  // begin starts a new zlib stream; false if the inflater cannot.
  virtual bool begin() = 0;
  // feed inflates n more bytes of the stream into sink; false on a
  // corrupt stream, a stopped sink, or bytes after the stream's end
  // (other than the 4-byte zlib trailer of a resumed stream).
  virtual bool feed(const uint8_t* in, size_t n, Sink sink, void* ctx) = 0;
  // finished: the stream's final block was decoded.
  virtual bool finished() const = 0;
  // resumePoint is the latest point a resumed stream can go on from
  // (in 0: none yet).
  virtual InflatePoint resumePoint() const = 0;
  // stateBuffer is where restore expects the persisted state (n bytes).
  virtual void* stateBuffer(size_t n) = 0;
  // restore takes the stream up again at in/out, with the state loaded
  // into stateBuffer and the window read through read.
  virtual bool restore(uint32_t in, uint32_t out, Reader read, void* ctx) = 0;
};

#if defined(PAINLESSMESH_BOOST)
// ZlibInflater is the host's inflater: zlib's inflate, allocating from a
// fixed arena (zlib's state, about 7 KB, and its 32 KiB window) that it
// resets for every stream.
//
// zlib's state holds pointers and cannot be saved as bytes, so a resume
// point is a deflate block boundary (inflate with Z_BLOCK stops there,
// as zlib's examples/zran.c does): the stream goes on as raw deflate from
// that bit, primed with the bits left of the last byte and given the
// window as its dictionary. Blocks end about every 17 KB of stream (37 in
// a 1 MiB image's 642 KB, go test ./esp -run Inflater -v), so a resume
// repeats at most about four 4 KiB chunks more than a checkpoint's.
class ZlibInflater : public Inflater {
 public:
  ZlibInflater() { memset(&zs_, 0, sizeof zs_); }
  ~ZlibInflater() { close(); }

  bool begin() override {
    close();
    if (inflateInit(&zs_) != Z_OK) return false;
    open_ = true;
    raw_ = done_ = false;
    point_ = Point();
    in_ = out_ = 0;
    return true;
  }

  bool feed(const uint8_t* in, size_t n, Sink sink, void* ctx) override {
    if (!open_) return false;
    if (done_) {
      // A resumed stream is raw deflate: the zlib trailer (Adler-32, 4
      // bytes) follows its last block and is not checked (the image's
      // MD5 is).
      trailer_ += n;
      return raw_ && trailer_ <= 4;
    }
    const uint8_t* start = in;
    zs_.next_in = const_cast<uint8_t*>(in);
    zs_.avail_in = (uInt)n;
    for (;;) {
      zs_.next_out = buf_;
      zs_.avail_out = sizeof buf_;
      int rc = inflate(&zs_, Z_BLOCK);
      size_t got = sizeof buf_ - zs_.avail_out;
      in_ = (uint32_t)zs_.total_in + base_;
      out_ += (uint32_t)got;
      if (got && !sink(ctx, buf_, got)) return false;
      if (rc == Z_STREAM_END) {
        done_ = true;
        trailer_ = zs_.avail_in;
        return !raw_ ? zs_.avail_in == 0 : trailer_ <= 4;
      }
      if (rc == Z_BUF_ERROR && zs_.avail_in == 0) return true;  // needs more input
      if (rc != Z_OK && rc != Z_BUF_ERROR) return false;
      // At a block boundary (bit 7) that is not after the final block
      // (bit 6): a point to resume from.
      if ((zs_.data_type & 128) && !(zs_.data_type & 64) && zs_.next_in > start) {
        point_.bits = (uint8_t)(zs_.data_type & 7);
        point_.byte = point_.bits ? zs_.next_in[-1] : 0;
        point_.in = in_;
        point_.out = out_;
      }
      if (zs_.avail_in == 0 && got < sizeof buf_) return true;
    }
  }

  bool finished() const override { return done_; }

  InflatePoint resumePoint() const override {
    InflatePoint p;
    if (point_.in == 0) return p;
    p.in = point_.in;
    p.out = point_.out;
    p.n = sizeof(Saved);
    saved_ = Saved{point_.bits, point_.byte};
    p.state = &saved_;
    return p;
  }

  void* stateBuffer(size_t n) override { return n == sizeof(Saved) ? &saved_ : nullptr; }

  bool restore(uint32_t in, uint32_t out, Reader read, void* ctx) override {
    close();
    if (inflateInit2(&zs_, -15) != Z_OK) return false;
    open_ = raw_ = true;
    done_ = false;
    // The byte holding the first unread bits was counted as read: the
    // stream goes on at in, its remaining high bits primed.
    if (saved_.bits > 8) return false;
    if (saved_.bits && inflatePrime(&zs_, saved_.bits, saved_.byte >> (8 - saved_.bits)) != Z_OK) return false;
    uint32_t from = out > kWindow ? out - kWindow : 0;
    for (uint32_t at = from; at < out;) {
      size_t k = out - at < sizeof buf_ ? out - at : sizeof buf_;
      // Each call appends to zlib's window (raw streams take a
      // dictionary at any time).
      if (!read(ctx, at, buf_, k) || inflateSetDictionary(&zs_, buf_, (uInt)k) != Z_OK) return false;
      at += (uint32_t)k;
    }
    base_ = in;
    in_ = in;
    out_ = out;
    point_ = Point();
    point_.in = in;
    point_.out = out;
    point_.bits = saved_.bits;
    point_.byte = saved_.byte;
    return true;
  }

  // arenaUsed is what zlib took of the arena for the current stream.
  size_t arenaUsed() const { return used_; }

 private:
  struct Saved {
    uint8_t bits, byte;
  };
  struct Point {
    uint32_t in = 0, out = 0;
    uint8_t bits = 0, byte = 0;
  };

  void close() {
    if (open_) inflateEnd(&zs_);
    open_ = false;
    memset(&zs_, 0, sizeof zs_);
    zs_.zalloc = &ZlibInflater::alloc;
    zs_.zfree = &ZlibInflater::release;
    zs_.opaque = this;
    used_ = 0;
    base_ = 0;
    trailer_ = 0;
  }
  // zlib asks for its state and its window once per stream: a bump
  // allocator over the arena, reset by close.
  static voidpf alloc(voidpf self, uInt items, uInt size) {
    ZlibInflater* z = static_cast<ZlibInflater*>(self);
    size_t n = ((size_t)items * size + 15) & ~(size_t)15;
    if (z->used_ + n > sizeof z->arena_) return Z_NULL;
    void* p = z->arena_ + z->used_;
    z->used_ += n;
    return p;
  }
  static void release(voidpf, voidpf) {}

  z_stream zs_;
  bool open_ = false, raw_ = false, done_ = false;
  uint32_t in_ = 0, out_ = 0, base_ = 0;
  size_t trailer_ = 0, used_ = 0;
  Point point_;
  mutable Saved saved_{0, 0};
  uint8_t buf_[4096];
  alignas(16) uint8_t arena_[44 * 1024];
};
using HostInflater = ZlibInflater;
#elif defined(ESP32)
// RomInflater is the ESP32's inflater: the ROM's tinfl, decoding into its
// own 32 KiB dictionary (a ring: tinfl's output buffer is the window).
//
// tinfl keeps its whole state in one plain struct (no pointers), so a
// resume point is any input boundary where all output was handed on: the
// struct is persisted as it is (about 11 KB), and the ring is refilled
// from the update partition.
class RomInflater : public Inflater {
 public:
  bool begin() override {
    tinfl_init(&r_);
    ofs_ = in_ = out_ = 0;
    done_ = false;
    return true;
  }

  bool feed(const uint8_t* in, size_t n, Sink sink, void* ctx) override {
    if (done_) return n == 0;
    for (;;) {
      size_t inBytes = n, outBytes = kWindow - ofs_;
      tinfl_status st = tinfl_decompress(&r_, in, &inBytes, dict_, dict_ + ofs_, &outBytes,
                                         TINFL_FLAG_PARSE_ZLIB_HEADER | TINFL_FLAG_HAS_MORE_INPUT);
      in += inBytes;
      n -= inBytes;
      in_ += (uint32_t)inBytes;
      if (outBytes && !sink(ctx, dict_ + ofs_, outBytes)) return false;
      ofs_ = (ofs_ + (uint32_t)outBytes) & (kWindow - 1);
      out_ += (uint32_t)outBytes;
      if (st == TINFL_STATUS_DONE) {
        done_ = true;
        return n == 0;
      }
      if (st < 0) return false;
      if (st == TINFL_STATUS_NEEDS_MORE_INPUT && n == 0) return true;
    }
  }

  bool finished() const override { return done_; }

  InflatePoint resumePoint() const override {
    InflatePoint p;
    if (in_ == 0 || done_) return p;
    p.in = in_;
    p.out = out_;
    p.n = sizeof r_;
    p.state = &r_;
    return p;
  }

  void* stateBuffer(size_t n) override { return n == sizeof r_ ? &r_ : nullptr; }

  bool restore(uint32_t in, uint32_t out, Reader read, void* ctx) override {
    uint32_t from = out > kWindow ? out - kWindow : 0;
    // The ring holds output byte k at k mod 32 KiB.
    for (uint32_t at = from; at < out;) {
      uint32_t o = at & (kWindow - 1);
      uint32_t k = out - at;
      if (k > kWindow - o) k = kWindow - o;
      if (!read(ctx, at, dict_ + o, k)) return false;
      at += k;
    }
    ofs_ = out & (kWindow - 1);
    in_ = in;
    out_ = out;
    done_ = false;
    return true;
  }

 private:
  tinfl_decompressor r_;
  uint8_t dict_[kWindow];
  uint32_t ofs_ = 0, in_ = 0, out_ = 0;
  bool done_ = false;
};
#endif

}  // namespace meshfleet

#endif
