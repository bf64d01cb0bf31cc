// heatshrink runs the library's heatshrink decoder on the host for
// meshfleet's Go tests, which compare it with the reference tool's vectors
// and the Go decoder:
//
//   heatshrink W L SEED < stream > decoded
//
// The stream is fed in pieces of 1..300 bytes (sizes from SEED), as chunks
// arrive over the mesh. Exit status 0 for a clean end, 2 for a stream that
// ends inside an item or with padding that is not zero.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "meshfleet/heatshrink.hpp"

namespace {

struct Stdout {
  bool operator()(const uint8_t* p, size_t n) { return std::fwrite(p, 1, n, stdout) == n; }
};

template <unsigned W, unsigned L>
int run(const std::vector<uint8_t>& in, unsigned long seed) {
  static meshfleet::HeatshrinkDecoder<W, L> dec;
  Stdout out;
  size_t i = 0;
  while (i < in.size()) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    size_t n = 1 + (seed >> 33) % 300;
    if (n > in.size() - i) n = in.size() - i;
    if (!dec.feed(in.data() + i, n, out)) return 1;
    i += n;
  }
  std::fflush(stdout);
  if (!dec.finish()) {
    std::fprintf(stderr, "heatshrink: stream truncated or corrupt after %u bytes\n", (unsigned)dec.decoded());
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: heatshrink W L SEED\n");
    return 64;
  }
  int w = std::atoi(argv[1]), l = std::atoi(argv[2]);
  unsigned long seed = std::strtoul(argv[3], nullptr, 10);
  std::vector<uint8_t> in;
  int c;
  while ((c = std::getchar()) != EOF) in.push_back((uint8_t)c);
  if (w == 8 && l == 4) return run<8, 4>(in, seed);
  if (w == 10 && l == 5) return run<10, 5>(in, seed);
  if (w == 11 && l == 4) return run<11, 4>(in, seed);
  if (w == 13 && l == 6) return run<13, 6>(in, seed);
  if (w == 15 && l == 14) return run<15, 14>(in, seed);
  std::fprintf(stderr, "heatshrink: parameters -w %d -l %d not built in\n", w, l);
  return 64;
}
