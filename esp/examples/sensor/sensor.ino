// A painlessMesh sensor node that the meshfleet gateway monitors: the
// firmware's own mesh code, plus the three MeshFleet lines (marked). The
// gateway then lists the node with its free heap, uptime, WiFi signal,
// message counts and firmware, and raises its alerts.
#include <painlessMesh.h>
#include <MeshFleet.h>

#define MESH_PREFIX "whateverYouLike"
#define MESH_PASSWORD "somethingSneaky"
#define MESH_PORT 5555
// What this build is: the gateway shows it; an OTA campaign compares md5.
#define FIRMWARE_VERSION "1.0.0"

Scheduler userScheduler;
painlessMesh mesh;
MeshFleet fleet(mesh, userScheduler);  // MeshFleet (1 of 3)

void sendReading();
Task readingTask(10 * TASK_SECOND, TASK_FOREVER, &sendReading);

void sendReading() {
  String msg = "{\"temperature\":21.5}";
  // Sent through MeshFleet, so the gateway counts it (sent or dropped).
  fleet.sendBroadcast(msg);
}

void setup() {
  Serial.begin(115200);
  mesh.setDebugMsgTypes(ERROR | STARTUP);
  mesh.init(MESH_PREFIX, MESH_PASSWORD, &userScheduler, MESH_PORT);
  fleet.begin("sensor", FIRMWARE_VERSION);  // MeshFleet (2 of 3)
  fleet.setInterval(30);                    // MeshFleet (3 of 3): seconds between reports
  userScheduler.addTask(readingTask);
  readingTask.enable();
}

void loop() { mesh.update(); }
