/**
 * The Arduino stand-in of meshfleet's C++ test peer: a copy of painlessMesh's
 * test/boost/Arduino.h (v1.10.0, LGPL-3.0, see ../shared/vendor/painlessMesh)
 * plus what the stock OTA plugin (painlessmesh/ota.hpp) needs on an ESP8266:
 * ESP.getFreeSketchSpace/restart, the Update object (update.hpp) and the
 * LittleFS file API (LittleFS.h), all kept by the peer on the host.
 */
#ifndef ARDUINO_WRAP_H
#define ARDUINO_WRAP_H

#include <sys/time.h>
#include <unistd.h>

#define ARDUINO_ARCH_ESP8266
#define PAINLESSMESH_BOOST
// ESP8266 compiles the OTA plugin's sender and receiver (ota.hpp); the
// configuration block below stands in for the one that would include the
// ESP8266 WiFi headers.
#define ESP8266
#define USE_FS_LITTLEFS
#include <cstdint>
#include <cstdlib>
#define RANDOM_REG32 ((uint32_t)rand())

#ifndef NULL
#define NULL 0
#endif

// Stub for non-AVR/ESP32 platforms (e.g., Linux, Windows, standard C++)
#ifndef __FlashStringHelper
#include <cstddef>  // for size_t
#include <cstring>  // for strcpy, strlen

class __FlashStringHelper {
 private:
  const char* str;

 public:
  // Constructor from a C string (for F("") macro simulation)
  __FlashStringHelper(const char* s) : str(s) {}

  // Allow implicit conversion to const char* for compatibility
  operator const char*() const { return str; }

  // Optional: Add methods to mimic Arduino's flash string behavior
  char charAt(size_t index) const { return str[index]; }
  size_t length() const { return strlen(str); }
};

// Define the F() macro to return a __FlashStringHelper
#define F(str) __FlashStringHelper(str)
#endif

inline unsigned long millis() {
  struct timeval te;
  gettimeofday(&te, NULL);  // get current time
  long long milliseconds =
      te.tv_sec * 1000LL + te.tv_usec / 1000;  // calculate milliseconds
  // printf("milliseconds: %lld\n", milliseconds);
  return milliseconds;
}

inline unsigned long micros() {
  struct timeval te;
  gettimeofday(&te, NULL);  // get current time
  long long milliseconds = te.tv_sec * 1000000LL + te.tv_usec;
  return milliseconds;
}

inline void delay(int i) { usleep(i); }

inline void yield() {}

/**
 * Override the configution file.
 **/

#ifndef _PAINLESS_MESH_CONFIGURATION_HPP_
#define _PAINLESS_MESH_CONFIGURATION_HPP_

// TaskScheduler compile options MUST match the ones used to build the
// implementation in src/scheduler.cpp — a mismatch silently changes the
// Task object layout (ODR violation). Use the single source of truth
// instead of redefining options here.
#include "painlessTaskOptions.h"

#include <TaskSchedulerDeclarations.h>

#define ARDUINOJSON_USE_LONG_LONG 1
#include <ArduinoJson.h>
#undef ARDUINOJSON_ENABLE_ARDUINO_STRING

#define ICACHE_FLASH_ATTR

#define PAINLESSMESH_ENABLE_STD_STRING
#define PAINLESSMESH_ENABLE_OTA
#define NODE_TIMEOUT 10 * TASK_SECOND

#ifndef MIN_FREE_MEMORY
#define MIN_FREE_MEMORY 4000
#endif

#ifndef MAX_MESSAGE_QUEUE
#define MAX_MESSAGE_QUEUE 50
#endif

typedef std::string TSTRING;
// The OTA receiver writes its state file with an Arduino String.
typedef std::string String;

#ifdef ESP32
#define MAX_CONN 10
#else
#define MAX_CONN 4
#endif  // DEBUG

#include "boost/asynctcp.hpp"
#include "fake_serial.hpp"

typedef enum {
  WL_NO_SHIELD = 255,  // for compatibility with WiFi Shield library
  WL_IDLE_STATUS = 0,
  WL_NO_SSID_AVAIL = 1,
  WL_SCAN_COMPLETED = 2,
  WL_CONNECTED = 3,
  WL_CONNECT_FAILED = 4,
  WL_CONNECTION_LOST = 5,
  WL_DISCONNECTED = 6
} wl_status_t;

class WiFiClass {
 public:
  void disconnect() {}
  auto status() { return WL_CONNECTED; }
  int RSSI() { return 0; }
};

class ESPClass {
 public:
  size_t getFreeHeap() { return 1e6; }
  // Room for the largest image a test sends.
  uint32_t getFreeSketchSpace() { return 16u << 20; }
  void restart();  // peer.cpp: reports, then reboots or exits
};

extern WiFiClass WiFi;
extern ESPClass ESP;

#include "update.hpp"

#endif
#endif
