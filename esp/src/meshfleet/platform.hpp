// The chip behind a small interface: what the status reports read
// (heap, largest free block, reset reason, WiFi) and what changes a node
// (restart). One implementation per target: ESP32 and ESP8266 call their
// SDKs; the host build (painlessMesh's own Linux/Boost build,
// PAINLESSMESH_BOOST) reads values a test sets, so tests drive them.
#ifndef MESHFLEET_PLATFORM_HPP_
#define MESHFLEET_PLATFORM_HPP_

#include <stdint.h>

#if defined(PAINLESSMESH_BOOST)
// host: see HostPlatform below
#elif defined(ESP32)
#include <Arduino.h>
#include <WiFi.h>
#include <esp_heap_caps.h>
#include <esp_system.h>
#elif defined(ESP8266)
#include <Arduino.h>
#include <ESP8266WiFi.h>
#include <user_interface.h>
#else
#error "meshfleet: an ESP32, an ESP8266 or painlessMesh's host build (PAINLESSMESH_BOOST)"
#endif

namespace meshfleet {

struct Readings {
  uint32_t freeHeap = 0;       // bytes
  uint32_t largestBlock = 0;   // bytes, the largest allocation that would succeed
  int8_t rssi = 0;             // dBm of the station link, 0 = not connected
  uint8_t channel = 0;         // WiFi channel, 0 = unknown
  const char* resetReason = "";
  const char* hardware = "";   // "ESP8266" or "ESP32", as the OTA packages name it
  // crashes is how many boots in a row followed a crash (panic,
  // exception, watchdog), counted in memory that survives a reset; the
  // library clears it once the node has run a minute.
  uint8_t crashes = 0;
};

// kRebootLoopCrashes crashes in a row are a reboot loop.
enum : uint8_t { kRebootLoopCrashes = 3 };

#if defined(PAINLESSMESH_BOOST)
// HostPlatform stands in for the chip: a test sets what it reports.
struct HostPlatform {
  static Readings& values() {
    static Readings r = [] {
      Readings x;
      x.freeHeap = 40960;
      x.largestBlock = 30720;
      x.rssi = -60;
      x.channel = 1;
      x.resetReason = "power on";
      x.hardware = "ESP8266";
      return x;
    }();
    return r;
  }
};
inline Readings readPlatform() { return HostPlatform::values(); }
inline void clearCrashes() { HostPlatform::values().crashes = 0; }
#elif defined(ESP32)
inline const char* resetReasonName(esp_reset_reason_t r) {
  switch (r) {
    case ESP_RST_POWERON: return "power on";
    case ESP_RST_SW: return "software";
    case ESP_RST_PANIC: return "panic";
    case ESP_RST_INT_WDT: case ESP_RST_TASK_WDT: case ESP_RST_WDT: return "watchdog";
    case ESP_RST_DEEPSLEEP: return "deep sleep";
    case ESP_RST_BROWNOUT: return "brownout";
    case ESP_RST_EXT: return "external";
    default: return "unknown";
  }
}
// The crash counter lives in RTC memory that a reset keeps (not a power
// cycle: the magic tells a counter from noise).
RTC_NOINIT_ATTR static uint32_t rtcCrashMagic;
RTC_NOINIT_ATTR static uint32_t rtcCrashes;
inline bool crashed(esp_reset_reason_t r) {
  return r == ESP_RST_PANIC || r == ESP_RST_INT_WDT || r == ESP_RST_TASK_WDT || r == ESP_RST_WDT;
}
inline uint8_t bootCrashes() {
  static bool counted = false;
  if (!counted) {
    counted = true;
    if (rtcCrashMagic != 0x4d46434eu) rtcCrashMagic = 0x4d46434eu, rtcCrashes = 0;
    rtcCrashes = crashed(esp_reset_reason()) ? rtcCrashes + 1 : 0;
  }
  return (uint8_t)(rtcCrashes > 255 ? 255 : rtcCrashes);
}
inline void clearCrashes() { rtcCrashes = 0; }
inline Readings readPlatform() {
  Readings r;
  r.crashes = bootCrashes();
  r.freeHeap = ESP.getFreeHeap();
  r.largestBlock = heap_caps_get_largest_free_block(MALLOC_CAP_8BIT);
  r.rssi = WiFi.status() == WL_CONNECTED ? (int8_t)WiFi.RSSI() : 0;
  r.channel = (uint8_t)WiFi.channel();
  r.resetReason = resetReasonName(esp_reset_reason());
  r.hardware = "ESP32";
  return r;
}
#else  // ESP8266
// The crash counter lives in the RTC user memory, which a reset keeps
// (block 96 of 128: clear of what the core's own OTA uses).
struct RtcCrashes {
  uint32_t magic, crashes;
};
inline uint8_t bootCrashes() {
  static bool counted = false;
  static uint32_t crashes = 0;
  if (!counted) {
    counted = true;
    RtcCrashes c{};
    ESP.rtcUserMemoryRead(96, (uint32_t*)&c, sizeof c);
    if (c.magic != 0x4d46434eu) c = RtcCrashes{0x4d46434eu, 0};
    uint32_t reason = ESP.getResetInfoPtr()->reason;
    // REASON_WDT_RST 1, REASON_EXCEPTION_RST 2, REASON_SOFT_WDT_RST 3
    c.crashes = (reason >= 1 && reason <= 3) ? c.crashes + 1 : 0;
    ESP.rtcUserMemoryWrite(96, (uint32_t*)&c, sizeof c);
    crashes = c.crashes;
  }
  return (uint8_t)(crashes > 255 ? 255 : crashes);
}
inline void clearCrashes() {
  RtcCrashes c{0x4d46434eu, 0};
  ESP.rtcUserMemoryWrite(96, (uint32_t*)&c, sizeof c);
}
inline Readings readPlatform() {
  Readings r;
  r.crashes = bootCrashes();
  r.freeHeap = ESP.getFreeHeap();
  r.largestBlock = ESP.getMaxFreeBlockSize();
  r.rssi = WiFi.status() == WL_CONNECTED ? (int8_t)WiFi.RSSI() : 0;
  r.channel = (uint8_t)WiFi.channel();
  static const char* names[] = {"power on", "hardware watchdog", "exception", "software watchdog",
                                "software", "deep sleep", "external"};
  uint32_t reason = ESP.getResetInfoPtr()->reason;
  r.resetReason = reason < 7 ? names[reason] : "unknown";
  r.hardware = "ESP8266";
  return r;
}
#endif

// signalPercent maps dBm to 0..100 as the stock status packages do
// (-100 dBm or weaker 0, -50 or stronger 100; 0 dBm means no link).
inline uint8_t signalPercent(int8_t rssi) {
  if (rssi == 0) return 0;
  if (rssi <= -100) return 0;
  if (rssi >= -50) return 100;
  return (uint8_t)(2 * (rssi + 100));
}

}  // namespace meshfleet

#endif
