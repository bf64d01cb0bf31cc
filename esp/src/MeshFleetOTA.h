// MeshFleetOTA: the first layer of meshfleet's OTA receiver (see
// meshfleet/ota.hpp for what it does and does not do yet).
//
//   meshfleet::UpdateWriter writer;                 // the chip's Update
//   MeshFleetOTA ota(mesh, userScheduler, writer);
//   meshfleet::RomInflater inflater;                // ESP32 only: deflate
//   ota.setInflater(&inflater);                     // ESP32 only
//   ota.begin("sensor", "ESP8266", RUNNING_MD5, [] { ESP.restart(); });
//
// Without an inflater (ESP8266) Offers with method deflate are refused.
// State: kMaxChunk (4096) + the heatshrink window (2048) + about 500
// bytes, fixed (sizeof(MeshFleetOTA), logged by the ESPLibrary tests of
// cmd/meshfleet: 6640 on the 64-bit host).
#ifndef MESHFLEET_OTA_H_
#define MESHFLEET_OTA_H_

#include <functional>

#include "meshfleet/inflate.hpp"
#include "meshfleet/ota.hpp"

#if !defined(PAINLESSMESH_BOOST)
#if defined(ESP32)
#include <Update.h>
#else
#include <Updater.h>
#endif
#endif

namespace meshfleet {

#if !defined(PAINLESSMESH_BOOST)
// UpdateWriter writes through the core's Update object into the OTA
// partition; Update.end(true) checks the MD5 given with setMD5 and marks
// the image for the next boot only if it matches.
class UpdateWriter : public ImageWriter {
 public:
  bool begin(uint32_t size) override { return Update.begin(size); }
  bool write(const uint8_t* data, size_t n) override { return Update.write(const_cast<uint8_t*>(data), n) == n; }
  bool end(const char* md5) override {
    Update.setMD5(md5);
    return Update.end(true);
  }
  void abort() override {
#if defined(ESP32)
    Update.abort();
#else
    Update.end(true);  // without the whole image: fails and resets the updater
#endif
  }
};
#endif

template <class Mesh>
class BasicMeshFleetOTA {
 public:
  BasicMeshFleetOTA(Mesh& mesh, Scheduler& scheduler, ImageWriter& writer)
      : mesh_(mesh), scheduler_(scheduler), writer_(writer) {}

  // begin takes Offers for this role and hardware; activeMD5 is the
  // running image's. restart is called after a verified image was
  // written, as the chip reboots into it.
  void begin(const char* role, const char* hardware, const char* activeMD5, std::function<void()> restart) {
    copy(role_, sizeof role_, role);
    copy(hardware_, sizeof hardware_, hardware);
    copy(active_, sizeof active_, activeMD5);
    restart_ = restart;
    using painlessmesh::protocol::Variant;
    mesh_.onPackage(kTypeOffer, [this](Variant& v) {
      onOffer(v.to<OfferIn>());
      return false;
    });
    mesh_.onPackage(kTypeChunk, [this](Variant& v) {
      onChunk(v.to<ChunkIn>());
      return false;
    });
    mesh_.onPackage(kTypeEnd, [this](Variant& v) {
      onEnd(v.to<ChunkIn>());
      return false;
    });
    tick_.set(200, TASK_FOREVER, [this]() { tick(); });
    scheduler_.addTask(tick_);
    tick_.enable();
  }

  // state is the telemetry otaState: 0 idle, 1 downloading, 2 verifying,
  // 3 switching, 4 confirmed, 5 failed.
  uint8_t state() const { return state_; }
  uint8_t progress() const { return total_ ? (uint8_t)(100ull * next_ / total_) : 0; }
  const char* activeMD5() const { return active_; }
  // The current (or last) transfer and its distributor: what a trial boot
  // (MeshFleetBoot.h) reports its outcome to.
  const char* transferID() const { return id_; }
  uint32_t distributor() const { return distributor_; }
  // setInflater gives the receiver an inflater for method deflate
  // (inflate.hpp); without one it refuses deflate Offers.
  void setInflater(Inflater* inflater) { inflater_ = inflater; }
  // onState is called with every state change (idle, downloading,
  // verifying, switching, confirmed, failed, and refused for an Offer
  // refused) and the reason of a failure or refusal.
  void onState(std::function<void(const char* state, const char* why)> f) { onState_ = f; }
  // lost is the number of pushed chunks of the current broadcast
  // transfer found missing (the Reports' "lost").
  uint32_t lost() const { return lost_; }

