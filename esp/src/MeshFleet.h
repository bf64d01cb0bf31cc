// MeshFleet: a painlessMesh node's side of meshfleet's status system.
//
//   painlessMesh mesh;  Scheduler userScheduler;     // the firmware's own
//   MeshFleet fleet(mesh, userScheduler);
//   fleet.begin("sensor");                           // after mesh.init(...)
//
// The node then streams telemetry frames (700) to the collector, answers
// status queries (701) with a full report (702) or a stock enhanced status
// (604), sends a keyframe when asked (703), and sends a priority frame at
// once when an alert appears (low memory, weak WiFi, loss, lost collector,
// reboot loop). Everything is byte for byte what meshfleet's Go collector
// reads (status/PROTOCOL.md). The OTA receiver is MeshFleetOTA.h and its
// trial boot MeshFleetBoot.h; fleet.setOTA(...) puts their state in the
// reports (see README.md).
//
// Memory: the object's state is fixed at compile time (sizeof(MeshFleet),
// reported by the host build's test); sending builds no buffers of its
// own beyond the stack (a 64-byte frame, 89 bytes of base64). painlessMesh
// itself allocates a JSON document and a string per package it sends, and
// a copy of its layout when the library reads it (once a second).
#ifndef MESHFLEET_H_
#define MESHFLEET_H_

#include <stdint.h>
#include <string.h>

#if !defined(PAINLESSMESH_BOOST)
#include <painlessMesh.h>
#endif

#include "meshfleet/packages.hpp"
#include "meshfleet/platform.hpp"
#include "meshfleet/telemetry.hpp"

namespace meshfleet {

// Alert bits (status/PROTOCOL.md §6).
enum : uint8_t {
  kAlertLowMemory = 1 << 0,
  kAlertPacketLoss = 1 << 2,
  kAlertConnectionLost = 1 << 3,
  kAlertOTAFailed = 1 << 4,
  kAlertSensorError = 1 << 5,
  kAlertWiFiWeak = 1 << 6,
  kAlertRebootLoop = 1 << 7,
};

// The frames' otaState of a failed update (it raises kAlertOTAFailed).
enum : uint8_t { kOTAFailed = 5 };

// Thresholds of the alert bits, as the Go reporter sets them.
enum : uint32_t { kLowMemoryBytes = 10 * 1024 };
enum : int { kWeakRSSI = -80 };
enum : uint32_t { kStableMs = 60000 };

template <class Mesh>
class BasicMeshFleet {
 public:
  BasicMeshFleet(Mesh& mesh, Scheduler& scheduler) : mesh_(mesh), scheduler_(scheduler) {}

  // begin starts reporting as a node of this OTA role; call it after
  // mesh.init. version and md5 name the running firmware (the gateway
  // shows them; md5 is what an OTA campaign compares against).
  void begin(const char* role, const char* version = "", const char* md5 = "") {
    copy(role_, sizeof role_, role);
    setFirmware(version, md5);
    startMs_ = now32();
    readings_ = readPlatform();
    using painlessmesh::protocol::Variant;
    mesh_.onPackage(kTypeStatusQuery, [this](Variant& v) {
      ++rx_;
      handleQuery(v.to<QueryIn>());
      return false;
    });
    mesh_.onPackage(kTypeTelemetryControl, [this](Variant& v) {
      ++rx_;
      ControlIn c = v.to<ControlIn>();
      if (c.dest == mesh_.getNodeId() && c.keyframe) {
        encoder_.requestKeyframe();
        frameDue_ = true;
      }
      return false;
    });
    // Application messages this node receives (the firmware's own
    // onReceive still gets them: callbacks of a type are a list).
    mesh_.onPackage(painlessmesh::protocol::SINGLE, [this](Variant&) { ++rx_; return false; });
    mesh_.onPackage(painlessmesh::protocol::BROADCAST, [this](Variant&) { ++rx_; return false; });
    mesh_.onChangedConnections([this]() {
      // A connection that makes the collector reachable again sends a
      // frame at once (PROTOCOL §2.2).
      readLayout();
      if (!collectorReachable_ && collectorUp()) frameDue_ = true;
    });
    tick_.set(TASK_SECOND, TASK_FOREVER, [this]() { tick(); });
    scheduler_.addTask(tick_);
    tick_.enable();
  }

