// The status packages a node sends (types 700, 702 and the stock 604),
// with the keys in the order of status/PROTOCOL.md: from, dest, routing,
// type, then the package's own. They hold pointers into the caller's
// fixed buffers and are serialised at once by sendPackage.
#ifndef MESHFLEET_PACKAGES_HPP_
#define MESHFLEET_PACKAGES_HPP_

#include "painlessmesh/protocol.hpp"
#include "meshfleet/telemetry.hpp"

namespace meshfleet {

enum : int { kTypeTelemetry = 700, kTypeStatusQuery = 701, kTypeStatusReport = 702, kTypeTelemetryControl = 703,
             kTypeEnhancedStatus = 604 };

// Report is what a STATUS_REPORT's metrics and a 604 say beyond a frame.
struct Report {
  Values v;
  const char* fw = "";
  const char* fwMD5 = "";
  const char* lastErr = "";
  const char* role = "";
  const char* hw = "";
};

class SingleBase : public painlessmesh::protocol::PackageInterface {
 public:
  uint32_t from = 0, dest = 0;
  int type = 0;
  JsonObject header(JsonObject& o) const {
    o["from"] = from;
    o["dest"] = dest;
    o["routing"] = 1;
    o["type"] = type;
    return o;
  }
#if ARDUINOJSON_VERSION_MAJOR < 7
  size_t jsonObjectSize() const override { return JSON_OBJECT_SIZE(30) + JSON_OBJECT_SIZE(4); }
#endif
};

// TelemetryPackage (700): {"from","dest","routing":1,"type":700,"frame":base64}.
class TelemetryPackage : public SingleBase {
 public:
  const char* frame = "";  // base64
  TelemetryPackage() { type = kTypeTelemetry; }
  JsonObject addTo(JsonObject&& o) const override {
    header(o);
    o["frame"] = frame;
    return o;
  }
};

// StatusReport (702): the answer to a full query.
class StatusReport : public SingleBase {
 public:
  uint32_t qid = 0;
  const Report* r = nullptr;
  StatusReport() { type = kTypeStatusReport; }
  JsonObject addTo(JsonObject&& o) const override {
    header(o);
    o["qid"] = qid;
#if ARDUINOJSON_VERSION_MAJOR >= 7
    JsonObject m = o["metrics"].to<JsonObject>();
#else
    JsonObject m = o.createNestedObject("metrics");
#endif
    const Values& v = r->v;
    m["uptime"] = v.uptime;
    m["freeMemory"] = v.freeMemory;
    m["msgRx"] = v.messagesRx;
    m["msgTx"] = v.messagesTx;
    m["msgDrop"] = v.messagesDropped;
    m["latencyUs"] = v.latency;
    m["throughput"] = v.throughput;
    m["lossPermille"] = v.lossPermille;
    m["nodes"] = v.nodes;
    m["conns"] = v.connections;
    m["rssi"] = v.rssi;
    m["wifi"] = v.wifi;
    m["alerts"] = v.alerts;
    m["status"] = v.deviceStatus;
    m["otaState"] = v.otaState;
    m["otaProgress"] = v.otaProgress;
    m["fw"] = r->fw;
    m["fwMD5"] = r->fwMD5;
    m["fwHash"] = v.firmwareHash;
    m["lastErr"] = r->lastErr;
    m["interval"] = v.interval;
    if (*r->role) m["role"] = r->role;
    if (*r->hw) m["hw"] = r->hw;
    return o;
  }
};

// EnhancedStatus (604) addressed to the querier, in the stock key set
// (docs/protocol.md §9.5): mem in KB, latency in ms, loss in percent.
class EnhancedStatus : public SingleBase {
 public:
  const Report* r = nullptr;
  EnhancedStatus() { type = kTypeEnhancedStatus; }
  JsonObject addTo(JsonObject&& o) const override {
    header(o);
    const Values& v = r->v;
    o["status"] = v.deviceStatus;
    o["uptime"] = v.uptime;
    o["mem"] = v.freeMemory / 1024 > 65535 ? 65535 : v.freeMemory / 1024;
    o["wifi"] = v.wifi;
    o["fw"] = r->fw;
    o["fwMD5"] = r->fwMD5;
    o["nodes"] = v.nodes;
    o["conns"] = v.connections;
    o["msgRx"] = v.messagesRx;
    o["msgTx"] = v.messagesTx;
    o["msgDrop"] = v.messagesDropped;
    o["latency"] = (v.latency + 500) / 1000;
    o["loss"] = (v.lossPermille + 5) / 10;
    o["throughput"] = v.throughput;
    o["alerts"] = v.alerts;
    o["lastErr"] = r->lastErr;
    return o;
  }
};

}  // namespace meshfleet

#endif
