// peer is a painlessMesh node on boost::asio for meshfleet's tests: the
// stock C++ mesh, routing and OTA code (../shared/vendor/painlessMesh) over
// loopback TCP, as upstream's test/boost/tcp_integration.cpp runs it. It can
// listen, connect, relay, run the stock OTA receiver (the image goes to a
// file) and act as a stock OTA distributor of a file (as examples/otaSender
// does). It reports what it does as JSON lines on stdout (events.hpp).
//
//   peer --id N [--listen 127.0.0.1:PORT] [--connect HOST:PORT]
//        [--role R --image FILE --fs DIR [--progress-every N]]
//        [--serve FILE --role R [--hardware H] [--offer-when N]
//         [--broadcasted] [--part-size N]] [--root] [--restart reboot|exit]
//        [--ota-time-scale N]
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "Arduino.h"
#include "boost/asynctcp.hpp"

// The stock OTA plugin's timers (ota.hpp: a request again every 30 s, ten
// times; the restart 2 s after a good image) count in OTA seconds, which
// --ota-time-scale N shortens to 1/N s, so a test sees ten unanswered
// requests in a few seconds. Nothing else in the mesh changes pace.
namespace peer {
unsigned long otaSecond = TASK_SECOND;
}
#include "painlessmesh/base64.hpp"
#include "painlessmesh/logger.hpp"
#include "painlessmesh/plugin.hpp"
#pragma push_macro("TASK_SECOND")
#undef TASK_SECOND
#define TASK_SECOND (peer::otaSecond)
#include "painlessmesh/ota.hpp"
#pragma pop_macro("TASK_SECOND")
#include "painlessmesh/mesh.hpp"

using PMesh = painlessmesh::Mesh<painlessmesh::Connection>;

WiFiClass WiFi;
ESPClass ESP;
UpdateClass Update;
LittleFSClass LittleFS;
painlessmesh::logger::LogClass Log;

namespace peer {
uint32_t nodeId = 0;
}

namespace {

volatile std::sig_atomic_t stopSignal = 0;
bool restartRequested = false;
char** savedArgv = nullptr;

struct Options {
  uint32_t id = 0;
  std::string listen, connect;
  std::string role, hardware = "ESP8266";
  std::string image, fs = ".";
  std::string serve;
  int progressEvery = 1;
  int offerWhen = 2;
  bool broadcasted = false;
  size_t partSize = 1024;
  bool root = false;
  std::string restart = "reboot";
  int otaTimeScale = 1;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr, "peer: %s\n", msg.c_str());
  std::exit(2);
}

bool splitHostPort(const std::string& s, std::string& host, uint16_t& port) {
  auto i = s.rfind(':');
  if (i == std::string::npos) return false;
  host = s.substr(0, i);
  if (host.empty()) host = "127.0.0.1";
  char* end = nullptr;
  long p = std::strtol(s.c_str() + i + 1, &end, 10);
  if (*end != 0 || p < 0 || p > 65535) return false;
  port = (uint16_t)p;
  return true;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](long lo, long hi) -> long {
      auto v = value();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != 0 || n < lo || n > hi)
        usage(a + ": " + v + " is not a number in " + std::to_string(lo) + ".." + std::to_string(hi));
      return n;
    };
    if (a == "--id") o.id = (uint32_t)number(1, 0xffffffffL);
    else if (a == "--listen") o.listen = value();
    else if (a == "--connect") o.connect = value();
    else if (a == "--role") o.role = value();
    else if (a == "--hardware") o.hardware = value();
    else if (a == "--image") o.image = value();
    else if (a == "--fs") o.fs = value();
    else if (a == "--serve") o.serve = value();
    else if (a == "--progress-every") o.progressEvery = (int)number(1, 1 << 20);
    else if (a == "--offer-when") o.offerWhen = (int)number(1, 1000);
    else if (a == "--broadcasted") o.broadcasted = true;
    else if (a == "--part-size") o.partSize = (size_t)number(16, 64 << 10);
    else if (a == "--root") o.root = true;
    else if (a == "--restart") o.restart = value();
    else if (a == "--ota-time-scale") o.otaTimeScale = (int)number(1, 1000);
    else usage("unknown flag " + a);
  }
  if (o.id == 0) usage("--id is required");
  if (o.listen.empty() && o.connect.empty()) usage("give --listen or --connect (or both)");
  if (o.restart != "reboot" && o.restart != "exit") usage("--restart: " + o.restart + " is not one of reboot, exit");
  if (!o.image.empty() && o.role.empty()) usage("--image needs --role (the receiver's OTA role)");
  if (!o.serve.empty() && o.role.empty()) usage("--serve needs --role (the announced role)");
  if (!o.serve.empty() && !o.image.empty()) usage("--serve and --image exclude each other");
  // The stock receiver's hardware is compiled in: ESP8266 here.
  if (!o.image.empty() && o.hardware != "ESP8266") usage("--hardware: a receiver is an ESP8266");
  return o;
}

std::string md5Hex(const std::string& data) {
  boost::uuids::detail::md5 h;
  h.process_bytes(data.data(), data.size());
  boost::uuids::detail::md5::digest_type d;
  h.get_digest(d);
  std::string s;
  char buf[9];
  for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); ++i) {
    std::snprintf(buf, sizeof buf, sizeof(d[0]) == 1 ? "%02x" : "%08x", (unsigned)d[i]);
    s += buf;
  }
  return s;
}

}  // namespace

void ESPClass::restart() { restartRequested = true; }

