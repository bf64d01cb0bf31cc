// inflate checks the library's host inflater (src/meshfleet/inflate.hpp,
// zlib) and its resume for meshfleet's Go tests, without painlessMesh:
//
//   inflate STREAM CHUNK IMAGE
//
// feeds the zlib stream in STREAM to the inflater CHUNK bytes at a time,
// and at every chunk boundary where the inflater's resume point moved on,
// also restarts a second inflater from that point (its saved state, the
// window read back from the output so far) and inflates the rest of the
// stream with it, as a receiver does after a reboot. Every run must give
// exactly IMAGE. Prints "ok POINTS" (the resume points checked) or
// "error ...", exit status 1.
#define PAINLESSMESH_BOOST 1
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "meshfleet/inflate.hpp"

namespace {

std::vector<uint8_t> slurp(const char* path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

struct Out {
  std::vector<uint8_t> bytes;
  size_t limit = 0;
  static bool sink(void* self, const uint8_t* p, size_t n) {
    Out* o = static_cast<Out*>(self);
    if (o->bytes.size() + n > o->limit) return false;
    o->bytes.insert(o->bytes.end(), p, p + n);
    return true;
  }
  static bool read(void* self, uint32_t at, uint8_t* p, size_t n) {
    Out* o = static_cast<Out*>(self);
    if (at + n > o->bytes.size()) return false;
    std::copy(o->bytes.begin() + at, o->bytes.begin() + at + n, p);
    return true;
  }
};

// rest inflates stream from in on with z and checks the output is image.
bool rest(meshfleet::ZlibInflater& z, const std::vector<uint8_t>& stream, size_t in, size_t chunk, Out& out,
          const std::vector<uint8_t>& image) {
  for (size_t at = in; at < stream.size(); at += chunk) {
    size_t k = std::min(chunk, stream.size() - at);
    if (!z.feed(stream.data() + at, k, &Out::sink, &out)) return false;
  }
  return z.finished() && out.bytes == image;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::printf("error usage: inflate STREAM CHUNK IMAGE\n");
    return 2;
  }
  std::vector<uint8_t> stream = slurp(argv[1]), image = slurp(argv[3]);
  size_t chunk = std::stoul(argv[2]);
  static meshfleet::ZlibInflater z, again;
  Out out;
  out.limit = image.size();
  if (!z.begin()) return std::printf("error begin\n"), 1;
  uint32_t lastPoint = 0, points = 0;
  for (size_t at = 0; at < stream.size(); at += chunk) {
    size_t k = std::min(chunk, stream.size() - at);
    if (!z.feed(stream.data() + at, k, &Out::sink, &out)) return std::printf("error feed at %zu\n", at), 1;
    meshfleet::InflatePoint p = z.resumePoint();
    if (p.in == 0 || p.in == lastPoint || z.finished()) continue;
    lastPoint = p.in;
    ++points;
    // A reboot here: what is persisted is p's state; the output up to
    // p.out is in the partition.
    std::vector<uint8_t> state((const uint8_t*)p.state, (const uint8_t*)p.state + p.n);
    Out resumed;
    resumed.limit = image.size();
    resumed.bytes.assign(out.bytes.begin(), out.bytes.begin() + p.out);
    void* buf = again.stateBuffer(p.n);
    if (!buf) return std::printf("error state of %u bytes\n", p.n), 1;
    std::copy(state.begin(), state.end(), (uint8_t*)buf);
    if (!again.restore(p.in, p.out, &Out::read, &resumed)) return std::printf("error restore at %u\n", p.in), 1;
    if (!rest(again, stream, p.in, chunk, resumed, image))
      return std::printf("error resumed at in %u out %u: %zu bytes, not the image\n", p.in, p.out, resumed.bytes.size()), 1;
  }
  if (!z.finished() || out.bytes != image) return std::printf("error the whole stream is not the image\n"), 1;
  std::printf("ok %u\n", points);
  return 0;
}
