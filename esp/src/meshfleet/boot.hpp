// The bootloader's side of a trial boot, behind a small interface: after a
// verified image was written and the node restarted into it, the image runs
// on trial and must mark itself valid; if it does not (it resets first, or
// gives up at its deadline), the bootloader boots the previous image again.
//
//   ESP32    the app rollback of ESP-IDF (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE,
//            set in the bootloader's sdkconfig): a new image boots in state
//            ESP_OTA_IMG_PENDING_VERIFY, esp_ota_mark_app_valid_cancel_rollback
//            keeps it, esp_ota_mark_app_invalid_rollback_and_reboot (or any
//            reset before that) makes the bootloader boot the previous one.
//   ESP8266  the Arduino core's eboot copies a new image over the running
//            one at the switch: the previous image is gone, so there is no
//            trial and no rollback (onTrial() is always false).
//   host     HostBoot keeps the "partitions" as files in a state directory
//            and models the ESP32 bootloader at the program's start.
//
// The trial record (which transfer the image came from, to whom the outcome
// goes) lives in flash beside the images: a file in LittleFS on the chips,
// in the state directory on the host.
#ifndef MESHFLEET_BOOT_HPP_
#define MESHFLEET_BOOT_HPP_

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(PAINLESSMESH_BOOST)
#include <string>
#elif defined(ESP32)
#include <Arduino.h>
#include <LittleFS.h>
#include <esp_ota_ops.h>
#elif defined(ESP8266)
#include <Arduino.h>
#include <LittleFS.h>
#endif

namespace meshfleet {

// TrialRecord is what a switch leaves for the next boot.
struct TrialRecord {
  enum : uint8_t { kNone = 0, kTrial = 1, kRolledBack = 2, kConfirmed = 3 };
  uint32_t magic = 0;
  uint32_t distributor = 0;  // where the outcome goes
  uint8_t state = kNone;     // kTrial until the outcome is known, then the outcome until it was sent
  char id[33] = "";          // the transfer
  char md5[33] = "";         // the new image
  char reason[64] = "";      // why the trial image gave up, if it did
  char rejected[33] = "";    // the last image rolled back: not taken again
};
enum : uint32_t { kTrialMagic = 0x4d465442u };

// BootControl is the bootloader's side of a trial boot and where the
// record is kept.
class BootControl {
 public:
  virtual ~BootControl() {}
  // onTrial: the running image was booted on trial (not yet marked valid).
  virtual bool onTrial() = 0;
  // markValid keeps the running image for good.
  virtual void markValid() = 0;
  // rollBack marks the running trial image invalid and restarts into the
  // previous one; it does not return on a chip.
  virtual void rollBack() = 0;
  // restart reboots into the image the last verified write selected.
  virtual void restart() = 0;
  virtual bool load(TrialRecord& r) = 0;
  virtual void save(const TrialRecord& r) = 0;
};

#if defined(PAINLESSMESH_BOOST)
// HostBoot models the ESP32 bootloader with rollback on files in dir:
//   app.bin    the valid image (absent: the factory image the node was
//              started as, --md5 and --fw)
//   next.bin   a verified image selected for the next boot (otadata: NEW)
//   trial      next.bin was booted and is not yet valid (PENDING_VERIFY)
//   trial.rec  the TrialRecord
// boot() is the bootloader, run at the program's start: a trial flag still
// there means the trial image reset without being marked valid, so it is
// discarded and app.bin boots; otherwise next.bin, if any, boots on trial.
// restart re-executes the program (the caller does, after closing the
// mesh), so the image booted is the one these files say.
class HostBoot : public BootControl {
 public:
  explicit HostBoot(const std::string& dir) : dir_(dir) {}

  // Booted is what the bootloader decided.
  struct Booted {
    std::string image;   // path of the running image, "" for the factory one
    bool trial = false;  // on trial
    bool rolledBack = false;
  };
  Booted boot() {
    Booted b;
    if (exists("trial")) {
      std::remove(path("next.bin").c_str());
      std::remove(path("trial").c_str());
      b.rolledBack = true;
    } else if (exists("next.bin")) {
      touch("trial");
      b.image = path("next.bin");
      b.trial = true;
      trial_ = true;
      return b;
    }
    if (exists("app.bin")) b.image = path("app.bin");
    return b;
  }