 private:
  struct OfferIn {
    explicit OfferIn(JsonObject o) : obj(o) {}
    JsonObject obj;
  };
  struct ChunkIn {
    explicit ChunkIn(JsonObject o) : obj(o) {}
    JsonObject obj;
  };

  static void copy(char* dst, size_t n, const char* src) {
    strncpy(dst, src ? src : "", n - 1);
    dst[n - 1] = 0;
  }
  static uint32_t now32() { return (uint32_t)millis(); }

  void onOffer(const OfferIn& in) {
    JsonObject o = in.obj;
    const char* role = o["role"] | "";
    const char* hw = o["hardware"] | "";
    const char* md5 = o["md5"] | "";
    const char* id = o["id"] | "";
    if (strcmp(role, role_) != 0 || strcmp(hw, hardware_) != 0) return;
    JsonArray nodes = o["nodes"].as<JsonArray>();
    if (!nodes.isNull() && nodes.size() > 0) {
      bool listed = false;
      for (JsonVariant n : nodes) listed = listed || n.as<uint32_t>() == mesh_.getNodeId();
      if (!listed) return;
    }
    uint32_t from = o["from"].as<uint32_t>();
    if (strcmp(md5, active_) == 0) {
      // Running it already: say so once per transfer.
      if (strcmp(confirmedID_, id) != 0) {
        copy(confirmedID_, sizeof confirmedID_, id);
        report(from, id, "confirmed", total_, total_, "");
      }
      return;
    }
    if (state_ == 1 && strcmp(id, id_) == 0) return;  // taking it already
    // Mode stock is painlessMesh's own receiver's (the stock Announce
    // follows the Offer).
    const char* mode = o["mode"] | "";
    if (strcmp(mode, "stock") == 0) return;
    const char* method = o["method"] | "";
    uint8_t codec = strcmp(method, "none") == 0         ? kCodecNone
                    : strcmp(method, "heatshrink") == 0 ? kCodecHeatshrink
                    : strcmp(method, "deflate") == 0    ? kCodecDeflate
                                                        : kCodecUnknown;
    bool pushed = strcmp(mode, "broadcast") == 0;
    uint32_t cs = o["cs"].as<uint32_t>(), n = o["n"].as<uint32_t>(), size = o["size"].as<uint32_t>();
    uint32_t tsize = o["tsize"].as<uint32_t>();
    if (cs == 0 || n == 0 || size == 0 || (uint64_t)cs * (n - 1) >= tsize || (uint64_t)cs * n < tsize ||
        (codec == kCodecNone && tsize != size) || strlen(md5) != 32 || strlen(id) >= sizeof id_ || strlen(id) == 0)
      return;  // malformed: not an Offer to answer
    // What it cannot take it refuses with the reason, for every Offer
    // of the transfer (a lost Report is sent again), as Go receivers
    // do: the distributor counts a refused node as through.
    const char* why = nullptr;
    if (!pushed && strcmp(mode, "pipelined") != 0) why = "mode not supported by this receiver (pipelined or broadcast)";
    else if (codec == kCodecUnknown) why = "compression method not supported (none, heatshrink or deflate)";
    else if (codec == kCodecDeflate && !inflater_)
      why = "deflate needs a 32 KiB window this node has no room for (no inflater; ESP8266: use heatshrink)";
    else if (strcmp(o["enc"] | "", "b91") != 0) why = "payload encoding not supported (b91 only)";
    else if (cs > kMaxChunk) why = "chunk size over 4096 bytes (this receiver's chunk buffer)";
    if (why) {
      refuse(from, id, n, why);
      return;
    }
    if (!writer_.begin(size)) {
      report(from, id, "failed", 0, n, "cannot begin the update");
      return;
    }
    if (codec == kCodecDeflate && !inflater_->begin()) {
      writer_.abort();
      report(from, id, "failed", 0, n, "cannot begin the inflater");
      return;
    }
    copy(id_, sizeof id_, id);
    copy(md5_, sizeof md5_, md5);
    distributor_ = from;
    chunkSize_ = cs;
    total_ = n;
    size_ = size;
    tsize_ = tsize;
    codec_ = codec;
    written_ = 0;
    if (codec == kCodecHeatshrink) unshrink_.reset();
    pushed_ = pushed;
    next_ = hi_ = lost_ = 0;
    windowEnd_ = 0;
    asking_ = false;
    setState(1, "");
    // In broadcast mode this Report starts the push; asks come only
    // after a gap, End or silence.
    report(from, id_, "downloading", 0, n, "");
    lastProgressMs_ = askedMs_ = now32();
    if (!pushed) askWindow();
  }

