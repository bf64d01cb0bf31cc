//go:build race

package main

// raceBuild: the race detector slows Go code several times over, so
// timings against C++ code are not comparable.
const raceBuild = true