int main(int argc, char** argv) {
  savedArgv = argv;
  auto o = parse(argc, argv);
  peer::nodeId = o.id;
  peer::otaSecond = TASK_SECOND / o.otaTimeScale;
  // Line by line: the C++ logger's lines ("ERROR: ...") are events too.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::signal(SIGTERM, [](int) { stopSignal = 1; });
  std::signal(SIGINT, [](int) { stopSignal = 1; });
  std::signal(SIGPIPE, SIG_IGN);

  using namespace painlessmesh;
  Log.setLogLevel(logger::ERROR);
  Scheduler scheduler;
  boost::asio::io_context io;
  PMesh mesh;
  mesh.init(&scheduler, o.id);
  if (o.root) mesh.setRoot(true);
  mesh.setContainsRoot(o.root);

  mesh.onChangedConnections([&mesh]() {
    peer::emit("nodes", "\"count\":" + std::to_string(mesh.getNodeList(true).size()));
  });

  std::shared_ptr<AsyncServer> server;
  if (!o.listen.empty()) {
    std::string host;
    uint16_t port;
    if (!splitHostPort(o.listen, host, port)) usage("--listen: " + o.listen + " is not host:port");
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(host, ec);
    if (ec) usage("--listen: " + host + " is not an IP address");
    server = std::make_shared<AsyncServer>(io, port, addr);
    try {
      tcp::initServer<Connection, PMesh>(*server, mesh);
    } catch (const std::exception& e) {
      usage("--listen " + o.listen + ": " + e.what());
    }
  }

  std::string connectHost;
  uint16_t connectPort = 0;
  boost::asio::ip::address connectAddr;
  if (!o.connect.empty()) {
    boost::system::error_code ec;
    if (!splitHostPort(o.connect, connectHost, connectPort)) usage("--connect: " + o.connect + " is not host:port");
    connectAddr = boost::asio::ip::make_address(connectHost, ec);
    if (ec) usage("--connect: " + connectHost + " is not an IP address");
  }
  auto dial = [&]() {
    auto client = new AsyncClient(io);  // owned by its Connection once up
    tcp::connect<Connection, PMesh>(*client, connectAddr, connectPort, mesh);
  };
  if (!o.connect.empty()) {
    dial();
    // A station whose connection failed or dropped dials again, as an ESP
    // rescans and rejoins.
    auto lonely = std::make_shared<int>(0);
    mesh.addTask(TASK_SECOND, TASK_FOREVER, [&mesh, dial, lonely]() {
      *lonely = mesh.getNodeList(false).empty() ? *lonely + 1 : 0;
      if (*lonely >= 2) {
        *lonely = 0;
        dial();
      }
    });
  }

  if (!o.image.empty()) {
    Update.imagePath = o.image;
    Update.progressEvery = o.progressEvery;
    LittleFS.root = o.fs;
    mesh.initOTAReceive(o.role, [](int part, int of) { Update.expectedParts = of; });
  }

  std::string firmware;
  std::shared_ptr<Task> offerTask;
  size_t noPart = 0;
  std::string firmwareMD5;
  if (!o.serve.empty()) {
    std::ifstream in(o.serve, std::ios::binary);
    if (!in) usage("--serve: cannot read " + o.serve);
    firmware.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (firmware.empty()) usage("--serve: " + o.serve + " is empty");
    noPart = (firmware.size() + o.partSize - 1) / o.partSize;
    firmwareMD5 = md5Hex(firmware);
    auto partSize = o.partSize;
    auto every = o.progressEvery;
    mesh.initOTASend(
        [&firmware, partSize, every](plugin::ota::DataRequest pkg, char* buffer) -> size_t {
          size_t off = partSize * pkg.partNo;
          if (off >= firmware.size()) return 0;
          size_t n = std::min(partSize, firmware.size() - off);
          std::memcpy(buffer, firmware.data() + off, n);
          if ((pkg.partNo + 1) % every == 0 || pkg.partNo + 1 == pkg.noPart)
            peer::emit("request", "\"from\":" + std::to_string(pkg.from) + ",\"part\":" + std::to_string(pkg.partNo));
          return n;
        },
        o.partSize);
  }

  peer::emit("ready", server ? "\"port\":" + std::to_string(server->port()) : "");

  while (!stopSignal && !restartRequested) {
    if (!o.serve.empty() && !offerTask &&
        mesh.getNodeList(true).size() >= (size_t)o.offerWhen) {
      // offerOTA announces now and then every 60 s, as otaSender.ino does.
      offerTask = mesh.offerOTA(o.role, o.hardware, firmwareMD5, noPart, false, o.broadcasted);
      peer::emit("offered", "\"md5\":\"" + firmwareMD5 + "\",\"parts\":" + std::to_string(noPart));
    }
    // mesh.update() without hiding whether a task ran: the loop waits for
    // the network (up to 1 ms) only when neither the scheduler nor the
    // sockets had anything to do, so a request is answered at once.
    bool idle = scheduler.execute();
    if (io.poll() == 0 && idle) io.run_one_for(std::chrono::milliseconds(1));
    if (io.stopped()) {
      io.restart();
      usleep(1000);
    }
  }

  if (restartRequested) peer::emit("restart");
  mesh.stop();
  for (int i = 0; i < 50; ++i) io.poll();
  if (restartRequested && o.restart == "reboot") {
    // A reboot: the same program again, with only the files in --fs kept.
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    // An ESP is away for a moment after ESP.restart() (boot, a scan of
    // the mesh channel, DHCP): its neighbours see it gone before it is
    // back, as the mesh sees a real reboot.
    usleep(1500 * 1000);
    execv("/proc/self/exe", savedArgv);
    std::perror("peer: reboot");
    return 1;
  }
  peer::emit("stopped");
  return 0;
}