  void setFirmware(const char* version, const char* md5) {
    copy(fw_, sizeof fw_, version);
    copy(fwMD5_, sizeof fwMD5_, md5);
  }
  // setCollector sends to this node instead of the querier or the root.
  void setCollector(uint32_t node) { collector_ = node; }
  // setInterval sets seconds between regular frames (default 30).
  void setInterval(uint16_t seconds) { interval_ = seconds ? seconds : 1; }
  void setDeviceStatus(uint8_t status) { deviceStatus_ = status; }
  // setOTA makes frames and reports carry the OTA state and progress of
  // source: anything with state() (status/PROTOCOL.md otaState: 0 idle,
  // 1 downloading, 2 verifying, 3 switching, 4 confirmed, 5 failed,
  // 6 rolled back) and progress() (percent), e.g. MeshFleetOTA, or
  // MeshFleetBoot, which adds the trial boot's states. A failure is sent
  // at once (alert OTA_FAILED, as Go nodes raise it). Kept as a pointer and a
  // plain function, so the object grows by two pointers and allocates
  // nothing.
  template <class Source>
  void setOTA(const Source& source) {
    otaSource_ = &source;
    readOTA_ = [](const void* p, uint8_t& state, uint8_t& progress) {
      const Source& s = *static_cast<const Source*>(p);
      state = s.state();
      progress = s.progress();
    };
  }
  void setLastError(const char* text) { copy(lastErr_, sizeof lastErr_, text); }
  // setAlert raises or clears an application alert (kAlertSensorError);
  // a new one is sent at once.
  void setAlert(uint8_t bit, bool on) { appAlerts_ = on ? appAlerts_ | bit : appAlerts_ & ~bit; }

  // sendSingle and sendBroadcast send as the mesh's own do, counting
  // messages sent and dropped (the mesh reports no counts of its own).
  bool sendSingle(uint32_t dest, const TSTRING& msg) { return count(mesh_.sendSingle(dest, msg)); }
  bool sendBroadcast(const TSTRING& msg) { return count(mesh_.sendBroadcast(msg)); }

  // values are the current readings, as the next frame would carry them.
  Values values() {
    Values v;
    v.uptime = (now32() - startMs_) / 1000;
    v.freeMemory = readings_.freeHeap;
    v.messagesRx = rx_;
    v.messagesTx = tx_;
    v.messagesDropped = dropped_;
    v.lossPermille = lossPermille_;
    v.connections = layout_.connections;
    v.nodes = layout_.nodes;
    v.interval = interval_;
    v.rssi = readings_.rssi;
    v.wifi = signalPercent(readings_.rssi);
    v.alerts = alerts();
    v.deviceStatus = deviceStatus_;
    if (readOTA_) readOTA_(otaSource_, v.otaState, v.otaProgress);
    v.firmwareHash = firmwareHash(fw_, fwMD5_);
    return v;
  }

  const Readings& readings() const { return readings_; }
  uint32_t framesSent() const { return framesSent_; }

  // collector is where reports go: the configured node, else the last
  // querier, else the root of the layout; 0 when none is known.
  uint32_t collector() {
    if (collector_) return collector_;
    if (learned_) return learned_;
    return layout_.root;
  }

 private:
  struct QueryIn {
    uint32_t from = 0, dest = 0, qid = 0, spread = 0;
    bool enhanced = false;
    explicit QueryIn(JsonObject o) {
      from = o["from"].as<uint32_t>();
      dest = o["dest"].as<uint32_t>();
      qid = o["qid"].as<uint32_t>();
      spread = o["spread"].as<uint32_t>();
      const char* form = o["form"] | "full";
      enhanced = strcmp(form, "enhanced") == 0;
      list = o["targets"].as<JsonArray>();
    }
    // list is valid while the received package is: handleQuery runs
    // inside its callback.
    JsonArray list;
    bool lists(uint32_t node) const {
      if (list.isNull() || list.size() == 0) return true;  // empty: every node
      for (JsonVariant id : list)
        if (id.as<uint32_t>() == node) return true;
      return false;
    }
  };
  struct ControlIn {
    uint32_t dest = 0;
    bool keyframe = false;
    explicit ControlIn(JsonObject o) : dest(o["dest"].as<uint32_t>()), keyframe(o["keyframe"] | false) {}
  };
  // Answer is a query waiting for its spread delay; a fixed table.
  struct Answer {
    uint32_t querier = 0, qid = 0, dueMs = 0;
    bool enhanced = false, used = false;
  };
  enum : size_t { kMaxAnswers = 4 };

