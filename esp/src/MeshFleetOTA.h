// MeshFleetOTA: meshfleet's OTA receiver for ESP firmware (ota/PROTOCOL.md,
// types 720-725; see meshfleet/ota.hpp for the packages).
//
//   meshfleet::PartitionWriter writer;              // the update partition
//   meshfleet::LittleFSFile progress("/mf_ota.bin"); // resume after a reboot
//   MeshFleetOTA ota(mesh, userScheduler, writer);
//   meshfleet::RomInflater inflater;                // ESP32 only: deflate
//   ota.setInflater(&inflater);                     // ESP32 only
//   ota.setProgressFile(&progress);                 // after LittleFS.begin()
//   ota.begin("sensor", "ESP8266", RUNNING_MD5, [] { ESP.restart(); });
//
// What it takes: pipelined and broadcast Offers, method none, heatshrink
// or deflate (with an inflater), encoding b91, chunks up to 4096 bytes,
// images up to the partition's size and kMaxChunks chunks. Everything
// else it refuses (a Report "refused" with the reason, as the Go
// receivers do); stock-mode Offers are left to painlessMesh's stock
// receiver.
//
// Memory is fixed at compile time: sizeof(MeshFleetOTA) (the chunk buffer,
// which also encodes repairs in place, the 2048-byte heatshrink window,
// the chunk bitmap and some counters and strings: 8,480 bytes on the
// 64-bit host), plus the inflater where there is one (inflate.hpp).
// Nothing is allocated per chunk.
#ifndef MESHFLEET_OTA_H_
#define MESHFLEET_OTA_H_

#include <functional>

#include "meshfleet/flash.hpp"
#include "meshfleet/inflate.hpp"
#include "meshfleet/ota.hpp"
#include "meshfleet/partition.hpp"

namespace meshfleet {

// The receiver's state, as the status packages' otaState numbers it.
enum class OTAState : uint8_t { Idle = 0, Receiving = 1, Verifying = 2, Switching = 3, Confirmed = 4, Failed = 5 };

enum : uint32_t {
  // kMaxChunks bounds a transfer's chunks: the bitmap is kMaxChunks/8
  // bytes (256), enough for 8 MiB in 4 KiB chunks or 2 MiB in 1 KiB.
  kMaxChunks = 2048,
  // kCheckpointEvery chunks newly written, the bitmap (and the decoder's
  // state) go to the progress file. A LittleFS write costs a 4 KiB block
  // erase and program (tens of ms on an ESP8266, in the mesh's loop) and
  // wears the flash; every 8 chunks (32 KiB) a 1 MiB image costs 32
  // writes and a crash repeats at most 8 chunks.
  kCheckpointEvery = 8,
  // kSourceAsks asks without a chunk coming back, a broadcast receiver
  // stops asking a node on its path and asks the next one up (the
  // protocol's eight is for Go parents, which always answer; a
  // painlessMesh relay without this library drops the ask unanswered).
  kSourceAsks = 3,
  // kMaxPath nodes on the path to the distributor are asked, nearest
  // first, before the distributor.
  kMaxPath = 6,
  // kMaxWaiting children's asks for chunks not yet here are held until
  // the chunk comes (more are refused: the child asks further up).
  kMaxWaiting = 8,
  // kQuietMinMs and kQuietMaxMs bound how long a broadcast receiver that
  // never asked waits for the next pushed chunk before it takes the push
  // for over (its tail or End lost) and asks: eight push gaps between
  // them, as Go receivers wait, kQuietMaxMs before a gap was measured.
  kQuietMinMs = 1000,
  kQuietMaxMs = 6000,
  // kRebootGraceMs after the push is over for this node (End, or quiet)
  // a verified node reboots: what it relays to its children (the push's
  // tail, End) and its Report leave its send queue first. A relay that
  // rebooted on the last chunk cut its subtree off from both, and each
  // child waited out the quiet time before it asked.
  kRebootGraceMs = 500,
};

template <class Mesh>
class BasicMeshFleetOTA {
 public:
  BasicMeshFleetOTA(Mesh& mesh, Scheduler& scheduler, ImageWriter& writer)
      : mesh_(mesh), scheduler_(scheduler), writer_(writer) {}

