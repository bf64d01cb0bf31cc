// frames runs the library's telemetry encoder and hashes on the host for
// meshfleet's Go tests, which compare them with the Go codec byte for
// byte. One command a line on stdin, one answer a line on stdout:
//
//   frame NOW_MS TS PRIORITY V0 .. V17  ->  the frame in hex
//   keyframe                            ->  ok (the next frame is one)
//   hash VERSION MD5                    ->  firmwareHash, decimal
//   delay NODE QID SPREAD_MS            ->  queryDelayMs, decimal
//   dense HEX                           ->  the bytes' b91 text, encoded in
//                                           place with the least slack
//   undense TEXT                        ->  the decoded bytes in hex, or error
// ("-" stands for empty HEX or TEXT.)
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>

#include "meshfleet/dense.hpp"
#include "meshfleet/telemetry.hpp"

int main() {
  meshfleet::TelemetryEncoder enc;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd == "frame") {
      unsigned long now, ts, prio, x[meshfleet::kNumFields];
      in >> now >> ts >> prio;
      for (auto& v : x) in >> v;
      meshfleet::Values v;
      v.uptime = x[0], v.freeMemory = x[1], v.messagesRx = x[2], v.messagesTx = x[3], v.messagesDropped = x[4];
      v.latency = x[5], v.throughput = x[6], v.nodes = x[7], v.lossPermille = x[8], v.interval = x[9];
      v.connections = x[10], v.rssi = (int8_t)(uint8_t)x[11], v.wifi = x[12], v.alerts = x[13];
      v.deviceStatus = x[14], v.otaState = x[15], v.otaProgress = x[16], v.firmwareHash = x[17];
      uint8_t out[meshfleet::kMaxFrameSize];
      size_t n = enc.encode(out, now, ts, v, prio != 0);
      for (size_t i = 0; i < n; ++i) std::printf("%02x", out[i]);
      std::printf("\n");
    } else if (cmd == "keyframe") {
      enc.requestKeyframe();
      std::printf("ok\n");
    } else if (cmd == "hash") {
      std::string version, md5;
      in >> version >> md5;
      if (version == "-") version.clear();
      if (md5 == "-") md5.clear();
      std::printf("%u\n", meshfleet::firmwareHash(version.c_str(), md5.c_str()));
    } else if (cmd == "delay") {
      unsigned long node, qid, spread;
      in >> node >> qid >> spread;
      std::printf("%u\n", meshfleet::queryDelayMs(node, qid, spread));
    } else if (cmd == "dense") {
      std::string hex;
      in >> hex;
      if (hex == "-") hex.clear();
      size_t n = hex.size() / 2, slack = meshfleet::denseSlack(n);
      // As a repair is encoded: the bytes at the end of the buffer, the
      // text written from its front over them.
      std::string buf(slack + n + 1, '\0');
      uint8_t* raw = (uint8_t*)&buf[slack];
      for (size_t i = 0; i < n; ++i) raw[i] = (uint8_t)std::stoul(hex.substr(2 * i, 2), nullptr, 16);
      size_t k = meshfleet::encodeDense(raw, n, &buf[0]);
      std::printf("%s\n", k ? std::string(buf.data(), k).c_str() : "-");
    } else if (cmd == "undense") {
      std::string text;
      in >> text;
      if (text == "-") text.clear();
      uint8_t out[8192];
      long n = meshfleet::decodeDense(text.c_str(), out, sizeof out);
      if (n < 0) std::printf("error\n");
      else if (n == 0) std::printf("-\n");
      else {
        for (long i = 0; i < n; ++i) std::printf("%02x", out[i]);
        std::printf("\n");
      }
    } else {
      std::printf("error: unknown command %s\n", cmd.c_str());
    }
    std::fflush(stdout);
  }
}