  // now32 is millis() on 32 bits, where the chips' counter wraps (the
  // host's is wider).
  static uint32_t now32() { return (uint32_t)millis(); }

  static void copy(char* dst, size_t n, const char* src) {
    strncpy(dst, src ? src : "", n - 1);
    dst[n - 1] = 0;
  }

  // Layout is what the library needs of the mesh's layout, read once a
  // second and when connections change: painlessMesh hands out the
  // layout only as a copy (asNodeTree allocates), so reports and frames
  // read these fields instead.
  struct Layout {
    uint32_t root = 0;       // the node advertising root, 0 if none
    uint16_t nodes = 0;      // known, self excluded
    uint8_t connections = 0; // direct
  };

  // walk fills l from tree t (self included in the count).
  static void walk(const painlessmesh::protocol::NodeTree& t, Layout& l, uint32_t& count) {
    if (t.root && !l.root) l.root = t.nodeId;
    if (t.nodeId) ++count;
    for (auto&& s : t.subs) walk(s, l, count);
  }

  static bool holds(const painlessmesh::protocol::NodeTree& t, uint32_t id) {
    if (t.nodeId == id) return true;
    for (auto&& s : t.subs)
      if (holds(s, id)) return true;
    return false;
  }

  void readLayout() {
    auto tree = mesh_.asNodeTree();
    Layout l;
    uint32_t count = 0;
    walk(tree, l, count);
    l.nodes = (uint16_t)(count > 0 ? count - 1 : 0);
    l.connections = (uint8_t)tree.subs.size();
    layout_ = l;
    uint32_t c = collector();
    collectorInLayout_ = c != 0 && c != mesh_.getNodeId() && holds(tree, c);
  }

  bool count(bool sent) {
    sent ? ++tx_ : ++dropped_;
    return sent;
  }

  uint8_t alerts() {
    uint8_t a = appAlerts_;
    if (readings_.freeHeap && readings_.freeHeap < kLowMemoryBytes) a |= kAlertLowMemory;
    if (readings_.rssi && readings_.rssi < kWeakRSSI) a |= kAlertWiFiWeak;
    if (lossPermille_ > 100) a |= kAlertPacketLoss;
    if (readings_.crashes >= kRebootLoopCrashes) a |= kAlertRebootLoop;
    if (readOTA_) {
      // As the Go reporter: a failed update raises OTA_FAILED.
      uint8_t state = 0, progress = 0;
      readOTA_(otaSource_, state, progress);
      if (state == kOTAFailed) a |= kAlertOTAFailed;
    }
    if (collector() != mesh_.getNodeId() && !collectorUp()) a |= kAlertConnectionLost;
    return a;
  }

  void handleQuery(const QueryIn& q) {
    uint32_t self = mesh_.getNodeId();
    if (q.from == 0 || q.from == self) return;
    if (q.dest != 0 && q.dest != self) return;
    if (q.dest == 0 && !q.lists(self)) return;
    if (!collector_ && learned_ != q.from) {
      learned_ = q.from;
      readLayout();  // whether the new collector is reachable (rare: one querier)
    }
    Answer a;
    a.querier = q.from;
    a.qid = q.qid;
    a.enhanced = q.enhanced;
    a.dueMs = now32() + (q.dest == 0 ? queryDelayMs(self, q.qid, q.spread) : 0);
    a.used = true;
    Answer* slot = nullptr;
    for (auto& p : answers_) {
      if (p.used && p.querier == a.querier && p.qid == a.qid) return;  // already waiting
      if (!p.used && !slot) slot = &p;
    }
    if (!slot) return;  // the table is full: the collector asks again
    *slot = a;
    sendAnswers();  // a single query is due now
  }