  // setInflater gives the receiver an inflater for method deflate
  // (inflate.hpp); without one it refuses deflate Offers.
  void setInflater(Inflater* inflater) { inflater_ = inflater; }
  // setProgressFile keeps the chunk bitmap in file so that a transfer
  // cut off by a reboot resumes; without one a reboot starts over.
  void setProgressFile(FlashFile* file) { flash_ = file; }
  // onState is called on every state change (idle, downloading,
  // verifying, switching, confirmed, failed; "refused" for an Offer
  // refused; "resumed" when a transfer resumes from the progress file)
  // with the reason of a failure or refusal.
  void onState(std::function<void(const char* state, const char* why)> f) { onState_ = f; }

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
      onOffer(v.to<In>().obj);
      return false;
    });
    mesh_.onPackage(kTypeChunk, [this](Variant& v) {
      onChunk(v.to<In>().obj);
      return false;
    });
    mesh_.onPackage(kTypeEnd, [this](Variant& v) {
      onEnd(v.to<In>().obj);
      return false;
    });
    mesh_.onPackage(kTypeNeed, [this](Variant& v) {
      onNeed(v.to<In>().obj);
      return false;
    });
    mesh_.onPackage(kTypeRefuse, [this](Variant& v) {
      onRefuse(v.to<In>().obj);
      return false;
    });
    loadSaved();
    tick_.set(200, TASK_FOREVER, [this]() { tick(); });
    scheduler_.addTask(tick_);
    tick_.enable();
    reboot_.set(20, TASK_FOREVER, [this]() { rebootWhenRelayed(); });
    scheduler_.addTask(reboot_);
  }

  // rebooting says that the restart callback reboots the node for real
  // even where it returns (MeshFleetBoot's host model): the new image
  // reports for itself once it runs, so nothing is said before.
  void rebooting() { rebooting_ = true; }

  // otaState is the receiver's state; error() the reason of the last
  // failure (Failed) or "".
  OTAState otaState() const { return (OTAState)state_; }
  const char* error() const { return error_; }
  // state is otaState as the telemetry's number: 0 idle, 1 downloading,
  // 2 verifying, 3 switching, 4 confirmed, 5 failed.
  uint8_t state() const { return state_; }
  // progress is the percentage of the transfer's chunks held.
  uint8_t progress() const { return total_ ? (uint8_t)(100ull * held_.count() / total_) : 0; }
  // heldChunks and heldBytes are what is written of the transfer so far
  // (bytes of the transfer, compressed where it is).
  uint32_t heldChunks() const { return held_.count(); }
  uint32_t totalChunks() const { return total_; }
  uint32_t heldBytes() const {
    uint32_t n = held_.count();
    if (n && held_.has(total_ - 1)) return (n - 1) * chunkSize_ + (tsize_ - chunkSize_ * (total_ - 1));
    return n * chunkSize_;
  }
  const char* activeMD5() const { return active_; }
  // The current (or last) transfer and its distributor: what a trial boot
  // (MeshFleetBoot.h) reports its outcome to.
  const char* transferID() const { return id_; }
  uint32_t distributor() const { return distributor_; }
  // lost is the number of pushed chunks of the current broadcast
  // transfer found missing (the Reports' "lost").
  uint32_t lost() const { return lost_; }
  // Counters of the current transfer, since this start: chunks taken,
  // chunks that came although held, chunks resumed from the progress
  // file, chunks served to children, chunks asked for (and of those, of
  // the parent), chunks taken from the parent.
  uint32_t taken() const { return taken_; }
  uint32_t duplicates() const { return dup_; }
  uint32_t resumed() const { return resumed_; }
  uint32_t served() const { return served_; }
  uint32_t asked() const { return asked_; }
  uint32_t askedParent() const { return askedParent_; }
  uint32_t fromParent() const { return fromParent_; }
  // Chunks asked of, and taken from, nodes further up the path.
  uint32_t askedPath() const { return askedPath_; }
  uint32_t fromPath() const { return fromPath_; }

 private:
  struct In {
    explicit In(JsonObject o) : obj(o) {}
    JsonObject obj;
  };

  // The progress file: this head, the bitmap's bytes, the decoder state.
  struct Saved {
    uint32_t magic;
    char id[33], md5[33], tmd5[33];
    uint8_t codec;
    uint32_t dist, cs, n, size, tsize;
    uint32_t in, out, stateLen;  // compressed: where the decoder resumes
  };
  enum : uint32_t { kMagic = 0x314f464du };  // "MFO1"
  // The chunk buffer: a received chunk decoded, or a held chunk read
  // back at the end and encoded in place from the front for a child.
  enum : size_t { kChunkBuf = kMaxChunk + kMaxChunk * 3 / 13 + 4 + 1 };

  static void copy(char* dst, size_t n, const char* src) {
    strncpy(dst, src ? src : "", n - 1);
    dst[n - 1] = 0;
  }
  static uint32_t now32() { return (uint32_t)millis(); }

  void onOffer(JsonObject o) {
    const char* role = o["role"] | "";
    const char* hw = o["hardware"] | "";
    const char* md5 = o["md5"] | "";
    const char* id = o["id"] | "";
    copy(seenID_, sizeof seenID_, id);
    if (strcmp(role, role_) != 0 || strcmp(hw, hardware_) != 0) return;
    JsonArray nodes = o["nodes"].as<JsonArray>();
    if (!nodes.isNull() && nodes.size() > 0) {
      bool listed = false;
      for (JsonVariant n : nodes) listed = listed || n.as<uint32_t>() == mesh_.getNodeId();
      if (!listed) return;
    }
    // Verified and about to reboot: the next boot answers (a trial
    // image says "confirmed" only once it runs).
    if (rebootPending_) return;
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
    const char* tmd5 = o["tmd5"] | "";
    uint8_t codec = strcmp(method, "none") == 0         ? kCodecNone
                    : strcmp(method, "heatshrink") == 0 ? kCodecHeatshrink
                    : strcmp(method, "deflate") == 0    ? kCodecDeflate
                                                        : kCodecUnknown;
    bool pushed = strcmp(mode, "broadcast") == 0;
    uint32_t cs = o["cs"].as<uint32_t>(), n = o["n"].as<uint32_t>(), size = o["size"].as<uint32_t>();
    uint32_t tsize = o["tsize"].as<uint32_t>();
    if (cs == 0 || n == 0 || size == 0 || (uint64_t)cs * (n - 1) >= tsize || (uint64_t)cs * n < tsize ||
        (codec == kCodecNone && tsize != size) || strlen(md5) != 32 || strlen(id) >= sizeof id_ || strlen(id) == 0 ||
        strlen(tmd5) >= sizeof tmd5_)
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
    else if (size > writer_.capacity()) why = "image larger than the update partition";
    else if (n > kMaxChunks) why = "more chunks than this receiver's bitmap holds (2048)";
    if (why) {
      refuse(from, id, n, why);
      return;
    }
    copy(id_, sizeof id_, id);
    copy(md5_, sizeof md5_, md5);
    copy(tmd5_, sizeof tmd5_, tmd5);
    error_[0] = 0;
    distributor_ = from;
    chunkSize_ = cs;
    total_ = n;
    size_ = size;
    tsize_ = tsize;
    codec_ = codec;
    pushed_ = pushed;
    held_.clear(n);
    next_ = skip_ = written_ = hi_ = lost_ = 0;
    windowEnd_ = 0;
    asking_ = pushOver_ = pushGapKnown_ = false;
    lastPushMs_ = pushGapMs_ = 0;
    taken_ = dup_ = resumed_ = served_ = asked_ = askedParent_ = fromParent_ = askedPath_ = fromPath_ = 0;
    pathLen_ = src_ = srcMisses_ = 0;
    pathKnown_ = false;
    waiting_ = 0;
    bool resumed = saved_ && matchesSaved() && resume();
    if (!resumed) {
      if (flash_) flash_->remove();
      saved_ = false;
      bool ok = writer_.begin(size, false) && (codec != kCodecDeflate || inflater_->begin());
      if (codec == kCodecHeatshrink) unshrink_.reset();
      if (!ok) {
        writer_.abort();
        copy(error_, sizeof error_, "cannot begin the update");
        report(from, id, "failed", 0, n, error_);
        return;
      }
    }
    checkpointAt_ = savable();
    setState(1, resumed ? "resumed" : "");
    // In broadcast mode this Report starts the push; asks come only
    // after a gap, End or silence.
    report(from, id_, "downloading", held_.count(), n, "");
    lastProgressMs_ = askedMs_ = now32();
    if (held_.full()) finish();
    else if (!pushed || resumed) askWindow();
  }

  // resume takes up the transfer in the progress file: the bitmap, and
  // for a compressed one the decoder at its saved point, whose window is
  // read back from the partition.
  bool resume() {
    Saved s;
    if (!flash_->beginRead() || !flash_->read(&s, sizeof s) || s.magic != kMagic || s.n != total_) {
      flash_->endRead();
      return false;
    }
    bool ok = flash_->read(held_.load(), held_.usedBytes()) && writer_.begin(size_, true);
    if (ok && codec_ != kCodecNone) {
      if (s.in > tsize_ || s.out > size_ || (s.in % chunkSize_ != 0 && codec_ == kCodecHeatshrink)) ok = false;
      void* state = nullptr;
      if (ok && codec_ == kCodecHeatshrink) {
        HeatshrinkDecoder<11, 4>::State hs;
        ok = s.stateLen == sizeof hs && flash_->read(&hs, sizeof hs) && hs.head == s.out &&
             unshrink_.restore(hs, [this](uint32_t at, uint8_t* p, size_t k) { return writer_.read(at, p, k); });
      } else if (ok) {
        state = inflater_->stateBuffer(s.stateLen);
        ok = state && flash_->read(state, s.stateLen) && inflater_->restore(s.in, s.out, &readBack, this);
      }
      // The decoder goes on at byte in: every chunk before it is held,
      // the one it falls in is fetched again and read from there.
      held_.clear(total_);
      for (uint32_t i = 0; i < s.in / chunkSize_; ++i) held_.set(i);
      next_ = s.in / chunkSize_;
      skip_ = s.in % chunkSize_;
      written_ = s.out;
      if (ok && written_) writer_.holds(0, written_);
    } else if (ok) {
      held_.recount();
      for (uint32_t i = 0; i < total_; ++i)
        if (held_.has(i)) writer_.holds(i * chunkSize_, chunkLen(i));
      next_ = held_.nextMissing(0);
    }
    flash_->endRead();
    if (!ok) {
      held_.clear(total_);
      next_ = skip_ = written_ = 0;
      return false;
    }
    resumed_ = held_.count();
    return true;
  }

  static bool readBack(void* self, uint32_t at, uint8_t* p, size_t k) {
    return static_cast<BasicMeshFleetOTA*>(self)->writer_.read(at, p, k);
  }

  // loadSaved reads the progress file's head at boot: a transfer to ask
  // the distributor's Offer for again.
  void loadSaved() {
    saved_ = false;
    if (!flash_ || !flash_->beginRead()) return;
    Saved s;
    saved_ = flash_->read(&s, sizeof s) && s.magic == kMagic;
    flash_->endRead();
    if (!saved_) return;
    s.id[32] = s.md5[32] = s.tmd5[32] = 0;
    copy(savedID_, sizeof savedID_, s.id);
    copy(savedMD5_, sizeof savedMD5_, s.md5);
    copy(savedTMD5_, sizeof savedTMD5_, s.tmd5);
    savedDist_ = s.dist;
    savedCodec_ = s.codec;
    offerAsks_ = 0;
  }

  bool matchesSaved() const {
    return strcmp(savedID_, id_) == 0 && strcmp(savedMD5_, md5_) == 0 && strcmp(savedTMD5_, tmd5_) == 0 &&
           savedCodec_ == codec_;
  }

  // savable is how many chunks a checkpoint written now would hold: the
  // chunks written (uncompressed), or those before the decoder's latest
  // resume point.
  uint32_t savable() const {
    switch (codec_) {
      case kCodecNone: return held_.count();
      case kCodecHeatshrink: return next_;
      default: return inflater_->resumePoint().in / chunkSize_;
    }
  }

  // checkpoint writes the progress file: what is written is first made
  // durable, then the file names it. A compressed transfer saves the
  // decoder at its resume point and only the chunks before it.
  void checkpoint() {
    if (!flash_) return;
    Saved s;
    memset(&s, 0, sizeof s);
    s.magic = kMagic;
    copy(s.id, sizeof s.id, id_);
    copy(s.md5, sizeof s.md5, md5_);
    copy(s.tmd5, sizeof s.tmd5, tmd5_);
    s.codec = codec_;
    s.dist = distributor_;
    s.cs = chunkSize_;
    s.n = total_;
    s.size = size_;
    s.tsize = tsize_;
    const void* state = nullptr;
    HeatshrinkDecoder<11, 4>::State hs;
    if (codec_ == kCodecHeatshrink) {
      hs = unshrink_.save();
      s.in = next_ * chunkSize_;
      s.out = written_;
      s.stateLen = sizeof hs;
      state = &hs;
    } else if (codec_ == kCodecDeflate) {
      InflatePoint p = inflater_->resumePoint();
      if (p.in == 0) return;
      s.in = p.in;
      s.out = p.out;
      s.stateLen = p.n;
      state = p.state;
    }
    uint32_t upTo = codec_ == kCodecNone ? total_ : s.in / chunkSize_;
    bool ok = writer_.sync() && flash_->beginWrite() && flash_->write(&s, sizeof s);
    for (uint32_t b = 0; ok && b < held_.usedBytes(); ++b) {
      uint8_t bits = held_.bytes()[b];
      for (uint32_t k = 0; k < 8; ++k)
        if (b * 8 + k >= upTo) bits &= (uint8_t)~(1u << k);
      ok = flash_->write(&bits, 1);
    }
    if (ok && s.stateLen) ok = flash_->write(state, s.stateLen);
    if (ok) ok = flash_->commit();
    if (ok) checkpointAt_ = codec_ == kCodecNone ? held_.count() : upTo;
  }

  uint32_t chunkLen(uint32_t i) const { return i + 1 < total_ ? chunkSize_ : tsize_ - chunkSize_ * (total_ - 1); }

  void onChunk(JsonObject o) {
    uint32_t from = o["from"].as<uint32_t>();
    int routing = o["routing"].as<int>();
    if (state_ != 1 || strcmp(o["id"] | "", id_) != 0) {
      if (rebootPending_ && routing == 2 && strcmp(o["id"] | "", id_) == 0) lastPushMs_ = now32();
      else if (routing == 2) missedOffer(from, o["id"] | "");
      return;
    }
    // From the distributor (any routing), or a node on the path that
    // was asked: the parent hop by hop (routing 0), further ones routed.
    int source = from == distributor_ ? -1 : asked(from, routing);
    if (from != distributor_ && source < 0) return;
    uint32_t i = o["i"].as<uint32_t>();
    if (i >= total_) return;
    bool push = pushed_ && routing == 2;
    if (push) {
      pushSeen();
      if (i + 1 > hi_) {
        // Links are FIFO: a pushed chunk past the highest seen means
        // the ones between were lost.
        if (i > hi_) lost_ += i - hi_;
        hi_ = i + 1;
      }
    }
    if (held_.has(i)) {
      ++dup_;
      return;
    }
    bool inOrder = codec_ == kCodecNone || i == next_;
    if (!inOrder) {
      // A decoder needs the chunks in order: one past a gap is dropped
      // and the gap and what follows asked for.
      if (push && !asking_) askWindow();
      return;
    }
    long got = decodeDense(o["d"] | "", chunk_, kMaxChunk);
    if (got != (long)chunkLen(i)) return;  // a wrong length is discarded (PROTOCOL 722)
    if (codec_ == kCodecNone) {
      if (!writer_.write(i * chunkSize_, chunk_, (size_t)got)) {
        fail("write failed");
        return;
      }
    } else {
      uint32_t skip = skip_;
      skip_ = 0;
      if (!consume(chunk_ + skip, (size_t)got - skip)) return;
    }
    held_.set(i);
    ++taken_;
    if (source >= 0) {
      if (source == src_) srcMisses_ = 0;
      ++(source == 0 ? fromParent_ : fromPath_);
    }
    if (waiting_) serveWaiting(i);
    next_ = held_.nextMissing(codec_ == kCodecNone ? next_ : i);
    lastProgressMs_ = now32();
    if (push && next_ < i && !asking_) askWindow();  // a gap behind the push
    if (held_.full()) {
      finish();
      return;
    }
    if (savable() >= checkpointAt_ + kCheckpointEvery) checkpoint();
    if ((!pushed_ || asking_) && next_ > windowEnd_) askWindow();
  }

  // missedOffer asks the distributor for the Offer of a transfer whose
  // pushed chunks come but whose Offer did not (lost, or sent before
  // this node joined), as Go receivers do: only for a transfer whose
  // Offer was not the last one seen, at most every 2 s.
  void missedOffer(uint32_t from, const char* id) {
    uint32_t now = now32();
    if (from == 0 || !*id || strlen(id) >= sizeof seenID_ || strcmp(id, seenID_) == 0 || strcmp(id, id_) == 0 ||
        strcmp(id, confirmedID_) == 0 || now - offerAskMs_ < 2000)
      return;
    offerAskMs_ = now;
    NeedPackage p;
    p.from = mesh_.getNodeId();
    p.dest = from;
    p.id = id;
    p.parts = "";
    mesh_.sendPackage(&p);
  }

  // pushSeen times a pushed chunk: the smoothed gap between them.
  void pushSeen() {
    uint32_t now = now32();
    if (lastPushMs_) {
      uint32_t gap = now - lastPushMs_;
      pushGapMs_ = pushGapKnown_ ? (7 * pushGapMs_ + gap) / 8 : gap;
      pushGapKnown_ = true;
    }
    lastPushMs_ = now;
  }

  // quietMs is how long the push may pause before it counts as over.
  uint32_t quietMs() const {
    if (!pushGapKnown_) return kQuietMaxMs;
    uint32_t q = 8 * pushGapMs_;
    return q < kQuietMinMs ? kQuietMinMs : q > kQuietMaxMs ? kQuietMaxMs : q;
  }

  // onEnd: the push is over; whatever is missing is asked for (and a
  // verified relay may reboot once End passed on).
  void onEnd(JsonObject o) {
    if ((state_ != 1 && !rebootPending_) || !pushed_ || o["from"].as<uint32_t>() != distributor_ ||
        strcmp(o["id"] | "", id_) != 0)
      return;
    if (!pushOver_) pushOverMs_ = now32();
    pushOver_ = true;
    if (state_ == 1 && !asking_) askWindow();
  }

  // onNeed serves a child's repair ask from the chunks held, read back
  // from the partition: a neighbour's (routing 0) while the transfer
  // comes in, holding asks for chunks not here yet until they come; a
  // node further away (routing 1) only from a verified image, as the
  // protocol says. A compressed transfer's chunks are not kept (only
  // their decoded output is, and the encoder's output cannot be made
  // again here within the RAM budget), so those asks get a Refuse, as
  // do chunks neither held nor waited for: the child asks further up.
  void onNeed(JsonObject o) {
    uint32_t from = o["from"].as<uint32_t>();
    int routing = o["routing"].as<int>();
    if (o["dest"].as<uint32_t>() != mesh_.getNodeId() || from == 0 || (routing != 0 && routing != 1)) return;
    const char* id = o["id"] | "";
    const char* parts = o["parts"] | "";
    bool verified = state_ == 4;
    bool mine = strcmp(id, id_) == 0 && codec_ == kCodecNone && *parts &&
                (verified || (routing == 0 && state_ >= 1 && state_ <= 3));
    uint32_t served = 0, refused = 0, held = waiting_;
    // "a-b,c,...", ascending; at most 16 chunks an ask.
    const char* p = parts;
    while (mine && *p && served + refused < 16) {
      char* end;
      unsigned long a = strtoul(p, &end, 10), b = a;
      if (end == p) break;
      if (*end == '-') {
        p = end + 1;
        b = strtoul(p, &end, 10);
        if (end == p) break;
      }
      for (unsigned long i = a; i <= b && i < total_ && served + refused < 16; ++i) {
        if (held_.has((uint32_t)i) && serve(from, (uint32_t)i, routing)) ++served;
        else if (state_ != 1 || routing != 0 || !wait(from, (uint32_t)i)) ++refused;
      }
      if (*end != ',') break;
      p = end + 1;
    }
    // A chunk the push passed and this node lacks too is its own gap.
    if (waiting_ > held && !asking_) askWindow();
    if (!mine || refused > 0) {
      RefusePackage r;
      r.from = mesh_.getNodeId();
      r.dest = from;
      r.routing = routing;
      r.id = id;
      mesh_.sendPackage(&r);
    }
  }

  // wait holds a neighbour's ask for chunk i until it comes; false when
  // the table is full. The chunk is fetched as this node's own gap is.
  bool wait(uint32_t child, uint32_t i) {
    for (uint8_t k = 0; k < waiting_; ++k)
      if (waits_[k].child == child && waits_[k].chunk == i) return true;
    if (waiting_ >= kMaxWaiting) return false;
    waits_[waiting_++] = Waiting{child, i};
    return true;
  }

  // serveWaiting sends chunk i, just written, to the children waiting.
  void serveWaiting(uint32_t i) {
    uint8_t kept = 0;
    for (uint8_t k = 0; k < waiting_; ++k) {
      if (waits_[k].chunk == i) serve(waits_[k].child, i, 0);
      else waits_[kept++] = waits_[k];
    }
    waiting_ = kept;
  }

  // serve sends held chunk i to a child: read back into the end of the
  // chunk buffer and encoded from its front, in place.
  bool serve(uint32_t child, uint32_t i, int routing) {
    uint32_t n = chunkLen(i);
    uint8_t* raw = chunk_ + kChunkBuf - 1 - n;
    if (!writer_.read(i * chunkSize_, raw, n)) return false;
    encodeDense(raw, n, (char*)chunk_);
    ChunkPackage c;
    c.from = mesh_.getNodeId();
    c.dest = child;
    c.id = id_;
    c.index = i;
    c.routing = routing;
    c.data = (const char*)chunk_;
    mesh_.sendPackage(&c);
    ++served_;
    return true;
  }

  // onRefuse: the node asked does not hold what was asked; the next one
  // up the path is asked, at once. From the distributor with "over", the
  // transfer is over there (superseded, aborted or through): it is
  // dropped, its progress kept for a later Offer of it.
  void onRefuse(JsonObject o) {
    if (state_ != 1 || strcmp(o["id"] | "", id_) != 0) return;
    uint32_t from = o["from"].as<uint32_t>();
    if (o["over"] | false) {
      if (from == distributor_) setState(0, "transfer over at its distributor");
      return;
    }
    if (src_ >= pathLen_ || from != path_[src_]) return;
    ++src_;
    srcMisses_ = 0;
    askWindow();
  }

  void finish() {
    if (flash_) flash_->remove();
    saved_ = false;
    setState(2, "");
    report(distributor_, id_, "verifying", total_, total_, "");
    bool streamEnded = codec_ == kCodecHeatshrink ? unshrink_.finish() : codec_ == kCodecDeflate ? inflater_->finished() : true;
    if (codec_ != kCodecNone && (!streamEnded || written_ != size_)) {
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
    rebootPending_ = true;
    verifiedMs_ = now32();
    reboot_.enable();
  }

  // rebootWhenRelayed reboots once the push is over for this node (End
  // seen, or no pushed chunk for the quiet time) and kRebootGraceMs
  // passed: painlessMesh queues a broadcast for the children before this
  // receiver sees it, so the chunk that completed the image, and what
  // follows, would otherwise die in this node's send queue.
  void rebootWhenRelayed() {
    uint32_t now = now32();
    if (now - verifiedMs_ < kRebootGraceMs) return;
    if (pushed_ && pushOver_ && now - pushOverMs_ < kRebootGraceMs) return;
    if (pushed_ && !pushOver_ && now - lastPushMs_ < quietMs()) return;
    reboot_.disable();
    rebootPending_ = false;
    if (restart_) restart_();
    if (rebooting_) return;
    // Only where restart returns (the host model of a reboot): the new
    // image is up at once and says so.
    copy(confirmedID_, sizeof confirmedID_, id_);
    report(distributor_, id_, "confirmed", total_, total_, "");
  }

  // consume writes one chunk's bytes of a compressed transfer,
  // decompressed straight into the writer, never past the Offer's size.
  bool consume(const uint8_t* data, size_t n) {
    tooLong_ = writeFailed_ = false;
    bool ok;
    if (codec_ == kCodecHeatshrink) {
      auto sink = [this](const uint8_t* p, size_t k) { return out(this, p, k); };
      ok = unshrink_.feed(data, n, sink);
    } else {
      ok = inflater_->feed(data, n, &BasicMeshFleetOTA::out, this);
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
    r->writeFailed_ = !r->writer_.write(r->written_, p, k);
    if (r->writeFailed_) return false;
    r->written_ += (uint32_t)k;
    return true;
  }

  void fail(const char* why) {
    writer_.abort();
    if (flash_) flash_->remove();
    saved_ = false;
    copy(error_, sizeof error_, why);
    setState(5, why);
    report(distributor_, id_, "failed", held_.count(), total_, why);
  }

  // refuse tells the distributor this node will not take the transfer
  // (a final state for the campaign, as the Go receivers' refusal).
  void refuse(uint32_t dist, const char* id, uint32_t n, const char* why) {
    ReportPackage p;
    p.from = mesh_.getNodeId();
    p.dest = dist;
    p.id = id;
    p.state = "refused";
    p.total = n;
    p.active = active_;
    p.err = why;
    mesh_.sendPackage(&p);
    if (onState_) onState_("refused", why);
  }

  void setState(uint8_t s, const char* why) {
    state_ = s;
    static const char* names[] = {"idle", "downloading", "verifying", "switching", "confirmed", "failed"};
    if (onState_) onState_(names[s], why);
    if (s == 1 && why && *why && onState_) onState_(why, "");
  }

  // findPath lists the nodes on the way to the distributor, the parent
  // first (none when the distributor is a neighbour). painlessMesh keeps
  // the layout per connection; it is walked without a copy.
  void findPath() {
    pathKnown_ = true;
    pathLen_ = src_ = srcMisses_ = 0;
    for (auto&& s : mesh_.subs) {
      if (s->nodeId == distributor_ || !reaches(*s, distributor_)) continue;
      path_[pathLen_++] = s->nodeId;
      const painlessmesh::protocol::NodeTree* t = s.get();
      while (pathLen_ < kMaxPath) {
        const painlessmesh::protocol::NodeTree* next = nullptr;
        for (auto&& c : t->subs)
          if (reaches(c, distributor_)) next = &c;
        if (!next || next->nodeId == distributor_) break;
        path_[pathLen_++] = next->nodeId;
        t = next;
      }
      return;
    }
  }
  static bool reaches(const painlessmesh::protocol::NodeTree& t, uint32_t id) {
    if (t.nodeId == id) return true;
    for (auto&& s : t.subs)
      if (reaches(s, id)) return true;
    return false;
  }

  // asked is the place on the path of a node asked for chunks whose
  // chunk this is (the parent answers hop by hop, routing 0, the others
  // routed), or -1.
  int asked(uint32_t from, int routing) const {
    for (uint8_t k = 0; k < pathLen_ && k <= src_; ++k)
      if (path_[k] == from && routing == (k == 0 ? 0 : 1)) return k;
    return -1;
  }

  // askWindow asks for the first missing chunks, a window of four: a
  // broadcast receiver asks its parent (routing 0) first, as Go
  // receivers do, then the nodes further up the path (routing 1), each
  // until it refused or left kSourceAsks asks unanswered, and the
  // distributor last; a pipelined receiver asks the distributor.
  void askWindow() {
    asking_ = true;
    char parts[64];
    size_t len = 0;
    // While the push goes on, only what it passed is asked for: the rest
    // is still coming.
    uint32_t limit = pushed_ && !pushOver_ ? hi_ : total_;
    uint32_t count = 0, i = held_.nextMissing(next_);
    windowEnd_ = i;
    while (i < limit && count < kOTAWindow) {
      uint32_t j = i;
      while (j + 1 < limit && count + (j - i) + 1 < kOTAWindow && !held_.has(j + 1)) ++j;
      len += (size_t)snprintf(parts + len, sizeof parts - len, i == j ? "%s%u" : "%s%u-%u", len ? "," : "", (unsigned)i,
                              (unsigned)j);
      count += j - i + 1;
      windowEnd_ = j;
      if (codec_ != kCodecNone) break;  // in order: one run
      i = held_.nextMissing(j + 1);
    }
    if (count == 0) {
      asking_ = false;  // nothing the push passed is missing
      return;
    }
    if (pushed_ && !pathKnown_) findPath();
    if (src_ < pathLen_ && srcMisses_ >= kSourceAsks) {
      ++src_;
      srcMisses_ = 0;
    }
    bool up = pushed_ && src_ < pathLen_;
    NeedPackage p;
    p.from = mesh_.getNodeId();
    p.dest = up ? path_[src_] : distributor_;
    p.routing = up && src_ > 0 ? 1 : up ? 0 : 1;
    p.id = id_;
    p.parts = parts;
    mesh_.sendPackage(&p);
    asked_ += count;
    if (up) {
      (src_ == 0 ? askedParent_ : askedPath_) += count;
      ++srcMisses_;  // cleared by a chunk from it
    }
    askedMs_ = lastProgressMs_ = now32();
  }

  void tick() {
    uint32_t now = now32();
    if (state_ != 1) {
      // A transfer a reboot cut off: its distributor is asked for the
      // Offer again (an empty Need), every 2 s for a minute.
      if (saved_ && savedDist_ && offerAsks_ < 30 && now - offerAskMs_ >= 2000) {
        offerAskMs_ = now;
        ++offerAsks_;
        NeedPackage p;
        p.from = mesh_.getNodeId();
        p.dest = savedDist_;
        p.id = savedID_;
        p.parts = "";
        mesh_.sendPackage(&p);
      }
      return;
    }
    // A lost ask or chunk: ask again from the first missing one. A
    // broadcast receiver that never asked waits out eight push gaps (1 to
    // 6 s) before it asks: the push or its End may still come.
    uint32_t quiet = pushed_ && !asking_ ? quietMs() : 1000;
    if (now - lastProgressMs_ >= quiet && now - askedMs_ >= 1000) {
      if (pushed_ && !asking_ && !pushOver_) pushOver_ = true, pushOverMs_ = now;  // its End or tail lost
      askWindow();
    }
    if (now - reportMs_ >= 10000) report(distributor_, id_, "downloading", held_.count(), total_, "");
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
  Task reboot_;  // a verified image's reboot, once relayed (rebootWhenRelayed)
  std::function<void()> restart_;
  std::function<void(const char*, const char*)> onState_;
  Inflater* inflater_ = nullptr;
  FlashFile* flash_ = nullptr;
  uint8_t chunk_[kChunkBuf];
  char role_[24] = "", hardware_[16] = "", active_[33] = "", md5_[33] = "", tmd5_[33] = "", id_[33] = "",
       confirmedID_[33] = "", error_[48] = "";
  // The decoder of method heatshrink: its 2048-byte window is the
  // decompressed image's only buffer.
  HeatshrinkDecoder<11, 4> unshrink_;
  ChunkBitmap<kMaxChunks> held_;  // chunks written to the partition
  uint32_t distributor_ = 0, chunkSize_ = 0, total_ = 0, size_ = 0, tsize_ = 0;
  // next_: the first chunk missing (compressed: the next to decode, of
  // which skip_ bytes were decoded before a resume).
  uint32_t next_ = 0, skip_ = 0, windowEnd_ = 0;
  uint32_t written_ = 0;        // compressed: image bytes written
  uint32_t hi_ = 0, lost_ = 0;  // highest pushed index seen + 1, pushed chunks missed
  uint32_t checkpointAt_ = 0;   // savable() at the last checkpoint
  uint32_t taken_ = 0, dup_ = 0, resumed_ = 0, served_ = 0, asked_ = 0, askedParent_ = 0, fromParent_ = 0;
  uint32_t askedPath_ = 0, fromPath_ = 0;
  // Broadcast repairs: the path to the distributor, parent first, and
  // the place on it asked now (pathLen_: the distributor).
  uint32_t path_[kMaxPath];
  uint8_t pathLen_ = 0, src_ = 0, srcMisses_ = 0;
  bool pathKnown_ = false;
  // Children's asks for chunks not yet here.
  struct Waiting {
    uint32_t child, chunk;
  };
  Waiting waits_[kMaxWaiting];
  uint8_t waiting_ = 0;
  uint8_t codec_ = kCodecNone;
  bool tooLong_ = false, writeFailed_ = false;
  bool pushed_ = false;
  bool asking_ = false;    // broadcast: a gap was found, chunks are asked for
  bool pushOver_ = false;  // broadcast: End seen, or the push went quiet
  bool rebootPending_ = false;  // verified; the reboot waits (rebootWhenRelayed)
  bool rebooting_ = false;      // restart_ reboots for real (rebooting)
  bool pushGapKnown_ = false;
  // Broadcast: when the last pushed chunk came, the smoothed gap between
  // them, when the push was over; when the image was verified.
  uint32_t lastPushMs_ = 0, pushGapMs_ = 0, pushOverMs_ = 0, verifiedMs_ = 0;
  uint32_t askedMs_ = 0, lastProgressMs_ = 0, reportMs_ = 0;
  uint8_t state_ = 0;
  // The transfer in the progress file at boot, whose Offer is asked for.
  bool saved_ = false;
  char savedID_[33] = "", savedMD5_[33] = "", savedTMD5_[33] = "";
  char seenID_[33] = "";  // the last Offer's transfer
  uint8_t savedCodec_ = 0;
  uint32_t savedDist_ = 0, offerAskMs_ = 0, offerAsks_ = 0;
};

}  // namespace meshfleet

#if defined(PAINLESSMESH_BOOST)
using MeshFleetOTA = meshfleet::BasicMeshFleetOTA<painlessmesh::Mesh<painlessmesh::Connection>>;
#else
using MeshFleetOTA = meshfleet::BasicMeshFleetOTA<painlessMesh>;
#endif

#endif