  bool onTrial() override { return trial_; }
  void markValid() override {
    if (!trial_) return;
    std::rename(path("next.bin").c_str(), path("app.bin").c_str());
    std::remove(path("trial").c_str());
    trial_ = false;
  }
  // rollBack leaves the trial flag: the next boot discards the image, as
  // the ESP32 bootloader does with an image marked invalid.
  void rollBack() override { restartRequested = true; }
  void restart() override { restartRequested = true; }
  bool load(TrialRecord& r) override {
    FILE* f = std::fopen(path("trial.rec").c_str(), "rb");
    if (!f) return false;
    bool ok = std::fread(&r, sizeof r, 1, f) == 1 && r.magic == kTrialMagic;
    std::fclose(f);
    return ok;
  }
  void save(const TrialRecord& r) override {
    std::string tmp = path("trial.rec.tmp");
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) return;
    bool ok = std::fwrite(&r, sizeof r, 1, f) == 1;
    ok = std::fclose(f) == 0 && ok;
    if (ok) std::rename(tmp.c_str(), path("trial.rec").c_str());
  }

  std::string path(const char* name) const { return dir_ + "/" + name; }
  // The program's main loop ends and re-executes itself when set.
  bool restartRequested = false;

 private:
  bool exists(const char* name) const {
    FILE* f = std::fopen(path(name).c_str(), "rb");
    if (f) std::fclose(f);
    return f != nullptr;
  }
  void touch(const char* name) const {
    FILE* f = std::fopen(path(name).c_str(), "wb");
    if (f) std::fclose(f);
  }
  std::string dir_;
  bool trial_ = false;
};
#else
// FlashRecord keeps the TrialRecord in LittleFS (the firmware mounts it
// with LittleFS.begin() before begin()).
class FlashRecord {
 public:
  static bool load(TrialRecord& r) {
    File f = LittleFS.open(kPath, "r");
    if (!f) return false;
    bool ok = f.read((uint8_t*)&r, sizeof r) == sizeof r && r.magic == kTrialMagic;
    f.close();
    return ok;
  }
  static void save(const TrialRecord& r) {
    File f = LittleFS.open(kPath, "w");
    if (!f) return;
    f.write((const uint8_t*)&r, sizeof r);
    f.close();
  }

 private:
  static constexpr const char* kPath = "/meshfleet_trial";
};

#if defined(ESP32)
// Esp32Boot is ESP-IDF's app rollback. Without
// CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE a new image boots valid at once
// (state ESP_OTA_IMG_VALID or UNDEFINED): onTrial() is false, nothing can
// be rolled back, and the library only reports the switch.
class Esp32Boot : public BootControl {
 public:
  bool onTrial() override {
    esp_ota_img_states_t st;
    return esp_ota_get_state_partition(esp_ota_get_running_partition(), &st) == ESP_OK &&
           st == ESP_OTA_IMG_PENDING_VERIFY;
  }
  void markValid() override { esp_ota_mark_app_valid_cancel_rollback(); }
  void rollBack() override { esp_ota_mark_app_invalid_rollback_and_reboot(); }
  void restart() override { ESP.restart(); }
  bool load(TrialRecord& r) override { return FlashRecord::load(r); }
  void save(const TrialRecord& r) override { FlashRecord::save(r); }
};
using ChipBoot = Esp32Boot;
#else
// Esp8266Boot: no trial boot exists on the ESP8266 (see above). The
// library still waits for the new image to rejoin before it reports it
// confirmed, but cannot bring the previous image back.
class Esp8266Boot : public BootControl {
 public:
  bool onTrial() override { return false; }
  void markValid() override {}
  void rollBack() override {}
  void restart() override { ESP.restart(); }
  bool load(TrialRecord& r) override { return FlashRecord::load(r); }
  void save(const TrialRecord& r) override { FlashRecord::save(r); }
};
using ChipBoot = Esp8266Boot;
#endif
#endif

}  // namespace meshfleet

#endif
