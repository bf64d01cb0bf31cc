// A streaming heatshrink decoder (the LZSS format of atomicobject/heatshrink
// 0.4.1, as compress/heatshrink describes it) with its window and lookahead
// fixed at compile time and no allocation: the state is the window
// (2^W bytes) and a few counters. Decoded bytes are written into the window
// and handed to the sink from there, so no output buffer is needed either.
//
// meshfleet's Offers say method "heatshrink" for window 11, lookahead 4
// (ota/PROTOCOL.md): HeatshrinkDecoder<11, 4>, 2048 bytes of window.
#ifndef MESHFLEET_HEATSHRINK_HPP_
#define MESHFLEET_HEATSHRINK_HPP_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace meshfleet {

// W and L are base-2 logarithms, as the reference tool's -w and -l.
template <unsigned W, unsigned L>
class HeatshrinkDecoder {
  static_assert(W >= 4 && W <= 15, "heatshrink window bits outside 4..15");
  static_assert(L >= 3 && L < W, "heatshrink lookahead bits outside 3..W-1");

 public:
  enum : uint32_t { kWindow = 1u << W, kMask = kWindow - 1 };

  HeatshrinkDecoder() { reset(); }

  // reset starts a new stream: the window holds zeros, as the reference
  // decoder's does (back-references before the start yield zeros).
  void reset() {
    memset(window_, 0, sizeof window_);
    acc_ = 0;
    nbits_ = 0;
    head_ = flushed_ = 0;
    failed_ = false;
  }

  // feed decodes n more bytes of the stream; sink(const uint8_t*, size_t)
  // gets the decoded bytes in order and returns false to stop (a write
  // failed). false when the sink stopped, now or before.
  template <class Sink>
  bool feed(const uint8_t* in, size_t n, Sink& sink) {
    if (failed_) return false;
    for (size_t i = 0; i < n; ++i) {
      acc_ = acc_ << 8 | in[i];
      nbits_ += 8;
      for (;;) {
        if (nbits_ == 0) break;
        if ((acc_ >> (nbits_ - 1)) & 1) {
          if (nbits_ < 9) break;
          nbits_ -= 9;
          if (!put((uint8_t)(acc_ >> nbits_), sink)) return false;
        } else {
          if (nbits_ < 1 + W + L) break;
          nbits_ -= 1 + W + L;
          uint32_t item = (uint32_t)(acc_ >> nbits_);
          uint32_t count = (item & ((1u << L) - 1)) + 1;
          uint32_t offset = ((item >> L) & kMask) + 1;
          for (uint32_t k = 0; k < count; ++k) {
            if (!put(window_[(head_ - offset) & kMask], sink)) return false;
          }
        }
        acc_ &= ((uint64_t)1 << nbits_) - 1;
      }
    }
    return flush(sink);
  }

  // finish reports whether the stream ended cleanly: after the last whole
  // item only the encoder's zero padding (fewer than 8 bits) is left.
  bool finish() const { return !failed_ && nbits_ < 8 && (acc_ & (((uint64_t)1 << nbits_) - 1)) == 0; }

  // State is what a resumed stream needs besides the window: the unread
  // bits and the bytes decoded. Between feeds every decoded byte was
  // handed to the sink, so the window is the last 2^W bytes of output,
  // which restore reads back rather than anyone persisting it.
  struct State {
    uint64_t acc;
    uint32_t nbits, head;
  };
  State save() const { return State{acc_, nbits_, head_}; }

  // restore takes a stream up again from s; read(offset, data, n) fills
  // data with n bytes of the output from offset.
  template <class Read>
  bool restore(const State& s, Read read) {
    reset();
    if (s.nbits >= 64) return false;
    uint32_t from = s.head > kWindow ? s.head - kWindow : 0;
    for (uint32_t at = from; at < s.head;) {
      uint32_t o = at & kMask, k = s.head - at;
      if (k > kWindow - o) k = kWindow - o;
      if (!read(at, window_ + o, (size_t)k)) return false;
      at += k;
    }
    acc_ = s.acc;
    nbits_ = s.nbits;
    head_ = flushed_ = s.head;
    return true;
  }

  // decoded is the number of bytes decoded so far.
  uint32_t decoded() const { return head_; }

 private:
  template <class Sink>
  bool put(uint8_t c, Sink& sink) {
    window_[head_ & kMask] = c;
    ++head_;
    // A full window goes to the sink before it is written over.
    if ((head_ & kMask) == 0) return flush(sink);
    return true;
  }

  template <class Sink>
  bool flush(Sink& sink) {
    if (head_ == flushed_) return true;
    uint32_t from = flushed_ & kMask;
    uint32_t n = head_ - flushed_;
    flushed_ = head_;
    if (!sink(window_ + from, (size_t)n)) {
      failed_ = true;
      return false;
    }
    return true;
  }

  uint8_t window_[kWindow];
  uint64_t acc_;  // unread bits, the low nbits_ are valid
  uint32_t nbits_;
  uint32_t head_;     // bytes decoded
  uint32_t flushed_;  // bytes handed to the sink; never a window behind head_
  bool failed_;
};

}  // namespace meshfleet

#endif
