// MeshFleetBoot: the trial boot of a new image received by MeshFleetOTA.
//
//   MeshFleetOTA ota(mesh, userScheduler, writer);
//   MeshFleetBoot boot(mesh, userScheduler, ota);   // the chip's bootloader
//   // in setup(), after mesh.init and before ota.begin:
//   boot.begin(60);                                  // seconds to rejoin
//   ota.begin("sensor", "ESP32", md5, [] { boot.restart(); });
//   fleet.setOTA(boot);                              // OTA state in status
//
// After a verified image was written, restart() keeps a record of the
// transfer in flash and reboots into the image. The image boots on trial
// (ESP32 with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) and marks itself valid
// only once it rejoined the mesh (the transfer's distributor, or else the
// mesh root, is in its layout) within the deadline; then it reports
// `confirmed` to the distributor. At the deadline it marks itself invalid,
// and the bootloader boots the previous image, which reports `rolled_back`
// with the reason (retried every 5 s until the distributor is reachable),
// as Go receivers do (ota/PROTOCOL.md, 723). While on trial it reports OTA
// state `switching`; after a rollback `rolled back` (status/PROTOCOL.md
// §2.1, otaState 6).
//
// Without a bootloader rollback (ESP8266; ESP32 without the config) the
// new image boots valid: it still reports confirmed only after it
// rejoined, but a bad image cannot be undone by the node.
#ifndef MESHFLEET_BOOT_H_
#define MESHFLEET_BOOT_H_

#include "MeshFleetOTA.h"
#include "meshfleet/boot.hpp"

namespace meshfleet {

template <class Mesh, class OTA>
class BasicMeshFleetBoot {
 public:
  // The chip's bootloader (ESP32's rollback, or ESP8266's none).
#if !defined(PAINLESSMESH_BOOST)
  BasicMeshFleetBoot(Mesh& mesh, Scheduler& scheduler, OTA& ota)
      : mesh_(mesh), scheduler_(scheduler), ota_(ota), boot_(chip_) {}
#endif
  BasicMeshFleetBoot(Mesh& mesh, Scheduler& scheduler, OTA& ota, BootControl& boot)
      : mesh_(mesh), scheduler_(scheduler), ota_(ota), boot_(boot) {}

  // begin reads what the last boot left. runningMD5 is the image this
  // boot runs; call it before ota.begin (its Offer callback must come
  // first: a trial image does not answer Offers until it is valid).
  void begin(const char* runningMD5, uint16_t deadlineS = 60) {
    startMs_ = now32();
    deadlineMs_ = (uint32_t)deadlineS * 1000u;
    bool kept = boot_.load(rec_);
    if (!kept) rec_ = TrialRecord();
    trial_ = boot_.onTrial();
    if (kept && rec_.state == TrialRecord::kTrial) {
      if (strcmp(rec_.md5, runningMD5) != 0) {
        // The previous image runs again: the bootloader rolled back.
        rec_.state = TrialRecord::kRolledBack;
        copy(rec_.rejected, sizeof rec_.rejected, rec_.md5);
        if (!rec_.reason[0])
          copy(rec_.reason, sizeof rec_.reason, "new image reset before it was confirmed; rolled back");
        boot_.save(rec_);
        trial_ = false;
      } else if (!trial_) {
        unguarded_ = true;  // booted valid: nothing to roll back to
      }
    }
    using painlessmesh::protocol::Variant;
    mesh_.onPackage(kTypeOffer, [this](Variant& v) {
      hideOffer(v);
      return false;
    });
    tick_.set(TASK_SECOND, TASK_FOREVER, [this]() { tick(); });
    scheduler_.addTask(tick_);
    tick_.enable();
  }

  // restart is the OTA receiver's restart: the record of the switch,
  // then the reboot into the verified image.
  void restart() {
    TrialRecord next;
    copy(next.rejected, sizeof next.rejected, rec_.rejected);
    rec_ = next;
    rec_.magic = kTrialMagic;
    rec_.state = TrialRecord::kTrial;
    rec_.distributor = ota_.distributor();
    copy(rec_.id, sizeof rec_.id, ota_.transferID());
    copy(rec_.md5, sizeof rec_.md5, ota_.activeMD5());
    boot_.save(rec_);
    ota_.rebooting();
    boot_.restart();
  }

  // state and progress are the telemetry's otaState and otaProgress.
  uint8_t state() const {
    if (trial_ || unguarded_) return 3;  // switching
    uint8_t s = ota_.state();
    if (s == 0 && rolledBack()) return 6;
    if (s == 0 && confirmed_) return 4;  // this boot confirmed the new image
    return s;
  }
  uint8_t progress() const {
    if (trial_ || unguarded_ || (confirmed_ && ota_.state() == 0)) return 100;
    return ota_.progress();
  }
  bool onTrial() const { return trial_; }
  // rolledBack is the rollback this boot reported (or will).
  bool rolledBack() const { return rolledBack_ || rec_.state == TrialRecord::kRolledBack; }

