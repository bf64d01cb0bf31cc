// node is a painlessMesh node running the MeshFleet library on Linux, for
// meshfleet's tests: the stock C++ mesh (../shared/vendor/painlessMesh) on
// boost::asio over loopback TCP, as internal/cpppeer's peer runs it, with
// the library added in the three lines a firmware adds. The chip's
// readings come from the host platform (platform.hpp), which commands on
// stdin change:
//
//   heap N    free heap in bytes (low memory below 10 KB)
//   rssi N    WiFi RSSI in dBm
//   crashes N boots in a row after a crash (a reboot loop from 3)
//
//   stats     reports the OTA receiver's counters (ota_stats)
//
// It reports as JSON lines on stdout: ready (with its port), nodes,
// "budget" and "ota_budget" (the library's RAM, sizeof(MeshFleet) and
// sizeof(MeshFleetOTA), and the inflater's bytes, 0 without one).
//
//   node --id N [--listen 127.0.0.1:0] [--connect HOST:PORT] [--role R]
//        [--fw VERSION] [--md5 HEX] [--interval S] [--image FILE]
//        [--hardware ESP8266|ESP32] [--state DIR] [--max-image BYTES]
//        [--drop-pushed I,J,...] [--exit-after-chunks N]
//
// With --image it runs the OTA receiver (MeshFleetOTA.h), writing the
// image to FILE (the update partition, at most --max-image bytes, default
// 4 MiB) and reporting started (with resume), md5, ota_state (every state
// change, with its reason, chunks held and of the transfer; "refused" for
// an Offer refused, "resumed" for a transfer taken up from the progress
// file) and restart (after a verified image) with the counters: lost
// (pushed chunks found missing), taken (chunks taken this run), dup
// (chunks that came although held), resumed (chunks held from the
// progress file), served (chunks sent to children), asked, asked_parent
// (chunks asked for, of the parent), from_parent (chunks the parent
// repaired), asked_path and from_path (the same for nodes further up the
// path to the distributor), held and of. --hardware ESP32 gives it an inflater (zlib,
// standing in for the ROM's) so it takes deflate; ESP8266 (the default)
// refuses deflate. --state keeps the progress file (the chip's LittleFS)
// in DIR, so a node started again with the same DIR and FILE resumes.
// --exit-after-chunks ends the process at once (a power cut: event
// "killed" with the counters, exit status 3) once it took N chunks.
// --drop-pushed hides the first pushed (routing 2) copy of these chunks
// that comes while it downloads, as a lost broadcast, and reports each as
// "dropped".
//
//   node ... --state DIR --trial-deadline S [--stock-image FILE]
//
// --trial-deadline runs the trial boot (MeshFleetBoot.h) on the host
// model of the ESP32 bootloader (meshfleet/boot.hpp: the images are files
// in DIR; the update partition is DIR/update.bin unless --image names
// one): a restart re-executes the program, which boots the new image on
// trial, and --md5/--fw name only the factory image. A host image may
// begin with the line
//   meshfleet-host-image version=V [rejoin=no]
// giving the version it reports; rejoin=no is a bad image that never
// joins the mesh (it neither listens nor connects). At start such a node
// reports "boot" (md5, trial, rolled_back), and "heap" (base, peak) with
// every image it wrote: the process's heap before the transfer and its
// peak, sampled at every write. The hardware is then ESP32 unless
// --hardware says otherwise. --stock-image runs painlessMesh's own OTA
// receiver (mesh.initOTAReceive) beside it, writing to FILE.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <memory>
#include <string>

#include "Arduino.h"
#include "boost/asynctcp.hpp"
#include "painlessmesh/mesh.hpp"
#include "MeshFleet.h"
#include "MeshFleetOTA.h"
#include "MeshFleetBoot.h"

WiFiClass WiFi;
ESPClass ESP;
UpdateClass Update;
LittleFSClass LittleFS;
painlessmesh::logger::LogClass Log;
void ESPClass::restart() {}

namespace peer {
uint32_t nodeId = 0;
}

