// sketch runs an Arduino example of the library on the host: the .ino
// named by SKETCH (a quoted path), setup() once and loop() until
// SIGTERM, as the chip's core does. It prints {"event":"ready"} after
// setup (internal/cpppeer waits for it).
#include <csignal>

#include "painlessMesh.h"
#include "events.hpp"

WiFiClass WiFi;
ESPClass ESP;
UpdateClass Update;
LittleFSClass LittleFS;
painlessmesh::logger::LogClass Log;
void ESPClass::restart() {}
namespace peer {
uint32_t nodeId = 0;
}

#include SKETCH

static volatile std::sig_atomic_t stopSignal = 0;

int main() {
  std::signal(SIGTERM, [](int) { stopSignal = 1; });
  std::signal(SIGPIPE, SIG_IGN);
  setup();
  peer::nodeId = mesh.getNodeId();
  peer::emit("ready");
  while (!stopSignal) loop();
  return 0;
}