 private:
  static uint32_t now32() { return (uint32_t)millis(); }
  static void copy(char* dst, size_t n, const char* src) {
    strncpy(dst, src ? src : "", n - 1);
    dst[n - 1] = 0;
  }

  // hideOffer keeps an Offer from the receiver until the trial image is
  // valid (answering "confirmed" before would be a promise the rollback
  // may break), and an Offer of the image last rolled back for good (it
  // is not installed again, as Go receivers do not). An Offer is hidden
  // by giving it a role no receiver has; later callbacks of the type see
  // the same package.
  void hideOffer(painlessmesh::protocol::Variant& v) {
    struct Any {
      explicit Any(JsonObject o) : obj(o) {}
      JsonObject obj;
    };
    JsonObject o = v.to<Any>().obj;
    if ((trial_ || unguarded_) && reachable(o["from"].as<uint32_t>())) confirm();
    if (trial_ || unguarded_ || (rec_.rejected[0] && strcmp(o["md5"] | "", rec_.rejected) == 0)) o["role"] = "";
  }

  // reachable: node is in the mesh's layout (painlessMesh hands the layout
  // out only as a copy: read once a second at most, while on trial).
  bool reachable(uint32_t node) {
    auto tree = mesh_.asNodeTree();
    if (node && node != mesh_.getNodeId() && holds(tree, node)) return true;
    return rec_.distributor == 0 && hasRoot(tree);
  }
  static bool holds(const painlessmesh::protocol::NodeTree& t, uint32_t id) {
    if (t.nodeId == id) return true;
    for (auto&& s : t.subs)
      if (holds(s, id)) return true;
    return false;
  }
  static bool hasRoot(const painlessmesh::protocol::NodeTree& t) {
    if (t.root) return true;
    for (auto&& s : t.subs)
      if (hasRoot(s)) return true;
    return false;
  }

  void confirm() {
    if (trial_) boot_.markValid();
    trial_ = unguarded_ = false;
    confirmed_ = true;
    rec_.state = TrialRecord::kConfirmed;
    boot_.save(rec_);
    reportMs_ = now32() - kRetryMs;
    deliver();
  }

  void tick() {
    uint32_t now = now32();
    if (trial_ || unguarded_) {
      if (reachable(rec_.distributor)) {
        confirm();
      } else if (trial_ && now - startMs_ >= deadlineMs_) {
        snprintf(rec_.reason, sizeof rec_.reason, "new image did not rejoin the mesh within %u s; rolled back",
                 (unsigned)(deadlineMs_ / 1000));
        boot_.save(rec_);
        trial_ = false;
        boot_.rollBack();
      }
      return;
    }
    deliver();
  }

  // deliver sends the outcome of the switch to the transfer's distributor
  // once it is reachable, every 5 s until then.
  void deliver() {
    if (rec_.state != TrialRecord::kConfirmed && rec_.state != TrialRecord::kRolledBack) return;
    uint32_t now = now32();
    if (now - reportMs_ < kRetryMs || !reachable(rec_.distributor)) return;
    reportMs_ = now;
    bool back = rec_.state == TrialRecord::kRolledBack;
    ReportPackage p;
    p.from = mesh_.getNodeId();
    p.dest = rec_.distributor;
    p.id = rec_.id;
    p.state = back ? "rolled_back" : "confirmed";
    p.active = ota_.activeMD5();
    p.err = back ? rec_.reason : "";
    if (!mesh_.sendPackage(&p)) return;
    rolledBack_ = back;
    rec_.state = TrialRecord::kNone;
    boot_.save(rec_);
  }

  enum : uint32_t { kRetryMs = 5000 };

#if !defined(PAINLESSMESH_BOOST)
  ChipBoot chip_;
#endif
  Mesh& mesh_;
  Scheduler& scheduler_;
  OTA& ota_;
  BootControl& boot_;
  Task tick_;
  TrialRecord rec_;
  uint32_t startMs_ = 0, deadlineMs_ = 60000, reportMs_ = 0;
  bool trial_ = false, unguarded_ = false, rolledBack_ = false, confirmed_ = false;
};

}  // namespace meshfleet

#if defined(PAINLESSMESH_BOOST)
using MeshFleetBoot = meshfleet::BasicMeshFleetBoot<painlessmesh::Mesh<painlessmesh::Connection>, MeshFleetOTA>;
#else
using MeshFleetBoot = meshfleet::BasicMeshFleetBoot<painlessMesh, MeshFleetOTA>;
#endif

#endif
