// heatshrink runs the library's heatshrink decoder on the host for
// meshfleet's Go tests, which compare it with the reference tool's vectors
// and the Go decoder:
//
//   heatshrink W L SEED [resume] < stream > decoded
//
// The stream is fed in pieces of 1..300 bytes (sizes from SEED), as chunks
// arrive over the mesh. With resume, after every piece the decoder is
// replaced by a fresh one restored from the state it saved and the output
// so far (its window read back), as a receiver resumes after a reboot.
// Exit status 0 for a clean end, 2 for a stream that ends inside an item
// or with padding that is not zero.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "meshfleet/heatshrink.hpp"

namespace {

// Output keeps what was decoded (the update partition) and writes it out.
struct Output {
  std::vector<uint8_t> bytes;
  bool operator()(const uint8_t* p, size_t n) {
    bytes.insert(bytes.end(), p, p + n);
    return true;
  }
  bool read(uint32_t at, uint8_t* p, size_t n) const {
    if (at + n > bytes.size()) return false;
    std::copy(bytes.begin() + at, bytes.begin() + at + n, p);
    return true;
  }
};

template <unsigned W, unsigned L>
int run(const std::vector<uint8_t>& in, unsigned long seed, bool resume) {
  static meshfleet::HeatshrinkDecoder<W, L> decoders[2];
  int cur = 0;
  Output out;
  size_t i = 0;
  int status = 0;
  while (i < in.size()) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    size_t n = 1 + (seed >> 33) % 300;
    if (n > in.size() - i) n = in.size() - i;
    if (!decoders[cur].feed(in.data() + i, n, out)) {
      status = 1;
      break;
    }
    i += n;
    if (resume) {
      auto st = decoders[cur].save();
      cur ^= 1;
      if (!decoders[cur].restore(st, [&out](uint32_t at, uint8_t* p, size_t k) { return out.read(at, p, k); })) {
        std::fprintf(stderr, "heatshrink: restore after %zu bytes failed\n", i);
        status = 1;
        break;
      }
    }
  }
  std::fwrite(out.bytes.data(), 1, out.bytes.size(), stdout);
  std::fflush(stdout);
  if (status) return status;
  if (!decoders[cur].finish()) {
    std::fprintf(stderr, "heatshrink: stream truncated or corrupt after %u bytes\n", (unsigned)decoders[cur].decoded());
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && !(argc == 5 && std::string(argv[4]) == "resume")) {
    std::fprintf(stderr, "usage: heatshrink W L SEED [resume]\n");
    return 64;
  }
  bool resume = argc == 5;
  int w = std::atoi(argv[1]), l = std::atoi(argv[2]);
  unsigned long seed = std::strtoul(argv[3], nullptr, 10);
  std::vector<uint8_t> in;
  int c;
  while ((c = std::getchar()) != EOF) in.push_back((uint8_t)c);
  if (w == 8 && l == 4) return run<8, 4>(in, seed, resume);
  if (w == 10 && l == 5) return run<10, 5>(in, seed, resume);
  if (w == 11 && l == 4) return run<11, 4>(in, seed, resume);
  if (w == 13 && l == 6) return run<13, 6>(in, seed, resume);
  if (w == 15 && l == 14) return run<15, 14>(in, seed, resume);
  std::fprintf(stderr, "heatshrink: parameters -w %d -l %d not built in\n", w, l);
  return 64;
}
