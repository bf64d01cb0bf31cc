// The b91 payload encoding of meshfleet's OTA chunks (ota/PROTOCOL.md,
// "Payload encodings": basE91 with '-' for '"'), both ways, without
// allocation. esp/codec_test.go checks it against the Go codec (ota.Dense).
#ifndef MESHFLEET_DENSE_HPP_
#define MESHFLEET_DENSE_HPP_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace meshfleet {

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

// encodeDense encodes n bytes as basE91 with '-' for '"' into out (NUL
// terminated). out may be the buffer that holds in, when in starts at
// least denseSlack(n) bytes into it: the encoding overtakes its input
// by at most that much (16 bits out for every 13 in, plus the tail).
inline size_t denseSlack(size_t n) { return n * 3 / 13 + 4; }
inline size_t encodeDense(const uint8_t* in, size_t n, char* out) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,./:;<=>?@[]^_`{|}~-";
  uint32_t b = 0;
  unsigned nb = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; ++i) {
    b |= (uint32_t)in[i] << nb;
    nb += 8;
    if (nb > 13) {
      uint32_t v = b & 8191;
      if (v > 88) {
        b >>= 13;
        nb -= 13;
      } else {
        v = b & 16383;
        b >>= 14;
        nb -= 14;
      }
      out[o++] = alphabet[v % 91];
      out[o++] = alphabet[v / 91];
    }
  }
  if (nb) {
    out[o++] = alphabet[b % 91];
    if (nb > 7 || b > 90) out[o++] = alphabet[b / 91];
  }
  out[o] = 0;
  return o;
}

}  // namespace meshfleet

#endif