  void onChunk(const ChunkIn& in) {
    JsonObject o = in.obj;
    if (state_ != 1 || o["from"].as<uint32_t>() != distributor_ || strcmp(o["id"] | "", id_) != 0) return;
    uint32_t i = o["i"].as<uint32_t>();
    if (pushed_ && o["routing"].as<int>() == 2 && i < total_) {
      if (i + 1 > hi_) {
        // Links are FIFO: a pushed chunk past the highest seen means
        // the ones between were lost.
        if (i > hi_) lost_ += i - hi_;
        hi_ = i + 1;
      }
      // Chunks are written in order (the writer and the decompressor
      // need them so), so one past a gap is dropped and the gap and
      // what follows are asked for, a window at a time.
      if (i > next_ && !asking_) askWindow();
    }
    if (i != next_) return;  // out of order: asked again
    uint32_t want = next_ + 1 < total_ ? chunkSize_ : tsize_ - chunkSize_ * (total_ - 1);
    long got = decodeDense(o["d"] | "", chunk_, sizeof chunk_);
    if (got != (long)want) return;  // a wrong length is discarded (PROTOCOL 722)
    if (!consume(chunk_, (size_t)got)) return;
    ++next_;
    lastProgressMs_ = now32();
    if (next_ == total_) {
      finish();
    } else if ((!pushed_ || asking_) && next_ > windowEnd_) {
      askWindow();
    }
  }

  // onEnd: the push is over; whatever is missing is asked for.
  void onEnd(const ChunkIn& in) {
    JsonObject o = in.obj;
    if (state_ != 1 || !pushed_ || o["from"].as<uint32_t>() != distributor_ || strcmp(o["id"] | "", id_) != 0) return;
    if (!asking_) askWindow();
  }

  void finish() {
    setState(2, "");
    report(distributor_, id_, "verifying", total_, total_, "");
    bool streamEnded = codec_ == kCodecHeatshrink ? unshrink_.finish() : codec_ == kCodecDeflate ? inflater_->finished() : true;
    if (!streamEnded || written_ != size_) {
      fail("compressed stream corrupt or not the offered size");
      return;
    }
    if (!writer_.end(md5_)) {
      fail("md5 mismatch");
      return;
    }
    setState(3, "");
    report(distributor_, id_, "switching", total_, total_, "");
    // A reboot into the new image; on the next start the firmware
    // passes the new md5 as the active one and answers the next Offer
    // "confirmed".
    copy(active_, sizeof active_, md5_);
    setState(4, "");
    if (restart_) restart_();
    // Only where restart returns (the host model of a reboot): the new
    // image is up at once and says so.
    copy(confirmedID_, sizeof confirmedID_, id_);
    report(distributor_, id_, "confirmed", total_, total_, "");
  }

  // consume writes one chunk's bytes of the transfer: as they are, or
  // decompressed straight into the writer, never past the Offer's size.
  bool consume(const uint8_t* data, size_t n) {
    tooLong_ = false;
    bool ok;
    switch (codec_) {
      case kCodecHeatshrink: {
        auto sink = [this](const uint8_t* p, size_t k) { return out(this, p, k); };
        ok = unshrink_.feed(data, n, sink);
        break;
      }
      case kCodecDeflate:
        ok = inflater_->feed(data, n, &BasicMeshFleetOTA::out, this);
        break;
      default:
        ok = out(this, data, n);
    }
    if (!ok) fail(tooLong_ ? "image larger than offered" : writeFailed_ ? "write failed" : "compressed stream corrupt");
    return ok;
  }

  // out is the decoders' sink: the next bytes of the image.
  static bool out(void* self, const uint8_t* p, size_t k) {
    BasicMeshFleetOTA* r = static_cast<BasicMeshFleetOTA*>(self);
    if (r->written_ + k > r->size_) {
      r->tooLong_ = true;
      return false;
    }
    r->writeFailed_ = !r->writer_.write(p, k);
    if (r->writeFailed_) return false;
    r->written_ += (uint32_t)k;
    return true;
  }

