// Package scenario builds and runs simulated fleets: one builder (Build)
// for the OTA benchmark, `meshfleet ota push --sim-nodes`, the status
// scenario of `meshfleet sim --status`, the gateway's demo and the tests
// that need a whole mesh.
//
// It sits above the drivers: it wires the features (ota, status) as
// plugins onto simulated nodes (sim) and measures them. The features
// themselves never import a driver; what they need from a fleet lives
// here. The stock C++ receiver model it runs for comparisons is
// internal/stockota.
package scenario
