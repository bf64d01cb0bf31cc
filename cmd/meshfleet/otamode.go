package main

// pushMode resolves --mode auto (the default): stock-turbo when the
// receivers are known to be stock ones (a simulated mesh of the stock
// receiver model), where it is never slower for any node than the stock
// transfer; broadcast otherwise. A real mesh does not say what its nodes
// run before the transfer, so a push over TCP stays broadcast (stock nodes
// then get the stock transfer); give --mode stock-turbo for a mesh of
// stock nodes.
func pushMode(o pushOptions) string {
	if o.mode != "auto" {
		return o.mode
	}
	if o.simNodes > 0 && o.simReceiver == "stock" {
		return "stock-turbo"
	}
	return "broadcast"
}