  void fail(const char* why) {
    writer_.abort();
    setState(5, why);
    report(distributor_, id_, "failed", next_, total_, why);
  }

  // refuse tells the distributor this node will not take the transfer
  // (a final state for the campaign, as the Go receivers' refusal).
  void refuse(uint32_t dist, const char* id, uint32_t n, const char* why) {
    uint32_t saveHi = hi_, saveLost = lost_;
    hi_ = lost_ = 0;
    report(dist, id, "refused", 0, n, why);
    hi_ = saveHi, lost_ = saveLost;
    if (onState_) onState_("refused", why);
  }

  void setState(uint8_t s, const char* why) {
    state_ = s;
    static const char* names[] = {"idle", "downloading", "verifying", "switching", "confirmed", "failed"};
    if (onState_) onState_(names[s], why);
  }

  void askWindow() {
    asking_ = true;
    windowEnd_ = next_ + kOTAWindow - 1;
    if (windowEnd_ >= total_) windowEnd_ = total_ - 1;
    char parts[24];
    if (windowEnd_ == next_) snprintf(parts, sizeof parts, "%u", (unsigned)next_);
    else snprintf(parts, sizeof parts, "%u-%u", (unsigned)next_, (unsigned)windowEnd_);
    NeedPackage p;
    p.from = mesh_.getNodeId();
    p.dest = distributor_;
    p.id = id_;
    p.parts = parts;
    mesh_.sendPackage(&p);
    askedMs_ = lastProgressMs_ = now32();
  }

  void tick() {
    if (state_ != 1) return;
    uint32_t now = now32();
    // A lost ask or chunk: ask again from the first missing one. A
    // broadcast receiver that never asked waits out four push gaps (at
    // most 6 s) before it asks: the push or its End may still come.
    uint32_t quiet = pushed_ && !asking_ ? 6000 : 1000;
    if (now - lastProgressMs_ >= quiet && now - askedMs_ >= 1000) askWindow();
    if (now - reportMs_ >= 10000) report(distributor_, id_, "downloading", next_, total_, "");
  }

  void report(uint32_t dest, const char* id, const char* state, uint32_t have, uint32_t total, const char* err) {
    ReportPackage p;
    p.from = mesh_.getNodeId();
    p.dest = dest;
    p.id = id;
    p.state = state;
    p.have = have;
    p.total = total;
    p.hi = hi_;
    p.lost = lost_;
    p.active = active_;
    p.err = err;
    mesh_.sendPackage(&p);
    reportMs_ = now32();
  }

  Mesh& mesh_;
  Scheduler& scheduler_;
  ImageWriter& writer_;
  Task tick_;
  std::function<void()> restart_;
  uint8_t chunk_[kMaxChunk];
  char role_[24] = "", hardware_[16] = "", active_[33] = "", md5_[33] = "", id_[33] = "", confirmedID_[33] = "";
  // The decoder of method heatshrink: its 2048-byte window is the
  // decompressed image's only buffer.
  HeatshrinkDecoder<11, 4> unshrink_;
  uint32_t distributor_ = 0, chunkSize_ = 0, total_ = 0, size_ = 0, tsize_ = 0, next_ = 0, windowEnd_ = 0;
  uint32_t hi_ = 0, lost_ = 0;  // highest pushed index seen + 1, pushed chunks missed
  Inflater* inflater_ = nullptr;
  std::function<void(const char*, const char*)> onState_;
  uint32_t written_ = 0;  // image bytes written
  uint8_t codec_ = kCodecNone;
  bool tooLong_ = false, writeFailed_ = false;
  bool pushed_ = false;
  bool asking_ = false;  // broadcast: a gap was found, chunks are asked for
  uint32_t askedMs_ = 0, lastProgressMs_ = 0, reportMs_ = 0;
  uint8_t state_ = 0;
};

}  // namespace meshfleet

#if defined(PAINLESSMESH_BOOST)
using MeshFleetOTA = meshfleet::BasicMeshFleetOTA<painlessmesh::Mesh<painlessmesh::Connection>>;
#else
using MeshFleetOTA = meshfleet::BasicMeshFleetOTA<painlessMesh>;
#endif

#endif
