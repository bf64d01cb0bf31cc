// The host's painlessMesh.h, ahead of the vendored one in the include
// path of the example builds: an Arduino sketch written for the chip
// (init with a mesh prefix, password and port; update() in loop) runs on
// painlessMesh's Linux build, joining a loopback mesh. Its node id and
// addresses come from the environment: MESHFLEET_NODE_ID,
// MESHFLEET_LISTEN (ip:port) and MESHFLEET_CONNECT (ip:port).
#ifndef MESHFLEET_HOST_PAINLESSMESH_H_
#define MESHFLEET_HOST_PAINLESSMESH_H_

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>

#include "Arduino.h"
#include "boost/asynctcp.hpp"
#include "painlessmesh/mesh.hpp"

using namespace painlessmesh::logger;

enum { WIFI_AP_STA = 3 };

class painlessMesh : public painlessmesh::Mesh<painlessmesh::Connection> {
 public:
  using Base = painlessmesh::Mesh<painlessmesh::Connection>;

  void init(const char* prefix, const char* password, Scheduler* scheduler, uint16_t port = 5555,
            int mode = WIFI_AP_STA, uint8_t channel = 1) {
    (void)prefix, (void)password, (void)port, (void)mode, (void)channel;
    const char* id = std::getenv("MESHFLEET_NODE_ID");
    scheduler_ = scheduler;
    Base::init(scheduler, id ? (uint32_t)std::strtoul(id, nullptr, 10) : 1);
    if (const char* l = std::getenv("MESHFLEET_LISTEN")) {
      auto ep = endpoint(l);
      server_ = std::make_shared<AsyncServer>(io_, ep.second, ep.first);
      painlessmesh::tcp::initServer<painlessmesh::Connection, Base>(*server_, *this);
    }
    if (const char* c = std::getenv("MESHFLEET_CONNECT")) {
      auto ep = endpoint(c);
      auto client = new AsyncClient(io_);  // owned by its Connection once up
      painlessmesh::tcp::connect<painlessmesh::Connection, Base>(*client, ep.first, ep.second, *this);
    }
  }

  // update runs the scheduler and the sockets, as on the chip.
  void update() {
    bool idle = scheduler_->execute();
    if (io_.poll() == 0 && idle) io_.run_one_for(std::chrono::milliseconds(1));
    if (io_.stopped()) io_.restart();
  }

 private:
  static std::pair<boost::asio::ip::address, uint16_t> endpoint(const std::string& s) {
    auto i = s.rfind(':');
    return {boost::asio::ip::make_address(s.substr(0, i)), (uint16_t)std::atoi(s.c_str() + i + 1)};
  }

  boost::asio::io_context io_;
  std::shared_ptr<AsyncServer> server_;
  Scheduler* scheduler_ = nullptr;
};

#endif