  void sendAnswers() {
    uint32_t now = now32();
    for (auto& a : answers_) {
      if (!a.used || (int32_t)(now - a.dueMs) < 0) continue;
      a.used = false;
      Report r = report();
      bool ok;
      if (a.enhanced) {
        EnhancedStatus p;
        p.from = mesh_.getNodeId();
        p.dest = a.querier;
        p.r = &r;
        ok = mesh_.sendPackage(&p);
      } else {
        StatusReport p;
        p.from = mesh_.getNodeId();
        p.dest = a.querier;
        p.qid = a.qid;
        p.r = &r;
        ok = mesh_.sendPackage(&p);
      }
      count(ok);
    }
  }

  Report report() {
    Report r;
    r.v = values();
    r.fw = fw_;
    r.fwMD5 = fwMD5_;
    r.lastErr = lastErr_;
    r.role = role_;
    r.hw = readings_.hardware;
    return r;
  }

  void sendFrame(bool priority) {
    uint32_t c = collector();
    collectorReachable_ = collectorUp();
    if (!collectorReachable_) {
      // Nothing to send to; the next frame after a failure is a keyframe.
      encoder_.requestKeyframe();
      return;
    }
    Values v = values();
    uint8_t frame[kMaxFrameSize];
    size_t n = encoder_.encode(frame, now32(), mesh_.getNodeTime(), v, priority);
    char text[4 * ((kMaxFrameSize + 2) / 3) + 1];
    base64(text, frame, n);
    TelemetryPackage p;
    p.from = mesh_.getNodeId();
    p.dest = c;
    p.frame = text;
    if (!count(mesh_.sendPackage(&p))) encoder_.requestKeyframe();
    ++framesSent_;
    sentAlerts_ = v.alerts;
    lastFrameMs_ = now32();
  }

  // tick runs every second: read the chip, answer due queries, send a
  // frame when one is due, at once (priority) for a new alert bit.
  void tick() {
    readings_ = readPlatform();
    readLayout();
    uint32_t now = now32();
    // A minute up: the boots before were not a loop (and a new crash
    // starts counting again).
    if (readings_.crashes && now - startMs_ >= kStableMs) {
      clearCrashes();
      readings_.crashes = 0;
    }
    if (++lossWindow_ >= interval_) {
      uint32_t sent = tx_ - lossTx_, drop = dropped_ - lossDrop_;
      lossPermille_ = sent + drop ? (uint16_t)(1000ull * drop / (sent + drop)) : 0;
      lossTx_ = tx_, lossDrop_ = dropped_, lossWindow_ = 0;
    }
    sendAnswers();
    uint8_t fresh = alerts() & ~sentAlerts_;
    bool firstDue = framesSent_ == 0 && (now - startMs_ >= 5000 || collectorUp());
    if (fresh && framesSent_ > 0 && now - lastFrameMs_ >= 2000) {
      sendFrame(true);
    } else if (frameDue_ || firstDue || (framesSent_ > 0 && now - lastFrameMs_ >= interval_ * 1000u)) {
      frameDue_ = false;
      sendFrame(false);
    }
  }

  bool collectorUp() {
    return collectorInLayout_;
  }

  Mesh& mesh_;
  Scheduler& scheduler_;
  Task tick_;
  TelemetryEncoder encoder_;
  Readings readings_;
  Answer answers_[kMaxAnswers];
  char role_[24] = "";
  char fw_[24] = "";
  char fwMD5_[33] = "";
  char lastErr_[48] = "";
  uint32_t startMs_ = 0, lastFrameMs_ = 0, framesSent_ = 0;
  uint32_t rx_ = 0, tx_ = 0, dropped_ = 0;
  uint32_t lossTx_ = 0, lossDrop_ = 0;
  uint32_t collector_ = 0, learned_ = 0;
  uint16_t interval_ = 30, lossWindow_ = 0, lossPermille_ = 0;
  uint8_t deviceStatus_ = 0, appAlerts_ = 0, sentAlerts_ = 0;
  bool frameDue_ = false, collectorReachable_ = false, collectorInLayout_ = false;
  Layout layout_;
  const void* otaSource_ = nullptr;
  void (*readOTA_)(const void*, uint8_t&, uint8_t&) = nullptr;
};

}  // namespace meshfleet

#if defined(PAINLESSMESH_BOOST)
using MeshFleet = meshfleet::BasicMeshFleet<painlessmesh::Mesh<painlessmesh::Connection>>;
#else
using MeshFleet = meshfleet::BasicMeshFleet<painlessMesh>;
#endif

#endif