namespace {

volatile std::sig_atomic_t stopSignal = 0;

// FileWriter is the host's update partition: the image goes to a file,
// written where each piece belongs and read back for the MD5 at the end,
// as the chip's PartitionWriter does.
// heapInUse is the bytes the process has allocated (malloc and new,
// painlessMesh's JSON documents and strings included), from glibc.
size_t heapInUse() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

class FileWriter : public meshfleet::ImageWriter {
 public:
  std::string path;
  // selected, if set, is where a verified image goes: the next boot's
  // (the host model of the ESP32's otadata selecting the partition).
  std::string selected;
  uint32_t maxImage = 4u << 20;
  uint32_t capacity() override { return maxImage; }
  bool begin(uint32_t size, bool resume) override {
    if (file) std::fclose(file);
    // A resumed transfer keeps what it wrote before the restart.
    file = resume ? std::fopen(path.c_str(), "r+b") : nullptr;
    if (!file) file = std::fopen(path.c_str(), "w+b");
    this->size = size;
    // The heap while receiving, sampled at every write (inside the
    // callback of the chunk being written, its package still held),
    // against the heap before the transfer.
    heapBase = heapPeak = heapInUse();
    peer::emit("started", "\"max\":" + std::to_string(size) + ",\"resume\":" + (resume ? "true" : "false"));
    return file != nullptr;
  }
  bool write(uint32_t offset, const uint8_t* data, size_t n) override {
    heapPeak = std::max(heapPeak, heapInUse());
    return file && offset + n <= size && std::fseek(file, offset, SEEK_SET) == 0 && std::fwrite(data, 1, n, file) == n;
  }
  bool read(uint32_t offset, uint8_t* data, size_t n) override {
    if (offset + n > size) return false;
    if (file) {
      std::fflush(file);
      return std::fseek(file, offset, SEEK_SET) == 0 && std::fread(data, 1, n, file) == n;
    }
    // After end: the image stays readable until the next transfer.
    std::FILE* f = std::fopen(path.c_str(), "rb");
    bool ok = f && std::fseek(f, offset, SEEK_SET) == 0 && std::fread(data, 1, n, f) == n;
    if (f) std::fclose(f);
    return ok;
  }
  // sync: a killed process keeps what reached the kernel.
  bool sync() override { return file && std::fflush(file) == 0; }
  bool end(const char* want) override {
    if (!file) return false;
    std::fflush(file);
    boost::uuids::detail::md5 md5;
    std::fseek(file, 0, SEEK_SET);
    uint8_t buf[4096];
    for (uint32_t at = 0; at < size;) {
      size_t k = std::min<size_t>(sizeof buf, size - at);
      if (std::fread(buf, 1, k, file) != k) break;
      md5.process_bytes(buf, k);
      at += (uint32_t)k;
    }
    std::fclose(file);
    file = nullptr;
    boost::uuids::detail::md5::digest_type d;
    md5.get_digest(d);
    std::string got;
    char hex[9];
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); ++i) {
      std::snprintf(hex, sizeof hex, sizeof(d[0]) == 1 ? "%02x" : "%08x", (unsigned)d[i]);
      got += hex;
    }
    bool ok = got == want;
    if (ok && !selected.empty()) ok = std::rename(path.c_str(), selected.c_str()) == 0;
    peer::emit("heap", "\"base\":" + std::to_string(heapBase) + ",\"peak\":" + std::to_string(heapPeak));
    peer::emit("md5", std::string("\"ok\":") + (ok ? "true" : "false") + ",\"md5\":\"" + got + "\"");
    return ok;
  }
  void abort() override {
    if (file) std::fclose(file);
    file = nullptr;
  }

 private:
  size_t heapBase = 0, heapPeak = 0;
  std::FILE* file = nullptr;
  uint32_t size = 0;
};

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

// HostImage is what a host image file says of itself.
struct HostImage {
  std::string md5, version;
  bool rejoins = true;
};

bool readImage(const std::string& path, HostImage& img) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  std::string data;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) data.append(buf, n);
  std::fclose(f);
  img.md5 = md5Hex(data);
  const std::string magic = "meshfleet-host-image ";
  if (data.compare(0, magic.size(), magic) == 0) {
    std::string line = data.substr(0, data.find('\n'));
    auto v = line.find("version=");
    if (v != std::string::npos) img.version = line.substr(v + 8, line.find(' ', v) - v - 8);
    img.rejoins = line.find("rejoin=no") == std::string::npos;
  }
  return true;
}

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr, "node: %s\n", msg.c_str());
  std::exit(2);
}

bool splitHostPort(const std::string& s, boost::asio::ip::address& addr, uint16_t& port) {
  auto i = s.rfind(':');
  if (i == std::string::npos) return false;
  boost::system::error_code ec;
  addr = boost::asio::ip::make_address(i == 0 ? "127.0.0.1" : s.substr(0, i), ec);
  char* end = nullptr;
  long p = std::strtol(s.c_str() + i + 1, &end, 10);
  if (ec || *end != 0 || p < 0 || p > 65535) return false;
  port = (uint16_t)p;
  return true;
}

// command applies one stdin line to the host platform.
void command(const std::string& line) {
  auto sp = line.find(' ');
  if (sp == std::string::npos) return;
  std::string key = line.substr(0, sp);
  long v = std::strtol(line.c_str() + sp + 1, nullptr, 10);
  auto& r = meshfleet::HostPlatform::values();
  if (key == "heap") r.freeHeap = (uint32_t)v;
  else if (key == "rssi") r.rssi = (int8_t)v;
  else if (key == "crashes") r.crashes = (uint8_t)v;
  else std::fprintf(stderr, "node: unknown command %s\n", line.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t id = 0;
  std::string listen, connect, role = "sensor", fw, md5, image, dropPushed, hardware, stateDir, stockImage;
  long interval = 30, exitAfter = 0, maxImage = 0, trialDeadline = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage(a + " needs a value");
    std::string v = argv[++i];
    if (a == "--id") id = (uint32_t)std::strtoul(v.c_str(), nullptr, 10);
    else if (a == "--listen") listen = v;
    else if (a == "--connect") connect = v;
    else if (a == "--role") role = v;
    else if (a == "--fw") fw = v;
    else if (a == "--md5") md5 = v;
    else if (a == "--image") image = v;
    else if (a == "--hardware") hardware = v;
    else if (a == "--state") stateDir = v;
    else if (a == "--stock-image") stockImage = v;
    else if (a == "--trial-deadline") trialDeadline = std::strtol(v.c_str(), nullptr, 10);
    else if (a == "--exit-after-chunks") exitAfter = std::strtol(v.c_str(), nullptr, 10);
    else if (a == "--max-image") maxImage = std::strtol(v.c_str(), nullptr, 10);
    else if (a == "--drop-pushed") dropPushed = "," + v + ",";
    else if (a == "--interval") interval = std::strtol(v.c_str(), nullptr, 10);
    else usage("unknown flag " + a);
  }
  if (id == 0) usage("--id is required");
  if (listen.empty() && connect.empty()) usage("give --listen or --connect (or both)");
  if (interval < 1 || interval > 65535) usage("--interval: not in 1..65535 s");
  if (trialDeadline < 0 || trialDeadline > 65535) usage("--trial-deadline: not in 1..65535 s");
  if (trialDeadline > 0 && stateDir.empty()) usage("--trial-deadline needs --state");
  peer::nodeId = id;

  // The host bootloader: which image this start runs.
  std::unique_ptr<meshfleet::HostBoot> hostBoot;
  bool rejoins = true;
  if (trialDeadline > 0) {
    hostBoot.reset(new meshfleet::HostBoot(stateDir));
    auto booted = hostBoot->boot();
    HostImage img;
    if (!booted.image.empty()) {
      if (!readImage(booted.image, img)) usage("--state: cannot read " + booted.image);
      md5 = img.md5;
      if (!img.version.empty()) fw = img.version;
      rejoins = img.rejoins;
    }
    if (image.empty()) image = hostBoot->path("update.bin");
    if (hardware.empty()) hardware = "ESP32";  // the chip with a trial boot
    peer::emit("boot", "\"md5\":\"" + md5 + "\",\"trial\":" + (booted.trial ? "true" : "false") +
                           ",\"rolled_back\":" + (booted.rolledBack ? "true" : "false"));
  }
  if (hardware.empty()) hardware = "ESP8266";
  meshfleet::HostPlatform::values().hardware = hardware == "ESP32" ? "ESP32" : "ESP8266";
  std::signal(SIGTERM, [](int) { stopSignal = 1; });
  std::signal(SIGINT, [](int) { stopSignal = 1; });
  std::signal(SIGPIPE, SIG_IGN);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

  using namespace painlessmesh;
  Log.setLogLevel(logger::ERROR);
  Scheduler userScheduler;
  boost::asio::io_context io;
  painlessmesh::Mesh<Connection> mesh;
  mesh.init(&userScheduler, id);

  // The three lines a firmware adds (the Scheduler is the mesh's own).
  MeshFleet fleet(mesh, userScheduler);
  fleet.begin(role.c_str(), fw.c_str(), md5.c_str());
  fleet.setInterval((uint16_t)interval);

  // The OTA receiver's first layer, writing the image to --image.
  FileWriter writer;
  writer.path = image;
  if (maxImage > 0) writer.maxImage = (uint32_t)maxImage;
  if (hostBoot) writer.selected = hostBoot->path("next.bin");
  MeshFleetOTA ota(mesh, userScheduler, writer);
  std::unique_ptr<MeshFleetBoot> trial;
  if (hostBoot) {
    // Before ota.begin: a trial image answers no Offer until it is valid.
    trial.reset(new MeshFleetBoot(mesh, userScheduler, ota, *hostBoot));
    trial->begin(md5.c_str(), (uint16_t)trialDeadline);
    fleet.setOTA(*trial);
  } else if (!image.empty()) {
    fleet.setOTA(ota);
  }
  // The chip's LittleFS file: a file in the state directory.
  meshfleet::HostFlashFile progress(stateDir + "/mf_ota.bin");
  if (!stateDir.empty()) ota.setProgressFile(&progress);
  if (!dropPushed.empty()) {
    // Registered before the receiver's: the later callbacks see the
    // same package, which a cleared id makes one of another transfer.
    struct Drop {
      explicit Drop(JsonObject o) : obj(o) {}
      JsonObject obj;
    };
    mesh.onPackage(meshfleet::kTypeChunk, [&dropPushed, &ota](painlessmesh::protocol::Variant& v) {
      JsonObject o = v.to<Drop>().obj;
      std::string i = "," + std::to_string(o["i"].as<unsigned>()) + ",";
      size_t at = dropPushed.find(i);
      if (ota.state() == 1 && o["routing"].as<int>() == 2 && at != std::string::npos) {
        dropPushed.erase(at, i.size() - 1);
        o["id"] = "";
        peer::emit("dropped", "\"part\":" + i.substr(1, i.size() - 2));
      }
      return false;
    });
  }
  // An ESP32 inflates deflate transfers (the ROM's inflater; zlib here);
  // an ESP8266 has no room for one and refuses them.
  static meshfleet::HostInflater inflater;
  if (hardware != "ESP8266") ota.setInflater(&inflater);
  ota.onState([&ota](const char* state, const char* why) {
    peer::emit("ota_state", std::string("\"state\":\"") + state + "\",\"err\":\"" + peer::jsonEscape(why) +
                                "\",\"held\":" + std::to_string(ota.heldChunks()) + ",\"of\":" + std::to_string(ota.totalChunks()));
  });
  auto counters = [&ota]() {
    return "\"lost\":" + std::to_string(ota.lost()) + ",\"taken\":" + std::to_string(ota.taken()) +
           ",\"dup\":" + std::to_string(ota.duplicates()) + ",\"resumed\":" + std::to_string(ota.resumed()) +
           ",\"served\":" + std::to_string(ota.served()) + ",\"asked\":" + std::to_string(ota.asked()) +
           ",\"asked_parent\":" + std::to_string(ota.askedParent()) + ",\"from_parent\":" + std::to_string(ota.fromParent()) +
           ",\"asked_path\":" + std::to_string(ota.askedPath()) + ",\"from_path\":" + std::to_string(ota.fromPath()) +
           ",\"held\":" + std::to_string(ota.heldChunks()) + ",\"of\":" + std::to_string(ota.totalChunks());
  };
  if (trial)
    ota.begin(role.c_str(), hardware.c_str(), md5.c_str(), [&]() {
      peer::emit("restart", counters());
      trial->restart();
    });
  else if (!image.empty())
    ota.begin(role.c_str(), hardware.c_str(), md5.c_str(), [&]() { peer::emit("restart", counters()); });
  if (!stockImage.empty()) {
    // painlessMesh's own receiver, as a stock firmware has it; its
    // /ota_fw.json goes beside the image.
    Update.imagePath = stockImage;
    auto slash = stockImage.rfind('/');
    LittleFS.root = slash == std::string::npos ? "." : stockImage.substr(0, slash);
    mesh.initOTAReceive(role, [](int, int of) { Update.expectedParts = of; });
  }

  mesh.onChangedConnections([&mesh]() {
    peer::emit("nodes", "\"count\":" + std::to_string(mesh.getNodeList(true).size()));
  });

  std::shared_ptr<AsyncServer> server;
  if (!rejoins) listen.clear(), connect.clear();  // the bad image of a test
  if (!listen.empty()) {
    boost::asio::ip::address addr;
    uint16_t port;
    if (!splitHostPort(listen, addr, port)) usage("--listen: " + listen + " is not ip:port");
    server = std::make_shared<AsyncServer>(io, port, addr);
    tcp::initServer<Connection, painlessmesh::Mesh<Connection>>(*server, mesh);
  }
  boost::asio::ip::address connectAddr;
  uint16_t connectPort = 0;
  if (!connect.empty()) {
    if (!splitHostPort(connect, connectAddr, connectPort)) usage("--connect: " + connect + " is not ip:port");
    auto dial = [&]() {
      auto client = new AsyncClient(io);  // owned by its Connection once up
      tcp::connect<Connection, painlessmesh::Mesh<Connection>>(*client, connectAddr, connectPort, mesh);
    };
    dial();
    // Dial again while the connection it made (a station connection, in
    // painlessMesh's words) is missing, not merely while it is alone: a
    // node that others joined first would otherwise never reach --connect.
    auto away = std::make_shared<int>(0);
    mesh.addTask(TASK_SECOND, TASK_FOREVER, [&mesh, dial, away]() {
      bool up = false;
      for (auto&& c : mesh.subs) up = up || c->station;
      *away = up ? 0 : *away + 1;
      if (*away >= 2) {
        *away = 0;
        dial();
      }
    });
  }

  peer::emit("ready", server ? "\"port\":" + std::to_string(server->port()) : "");
  peer::emit("budget", "\"bytes\":" + std::to_string(sizeof(MeshFleet)));
  peer::emit("boot_budget", "\"bytes\":" + std::to_string(sizeof(MeshFleetBoot)));
  peer::emit("ota_budget", "\"bytes\":" + std::to_string(sizeof(MeshFleetOTA)) +
                              ",\"inflater\":" + std::to_string(hardware != "ESP8266" ? sizeof(meshfleet::HostInflater) : 0));

  std::string pending;
  while (!stopSignal && !(hostBoot && hostBoot->restartRequested)) {
    char buf[256];
    ssize_t n = read(0, buf, sizeof buf);
    if (n > 0) {
      pending.append(buf, (size_t)n);
      for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
        if (pending.compare(0, nl, "stats") == 0) peer::emit("ota_stats", counters());
        else command(pending.substr(0, nl));
        pending.erase(0, nl + 1);
      }
    }
    if (exitAfter > 0 && ota.state() == 1 && ota.taken() >= (uint32_t)exitAfter) {
      // A power cut: no goodbye, nothing flushed beyond what the
      // receiver made durable itself.
      peer::emit("killed", counters());
      std::_Exit(3);
    }
    bool idle = userScheduler.execute();
    if (io.poll() == 0 && idle) io.run_one_for(std::chrono::milliseconds(1));
    if (io.stopped()) {
      io.restart();
      usleep(1000);
    }
  }
  mesh.stop();
  for (int i = 0; i < 50; ++i) io.poll();
  if (hostBoot && hostBoot->restartRequested && !stopSignal) {
    // A reboot: the same program again, with only the files in --state
    // kept; stdin and stdout stay the test's.
    server.reset();
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    execv("/proc/self/exe", argv);
    std::perror("node: reboot");
    return 1;
  }
  peer::emit("stopped");
  return 0;
}
